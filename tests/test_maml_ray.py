"""MAML-TRPO with ``sampler="ray"``: the same parameters as the in-process per-task sampler, and a
rollout worker killed mid-iteration is replaced without changing the run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import metarl
from metarl.agents.maml_train import make_train_family, train
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.policies import TaskPolicyFactory, make_policy
from metarl.samplers import LocalSampler, PolicyFactory, RaySampler, Sampler, ShardRunner, concatenate_batches

ray = pytest.importorskip("ray", reason="the Ray sampler needs the 'ray' extra (pip install 'metarl[ray]')")


def tiny_config(run_dir: Path, **kw: Any) -> MAMLTRPOConfig:
    base: dict[str, Any] = dict(meta_batch_size=3, episodes_per_task=2, hidden_sizes=(8, 8), meta_iterations=2,
                                run_dir=str(run_dir), checkpoint_every=1, keep_checkpoints=2,
                                ray_workers=2, ray_cpus_per_worker=0.5)  # fmt: skip
    return MAMLTRPOConfig(**{**base, **kw})


def assert_same_parameters(a: Any, b: Any) -> None:
    for (n, x), (_, y) in zip(a.policy.state_dict().items(), b.policy.state_dict().items(), strict=True):
        assert torch.equal(x, y), n


@pytest.fixture(scope="module")
def ray_instance() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two meta-iterations sampled in process with the per-task seeding."""
    return train(tiny_config(tmp_path_factory.mktemp("local"), sampler="local-per-task"), progress=False)


def test_ray_training_equals_local_per_task_training(
    ray_instance: Any, reference: Any, tmp_path: Path
) -> None:
    algo = train(tiny_config(tmp_path, sampler="ray"), progress=False)
    assert_same_parameters(reference, algo)
    # the per-task seeding is another random stream than sampler="local", which is unchanged
    local = train(tiny_config(tmp_path / "local"), progress=False)
    assert not all(
        torch.equal(x, y) for x, y in zip(local.policy.parameters(), algo.policy.parameters(), strict=True)
    )


class KillOnce(Sampler):
    """A :class:`metarl.samplers.Sampler` that kills Ray worker 0 before its ``kill_at``-th call."""

    def __init__(self, inner: RaySampler, kill_at: int) -> None:
        self.inner, self.kill_at, self.calls = inner, kill_at, 0

    def sample(
        self, policy_factory: PolicyFactory, policy_state: Any, tasks: Sequence[Any], episodes_per_task: int,
        seed: int,
    ) -> metarl.EpisodeBatch:  # fmt: skip
        self.calls += 1
        if self.calls == self.kill_at:
            ray.kill(self.inner.workers[0])
        return self.inner.sample(policy_factory, policy_state, tasks, episodes_per_task, seed)

    def close(self) -> None:
        self.inner.close()


def test_worker_killed_mid_iteration_is_replaced_and_training_is_unchanged(
    ray_instance: Any, reference: Any, tmp_path: Path
) -> None:
    cfg = tiny_config(tmp_path, sampler="ray")
    inner = RaySampler(make_train_family(cfg), cfg.episodes_per_task, num_workers=2, cpus_per_worker=0.5,
                       timeout=120.0)  # fmt: skip
    # call 2 is the post-adaptation batch of the first meta-iteration
    sampler = KillOnce(inner, kill_at=2)
    try:
        algo = train(cfg, progress=False, sampler=sampler)
        assert sampler.calls == 4 and inner.restarts == 1
    finally:
        sampler.close()
    assert_same_parameters(reference, algo)


def test_task_policy_factory_is_independent_of_the_task_split() -> None:
    family = metarl.make_family("Navigation2D-v0")
    tasks = tuple(family.train[:3])
    env = family.make_env(tasks[0])
    policy = make_policy(
        env.observation_space, env.action_space, (8,), generator=torch.Generator().manual_seed(0)
    )
    state = {n: torch.stack([p.detach() + 0.1 * k for k in range(3)]) for n, p in policy.named_parameters()}
    factory = TaskPolicyFactory((8,))
    whole = LocalSampler(family, 2).sample(factory, state, tasks, 2, seed=4)
    shares = [ShardRunner(family, 2).sample(factory, state, tasks[a:b], a, 2, 4) for a, b in ((0, 1), (1, 3))]
    split = concatenate_batches(shares, [0, 1])
    for f in dataclasses.fields(metarl.EpisodeBatch):
        np.testing.assert_array_equal(getattr(whole, f.name), getattr(split, f.name), err_msg=f.name)
    # shared (meta-) parameters: every task acts with the same weights
    shared = {n: p.detach() for n, p in policy.named_parameters()}
    assert (
        LocalSampler(family, 2).sample(factory, shared, tasks, 2, seed=4).actions.shape == whole.actions.shape
    )


def test_sampler_config_is_checked() -> None:
    with pytest.raises(ValueError, match="sampler must be one of 'local', 'local-per-task', 'ray'"):
        MAMLTRPOConfig(sampler="dask")
    with pytest.raises(ValueError, match="ray_workers"):
        MAMLTRPOConfig(sampler="ray", ray_workers=0)
    with pytest.raises(ValueError, match="ray_address"):
        MAMLTRPOConfig(sampler="ray", ray_address="")
    with pytest.raises(ValueError, match="ray_cpus_per_worker"):
        MAMLTRPOConfig(ray_cpus_per_worker=0)
    old = MAMLTRPOConfig().to_dict()
    for key in ("sampler", "ray_address", "ray_workers", "ray_cpus_per_worker"):
        del old[key]
    assert MAMLTRPOConfig.from_dict(old) == MAMLTRPOConfig()  # configs of older checkpoints
