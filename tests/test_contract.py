"""Contract tests every registered family passes, present and future.

Gymnasium's env checker on sampled tasks; seed determinism; disjoint, reproducible splits; Task JSON
round trip; tasks really differ; bad parameters rejected with a clear error; the env contract
(set_task, reset(options={"task": ...}), info["task_id"], no stepping without a task); and, for
families with a native batched implementation, step-by-step equality with the single env.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl
from metarl import Task, TaskFamily, TaskNotSetError

FAMILIES = metarl.list_families()
SMALL_SPLITS = {"train": 6, "validation": 3, "test": 4}


@functools.cache
def family(family_id: str) -> TaskFamily:
    return metarl.make_family(family_id, split_sizes=SMALL_SPLITS)


def random_actions(space: gym.Space, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    if isinstance(space, gym.spaces.Box):
        return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(n)]
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.start + rng.integers(space.n)) for _ in range(n)]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [space.start + rng.integers(space.nvec) for _ in range(n)]
    raise TypeError(space)


def numeric_info(info: dict) -> tuple:
    """The numeric entries of ``info`` (task quantities, reward terms, distances), sorted by key."""
    values = []
    for key in sorted(info):
        value = info[key]
        if isinstance(value, (bool, int, float, np.number)) or (
            isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
        ):
            values.append(np.asarray(value, dtype=np.float64))
    return tuple(values)


def rollout(env: gym.Env, actions: list, seed: int) -> list:
    """Observations, rewards, terminations, truncations and numeric info entries, step by step.

    The info entries matter for families that hide the goal and normalise a shaped reward by the
    initial object-goal distance (Meta-World): two goals give the same observations and rewards
    until the object moves, while the env already reports different distances to the target.
    """
    obs, _ = env.reset(seed=seed)
    out: list[np.ndarray | tuple[Any, ...]] = [np.asarray(obs, dtype=np.float64).copy()]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(
            (np.asarray(obs, dtype=np.float64).copy(), float(r), bool(term), bool(trunc), *numeric_info(info))
        )
        if term or trunc:
            obs, _ = env.reset()
            out.append(np.asarray(obs, dtype=np.float64).copy())
    return out


def current_task(env: metarl.TaskEnv) -> Task | None:
    """``env.task``, read through a call so that mypy does not keep a narrowed ``None`` across steps."""
    return env.task


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        xs = x if isinstance(x, tuple) else (x,)
        ys = y if isinstance(y, tuple) else (y,)
        for u, v in zip(xs, ys, strict=True):
            if not np.array_equal(np.asarray(u), np.asarray(v)):
                return False
    return True


@pytest.mark.parametrize("family_id", FAMILIES)
def test_gymnasium_check_env(family_id: str) -> None:
    fam = family(family_id)
    task = fam.sample(1, np.random.default_rng(0))[0]
    env = fam.make_env(task)
    check_env(env.unwrapped, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("family_id", FAMILIES)
def test_seed_determinism(family_id: str) -> None:
    fam = family(family_id)
    task = fam.train[0]
    env_a, env_b = fam.make_env(task), fam.make_env(task)
    actions = random_actions(env_a.action_space, 25, seed=1)
    assert same(rollout(env_a, actions, seed=7), rollout(env_b, actions, seed=7))
    env_a.close()
    env_b.close()


@pytest.mark.parametrize("family_id", FAMILIES)
def test_splits_are_disjoint_reproducible_and_sized(family_id: str) -> None:
    fam = family(family_id)
    again = metarl.make_family(family_id, split_sizes=SMALL_SPLITS)
    for split in metarl.SPLITS:
        tasks = fam.split(split)
        assert len(tasks) == SMALL_SPLITS[split]
        assert [t.task_id for t in tasks] == [t.task_id for t in again.split(split)]
        for t in tasks:
            assert fam.validate(t) is t
    if fam.disjoint_splits:
        ids = [set(t.task_id for t in fam.split(s)) for s in metarl.SPLITS]
        assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    bigger = metarl.make_family(family_id, split_sizes={**SMALL_SPLITS, "train": SMALL_SPLITS["train"] + 2})
    assert bigger.test == fam.test, "held-out test tasks must not depend on the train split's size"


@pytest.mark.parametrize("family_id", FAMILIES)
def test_task_json_round_trip(family_id: str) -> None:
    fam = family(family_id)
    for task in [*fam.sample(2, np.random.default_rng(3)), fam.test[0]]:
        back = Task.from_json(task.to_json())
        assert back == task and back.task_id == task.task_id and hash(back) == hash(task)
        assert fam.validate(back) == task


@pytest.mark.parametrize("family_id", FAMILIES)
def test_tasks_really_differ(family_id: str) -> None:
    fam = family(family_id)
    task_a, task_b = fam.train[0], next(t for t in fam.train[1:] + fam.test if t != fam.train[0])
    env_a, env_b = fam.make_env(task_a), fam.make_env(task_b)
    actions = random_actions(env_a.action_space, 60, seed=2)
    assert not same(rollout(env_a, actions, seed=11), rollout(env_b, actions, seed=11))


@pytest.mark.parametrize("family_id", FAMILIES)
def test_bad_parameters_are_rejected_with_the_name(family_id: str) -> None:
    fam = family(family_id)
    params = dict(fam.test[0].params)
    first = fam.param_space[0]
    missing = {k: v for k, v in params.items() if k != first.name}
    with pytest.raises(ValueError, match=first.name):
        fam.validate(Task.create(fam.name, fam.version, missing))
    with pytest.raises(ValueError, match="not_a_parameter"):
        fam.validate(Task.create(fam.name, fam.version, {**params, "not_a_parameter": 1.0}))
    for p in fam.param_space:
        if math.isfinite(p.high):
            bad = np.full(p.shape, p.high + 1.0) if p.shape else p.high + 1.0
            with pytest.raises(ValueError, match=p.name) as err:
                fam.validate(Task.create(fam.name, fam.version, {**params, p.name: bad}))
            assert f"{p.high:g}" in str(err.value)
            break
    with pytest.raises(ValueError, match="belongs to"):
        fam.validate(Task.create("SomeOtherFamily", fam.version, params))


@pytest.mark.parametrize("family_id", FAMILIES)
def test_env_contract(family_id: str) -> None:
    fam = family(family_id)
    env = fam.make_env()
    base = env.unwrapped
    assert isinstance(base, metarl.TaskEnv)
    assert current_task(base) is None
    with pytest.raises(TaskNotSetError, match="set_task"):
        env.reset(seed=0)
    with pytest.raises(TaskNotSetError):
        env.step(env.action_space.sample())
    task_a, task_b = fam.train[0], fam.train[1]
    _, info = env.reset(seed=0, options={"task": task_a})
    assert current_task(base) == task_a and info["task_id"] == task_a.task_id
    base.set_task(task_b)
    _, info = env.reset(seed=0)
    assert info["task_id"] == task_b.task_id
    *_, info = env.step(env.action_space.sample())
    assert info["task_id"] == task_b.task_id
    env.close()


BATCHED = [f for f in FAMILIES if family(f).describe()["batched"]]


@pytest.mark.parametrize("family_id", BATCHED)
def test_batched_env_matches_single_envs(family_id: str) -> None:
    """Same tasks, seeds and actions: same observations, rewards, terminations and truncations,
    step by step, across autoresets."""
    fam = family(family_id)
    tasks = list(fam.test[:3])
    native = metarl.make_vec(fam, tasks, envs_per_task=2, backend="native")
    reference = metarl.make_vec(fam, tasks, envs_per_task=2, backend="gymnasium")
    obs_n, _ = native.reset(seed=5)
    obs_r, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(obs_n, obs_r)
    steps = 2 * fam.max_episode_steps + 3
    actions = random_actions(native.action_space, steps, seed=9)
    for a in actions:
        out_n = native.step(a)
        out_r = reference.step(a)
        for x, y in zip(out_n[:4], out_r[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        done = out_r[2] | out_r[3]
        if done.any():
            np.testing.assert_array_equal(
                np.stack(out_n[4]["final_obs"][done]), np.stack(out_r[4]["final_obs"][done])
            )
    native.close()
    reference.close()
