"""Samplers: local and Ray give bit-identical episodes for any split of tasks, and survive dead workers."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metarl
from metarl.samplers import (
    LinearGaussianPolicy,
    LocalSampler,
    PolicyContext,
    RaySampler,
    ShardRunner,
    concatenate_batches,
    make_sampler,
    reset_seeds,
)

#: Every sampler's two actors reserve a quarter CPU each, so several samplers fit in the 2-CPU
#: test instance, and a hang fails the test instead of stalling the suite.
RAY_OPTIONS: dict[str, Any] = {"num_workers": 2, "cpus_per_worker": 0.25, "timeout": 60.0}


def assert_same(a: metarl.EpisodeBatch, b: metarl.EpisodeBatch) -> None:
    for f in fields(metarl.EpisodeBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype and x.shape == y.shape, f.name
        np.testing.assert_array_equal(x, y, err_msg=f.name, strict=True)


@pytest.fixture(scope="module")
def fam() -> metarl.TaskFamily:
    return metarl.make_family("Navigation2D-v0", split_sizes={"train": 6, "validation": 1, "test": 1})


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return LinearGaussianPolicy.init_state(2, 2, np.random.default_rng(0))


class ZeroPolicy:
    """Stands still; with a goal within the goal radius of the origin episodes end after one step."""

    def __call__(self, policy_state: Any, context: PolicyContext) -> Any:
        n = context.num_envs
        return lambda obs: np.zeros((n, 2), dtype=np.float32)


class SlowPolicy(LinearGaussianPolicy):
    """Touches ``marker`` once acting has started and sleeps a little every step."""

    def __init__(self, marker: str, state: Any = None, context: PolicyContext | None = None) -> None:
        super().__init__(state, context)
        self.marker = marker

    def __call__(self, policy_state: Any, context: Any = None) -> Any:
        if self.context is None:
            return SlowPolicy(self.marker, policy_state, context)
        Path(self.marker).touch()
        time.sleep(0.002)
        return super().__call__(policy_state)


class CrashOncePolicy(LinearGaussianPolicy):
    """The first worker to reach step 10 kills its own process (``os._exit``), once per marker."""

    def __init__(self, marker: str, state: Any = None, context: PolicyContext | None = None) -> None:
        super().__init__(state, context)
        self.marker, self.steps = marker, 0

    def __call__(self, policy_state: Any, context: Any = None) -> Any:
        if self.context is None:
            return CrashOncePolicy(self.marker, policy_state, context)
        self.steps += 1
        if self.steps == 10:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().__call__(policy_state)


# ------------------------------------------------------------------------------------ local sampler
def test_local_sampler_is_deterministic_and_task_ordered(fam: metarl.TaskFamily, state: dict) -> None:
    sampler = LocalSampler(fam, envs_per_task=2)
    a = sampler.sample(LinearGaussianPolicy(), state, fam.train, episodes_per_task=4, seed=7)
    b = sampler.sample(LinearGaussianPolicy(), state, fam.train, episodes_per_task=4, seed=7)
    c = sampler.sample(LinearGaussianPolicy(), state, fam.train, episodes_per_task=4, seed=8)
    assert_same(a, b)
    assert not np.array_equal(a.actions, c.actions)
    assert a.task_index.tolist() == np.repeat(np.arange(6), 4).tolist()
    assert a.by_task().returns.shape == (6, 4)


def test_any_partition_of_tasks_gives_the_same_episodes(fam: metarl.TaskFamily, state: dict) -> None:
    tasks = fam.train
    whole = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state, tasks, 4, seed=1)
    for cut in ([0, 1, 6], [0, 3, 4, 6], [0, 2, 4, 6]):
        parts = [
            ShardRunner(fam, 2).sample(LinearGaussianPolicy(), state, tasks[a:b], a, 4, 1)
            for a, b in itertools.pairwise(cut)
        ]
        assert_same(whole, concatenate_batches(parts, cut[:-1]))


def test_concatenation_repads_episodes_of_different_lengths(fam: metarl.TaskFamily) -> None:
    near = fam.task(goal=[0.005, 0.0])  # the zero policy ends every episode after one step
    tasks = [near, fam.train[0], near]
    whole = LocalSampler(fam).sample(ZeroPolicy(), {}, tasks, 2, seed=0)
    parts = [ShardRunner(fam).sample(ZeroPolicy(), {}, tasks[a:b], a, 2, 0) for a, b in ((0, 1), (1, 3))]
    assert parts[0].observations.shape[1] == 1 and parts[1].observations.shape[1] == 100
    assert_same(whole, concatenate_batches(parts, [0, 1]))
    assert whole.lengths.tolist() == [1, 1, 100, 100, 1, 1]


def test_seeds_depend_only_on_seed_and_task_index() -> None:
    assert reset_seeds(3, [2, 5], 2)[2:] == reset_seeds(3, [5], 2)
    assert reset_seeds(3, [5], 2) != reset_seeds(4, [5], 2)
    ctx = PolicyContext((4, 9), 1, 3, None, None)  # type: ignore[arg-type]
    assert ctx.task_seeds()[1] == PolicyContext((9,), 1, 3, None, None).task_seeds()[0]  # type: ignore[arg-type]


def test_sampler_arguments_are_checked(fam: metarl.TaskFamily, state: dict) -> None:
    sampler = LocalSampler(fam, envs_per_task=2)
    with pytest.raises(ValueError, match="positive multiple of the sampler's envs_per_task=2"):
        sampler.sample(LinearGaussianPolicy(), state, fam.train, 3, seed=0)
    with pytest.raises(ValueError, match="at least one task"):
        sampler.sample(LinearGaussianPolicy(), state, [], 2, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        sampler.sample(LinearGaussianPolicy(), state, fam.train, 2, seed=-1)
    with pytest.raises(ValueError, match="envs_per_task must be a positive int"):
        LocalSampler(fam, envs_per_task=0)
    with pytest.raises(ValueError, match="sampler must be 'local' or 'ray'"):
        make_sampler("dask", fam)


# ------------------------------------------------------------------------------------ Ray sampler
@pytest.fixture(scope="module")
def ray_instance() -> Any:
    ray = pytest.importorskip(
        "ray", reason="the Ray sampler needs the 'ray' extra (pip install 'metarl[ray]')"
    )
    # The policy factories above live in this test module, which Ray workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_sampler(ray_instance: Any, fam: metarl.TaskFamily) -> Any:
    sampler = make_sampler("ray", fam, envs_per_task=2, **RAY_OPTIONS)
    yield sampler
    sampler.close()


def test_ray_sampler_equals_local_sampler(ray_sampler: Any, fam: metarl.TaskFamily, state: dict) -> None:
    local = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state, fam.train, 4, seed=11)
    remote = ray_sampler.sample(LinearGaussianPolicy(), state, fam.train, 4, seed=11)
    assert_same(local, remote)
    # Fewer tasks than workers, and the weights of the next iteration.
    state2 = {k: v + 0.1 for k, v in state.items()}
    local = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state2, fam.train[:1], 2, seed=12)
    assert_same(local, ray_sampler.sample(LinearGaussianPolicy(), state2, fam.train[:1], 2, seed=12))


def test_ray_sampler_repads_shares_of_different_lengths(ray_sampler: Any, fam: metarl.TaskFamily) -> None:
    tasks = [fam.task(goal=[0.005, 0.0])] * 2 + list(fam.train[:2])
    local = LocalSampler(fam, 2).sample(ZeroPolicy(), {}, tasks, 2, seed=0)
    assert_same(local, ray_sampler.sample(ZeroPolicy(), {}, tasks, 2, seed=0))


def test_worker_killed_between_iterations_is_replaced(
    ray_instance: Any, fam: metarl.TaskFamily, state: dict
) -> None:
    local = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state, fam.train, 2, seed=5)
    sampler = make_sampler("ray", fam, envs_per_task=2, **RAY_OPTIONS)
    assert isinstance(sampler, RaySampler)
    with sampler:
        assert_same(local, sampler.sample(LinearGaussianPolicy(), state, fam.train, 2, seed=5))
        ray_instance.kill(sampler.workers[0])
        assert_same(local, sampler.sample(LinearGaussianPolicy(), state, fam.train, 2, seed=5))
        assert sampler.restarts == 1


def test_worker_killed_while_sampling_is_replaced(
    ray_instance: Any, fam: metarl.TaskFamily, state: dict, tmp_path: Path
) -> None:
    marker = str(tmp_path / "acting")
    local = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state, fam.train, 4, seed=6)
    sampler = make_sampler("ray", fam, envs_per_task=2, **RAY_OPTIONS)
    assert isinstance(sampler, RaySampler)
    with sampler:
        out: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: out.update(batch=sampler.sample(SlowPolicy(marker), state, fam.train, 4, seed=6))
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        ray_instance.kill(sampler.workers[1])
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert sampler.restarts == 1
        assert_same(local, out["batch"])


def test_worker_process_crash_mid_iteration_is_replaced(
    ray_instance: Any, fam: metarl.TaskFamily, state: dict, tmp_path: Path
) -> None:
    marker = str(tmp_path / "crashed")
    local = LocalSampler(fam, 2).sample(LinearGaussianPolicy(), state, fam.train, 2, seed=9)
    sampler = make_sampler("ray", fam, envs_per_task=2, **RAY_OPTIONS)
    assert isinstance(sampler, RaySampler)
    with sampler:
        batch = sampler.sample(CrashOncePolicy(marker), state, fam.train, 2, seed=9)
        assert os.path.exists(marker) and sampler.restarts == 1
        assert_same(local, batch)


def test_ray_sampler_arguments_are_checked(ray_instance: Any, fam: metarl.TaskFamily) -> None:
    with pytest.raises(ValueError, match="num_workers must be a positive int"):
        make_sampler("ray", fam, num_workers=0)
