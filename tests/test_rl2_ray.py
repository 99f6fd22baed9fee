"""RL² with ``sampler="ray"``: trials collected on Ray actors give the same parameters as the
in-process per-trial sampler, and a rollout worker killed mid-run is replaced without changing the run."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.agents.rl2 import RL2, RL2Config
from metarl.agents.rl2_sampling import TRIAL_BLOCK, TrialSampler, TrialShardJob, join_trial_batches
from metarl.agents.rl2_train import train
from metarl.samplers import LocalSampler, RaySampler, ShardRunner

torch.set_num_threads(1)

SPLITS = {"train": 8, "validation": 8, "test": 16}


def tiny_config(**changes: Any) -> RL2Config:
    base: dict[str, Any] = {
        "family": "BernoulliBandit-v0",
        "family_kwargs": {"n_arms": 3, "n_pulls": 5, "split_sizes": SPLITS},
        "trials_per_update": 20,  # > TRIAL_BLOCK, so shares straddle a block boundary
        "hidden_size": 16,
        "ppo_epochs": 2,
        "num_minibatches": 2,
        "total_env_steps": 3 * 20 * 5,  # three updates
        "checkpoint_every": 1,
        "keep_checkpoints": 2,
        "seed": 3,
        "ray_workers": 2,
        "ray_cpus_per_worker": 0.5,
    }
    return RL2Config.from_dict({**base, **changes})


def parameters(agent: RL2) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in agent.model.state_dict().items()}


def assert_same_parameters(a: RL2, b: RL2) -> None:
    pa, pb = parameters(a), parameters(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name


# ------------------------------------------------------------------------ without Ray
@pytest.mark.parametrize(
    ("family", "family_kwargs", "episodes_per_trial", "separate_value"),
    [
        ("BernoulliBandit-v0", {"n_arms": 3, "n_pulls": 5, "split_sizes": SPLITS}, None, False),
        # Box actions, and episodes that end early (trials of different lengths, padded)
        ("Navigation2D-v0", {"max_episode_steps": 20, "split_sizes": SPLITS}, 2, False),
        # a value GRU of its own: the workers' state is both GRUs'
        ("BernoulliBandit-v0", {"n_arms": 3, "n_pulls": 5, "split_sizes": SPLITS}, None, True),
    ],
)
def test_seeded_trials_do_not_depend_on_the_split(
    family: str, family_kwargs: dict[str, Any], episodes_per_trial: int | None, separate_value: bool
) -> None:
    cfg = tiny_config(family=family, family_kwargs=family_kwargs, episodes_per_trial=episodes_per_trial,
                      sampler="local-per-task", separate_value=separate_value)  # fmt: skip
    agent = RL2(cfg)
    assert agent.env is None  # no in-process trial env besides the sampler's
    tasks = agent.sampler(cfg.trials_per_update, np.random.default_rng(0))
    m = agent.model
    job = TrialShardJob(
        m.gru.input_size, m.pi.out_features, m.discrete, m.hidden_size, agent.episodes_per_trial,
        separate_value=m.separate_value,
    )  # fmt: skip
    state = parameters(agent)
    [(_, whole)] = LocalSampler(agent.family, 1).map_shares(job, state, tasks, 7)
    assert whole.mask.shape[0] == 20 and whole.mask[:, 0].all()
    if family == "Navigation2D-v0":
        assert not whole.mask.all()  # some trials ended before others
    # shares of 1, 2 and 3 rows (where a CPU matrix product's rounding differs) and block-straddling ones
    for cuts in ((0, 7, 20), (0, 1, 17, 20), (0, 2, 5, TRIAL_BLOCK, 20)):
        shares = [
            ShardRunner(agent.family).run(job, state, tasks[a:b], a, 7) for a, b in itertools.pairwise(cuts)
        ]
        joined = join_trial_batches(shares)
        for field, x, y in zip(whole._fields, whole, joined, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=str((cuts, field)))
    # padding is zeros, and another seed gives other trials
    assert not whole.inputs[~whole.mask].any()
    [(_, other)] = LocalSampler(agent.family, 1).map_shares(job, state, tasks, 8)
    assert not torch.equal(whole.actions, other.actions)


def test_sampler_config_is_checked() -> None:
    with pytest.raises(ValueError, match="sampler must be one of 'local', 'local-per-task', 'ray'"):
        tiny_config(sampler="dask")
    with pytest.raises(ValueError, match="ray_workers"):
        tiny_config(sampler="ray", ray_workers=0)
    with pytest.raises(ValueError, match="ray_address"):
        tiny_config(sampler="ray", ray_address="")
    with pytest.raises(ValueError, match="ray_cpus_per_worker"):
        tiny_config(ray_cpus_per_worker=0)
    old = dict(tiny_config().__dict__)
    for key in ("sampler", "ray_address", "ray_workers", "ray_cpus_per_worker"):
        del old[key]
    assert RL2Config.from_dict(old).sampler == "local"  # configs of older checkpoints
    # loading a Ray run for evaluation starts no Ray workers
    assert RL2(tiny_config(sampler="ray")).trial_sampler is None


# ------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def ray_instance() -> Any:
    ray = pytest.importorskip(
        "ray", reason="the Ray sampler needs the 'ray' extra (pip install 'metarl[ray]')"
    )
    # StallOnce lives in this test module, which Ray workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RL2:
    """Three updates collected in process with the per-trial seeding."""
    return train(tiny_config(sampler="local-per-task"), tmp_path_factory.mktemp("local"), progress=False)


def test_ray_training_equals_local_per_task_training(
    ray_instance: Any, reference: RL2, tmp_path: Path
) -> None:
    agent = train(tiny_config(sampler="ray"), tmp_path / "ray", progress=False)
    assert agent.updates == 3 and agent.trial_sampler is None  # its Ray workers were stopped
    assert_same_parameters(reference, agent)
    # the per-trial seeding is another random stream than sampler="local", which is unchanged
    local = train(tiny_config(), tmp_path / "local", progress=False)
    assert any(
        not torch.equal(x, y)
        for x, y in zip(parameters(local).values(), parameters(agent).values(), strict=True)
    )


@dataclass(frozen=True)
class StallOnce:
    """Wraps a shard job: the first worker to run share 0 leaves ``marker`` and stalls (to be killed)."""

    job: Any
    marker: str

    def __call__(self, runner: Any, policy_state: Any, tasks: Any, task_offset: int, seed: int) -> Any:
        if task_offset == 0 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(120)
        return self.job(runner, policy_state, tasks, task_offset, seed)


class KillMidCollection:
    """A sampler whose ``kill_at``-th call (an update's trials) has worker 0 killed while it runs its share."""

    def __init__(self, ray: Any, inner: RaySampler, kill_at: int, marker: str) -> None:
        self.ray, self.inner, self.kill_at, self.marker, self.calls = ray, inner, kill_at, marker, 0
        self.envs_per_task = inner.envs_per_task

    def map_shares(
        self, job: Any, policy_state: Any, tasks: Sequence[Any], seed: int
    ) -> list[tuple[int, Any]]:
        self.calls += 1
        if self.calls != self.kill_at:
            return self.inner.map_shares(job, policy_state, tasks, seed)
        worker = self.inner.workers[0]

        def kill_when_stalled() -> None:
            deadline = time.monotonic() + 60
            while not os.path.exists(self.marker) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.ray.kill(worker)

        killer = threading.Thread(target=kill_when_stalled)
        killer.start()
        try:
            return self.inner.map_shares(StallOnce(job, self.marker), policy_state, tasks, seed)
        finally:
            killer.join()

    def close(self) -> None:
        self.inner.close()


def test_worker_killed_mid_collection_is_replaced_and_training_is_unchanged(
    ray_instance: Any, reference: RL2, tmp_path: Path
) -> None:
    cfg = tiny_config(sampler="ray")
    inner = RaySampler(cfg.make_family(), 1, num_workers=2, cpus_per_worker=0.5, timeout=100.0)
    sampler = KillMidCollection(ray_instance, inner, kill_at=2, marker=str(tmp_path / "stalled"))
    try:
        agent = train(
            cfg, tmp_path / "run", progress=False, trial_sampler=TrialSampler(sampler, 5, owns=False)
        )
        assert sampler.calls == 3 and inner.restarts == 1 and os.path.exists(sampler.marker)
    finally:
        sampler.close()
    assert_same_parameters(reference, agent)
