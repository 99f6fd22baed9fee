"""The reward- and goal-varying MuJoCo families of metarl.envs.mujoco."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import metarl
from metarl.envs.mujoco import _TaskInfo

FAMILIES = [
    "HalfCheetahVel-v0",
    "HalfCheetahDir-v0",
    "AntVel-v0",
    "AntDir-v0",
    "AntDir2D-v0",
    "AntGoal-v0",
    "HumanoidDir-v0",
]
BARE = {"HalfCheetah": "HalfCheetah-v5", "Ant": "Ant-v5", "Humanoid": "Humanoid-v5"}
OBS_DIM = {"HalfCheetah": 17, "Ant": 105, "Humanoid": 348}
SMALL = {"train": 4, "validation": 2, "test": 3}


def bare_id(family_id: str) -> str:
    return next(v for k, v in BARE.items() if family_id.startswith(k))


def actions(space: gym.Space[Any], n: int, seed: int) -> list[np.ndarray]:
    assert isinstance(space, gym.spaces.Box)
    rng = np.random.default_rng(seed)
    return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(n)]


def expected_task_term(family_id: str, task: metarl.Task, info: dict) -> float:
    """The task-dependent reward term computed by hand from Gymnasium's reported velocities."""
    vx, vy = info["x_velocity"], info.get("y_velocity", 0.0)
    if family_id in ("HalfCheetahVel-v0", "AntVel-v0"):
        return -abs(vx - task["velocity"])
    if family_id in ("HalfCheetahDir-v0", "AntDir-v0"):
        return task["direction"] * vx
    if family_id in ("AntDir2D-v0", "HumanoidDir-v0"):
        weight = 1.25 if family_id.startswith("Humanoid") else 1.0
        angle = task["angle"]
        assert not isinstance(angle, tuple)  # a scalar parameter
        return weight * (math.cos(angle) * vx + math.sin(angle) * vy)
    goal = task["goal"]
    assert isinstance(goal, tuple)  # a vector parameter
    gx, gy = goal
    return -(abs(info["x_position"] - gx) + abs(info["y_position"] - gy))


@pytest.mark.parametrize("family_id", FAMILIES)
def test_reward_is_the_sum_of_its_terms_and_uses_gymnasium_velocity(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    task = family.test[0]
    env = family.make_env(task)
    base = env.unwrapped
    assert isinstance(base, _TaskInfo)
    terms = base.reward_terms
    _, info = env.reset(seed=0)
    task_key = {"velocity": "target_velocity", "direction": "direction", "angle": "direction", "goal": "goal"}
    assert task_key[task.names[0]] in info
    for a in actions(env.action_space, 30, seed=1):
        _, reward, terminated, truncated, info = env.step(a)
        assert reward == pytest.approx(sum(info[k] for k in terms), rel=1e-12, abs=1e-12)
        assert info[terms[0]] == pytest.approx(
            expected_task_term(family_id, task, info), rel=1e-12, abs=1e-12
        )
        assert task_key[task.names[0]] in info
        if terminated or truncated:
            break
    env.close()


@pytest.mark.parametrize("family_id", ["HalfCheetahVel-v0", "AntDir2D-v0", "HumanoidDir-v0"])
def test_dynamics_and_velocity_match_the_bare_gymnasium_env(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    env = family.make_env(family.test[0])
    bare = gym.make(bare_id(family_id))
    obs, _ = env.reset(seed=3)
    obs_bare, _ = bare.reset(seed=3)
    np.testing.assert_array_equal(obs, obs_bare)
    assert env.observation_space.shape == (OBS_DIM[bare_id(family_id).split("-")[0]],)
    for a in actions(env.action_space, 20, seed=4):
        obs, _, term, _, info = env.step(a)
        obs_bare, _, term_bare, _, info_bare = bare.step(a)
        np.testing.assert_array_equal(obs, obs_bare)
        assert info["x_velocity"] == info_bare["x_velocity"] and term == term_bare
        if term:
            break
    env.close()
    bare.close()


def test_half_cheetah_control_cost_is_maml_s() -> None:
    family = metarl.make_family("HalfCheetahDir-v0")
    env = family.make_env(family.task(direction=-1))
    env.reset(seed=0)
    a = np.full(6, 0.5, dtype=np.float32)
    *_, info = env.step(a)
    assert info["reward_ctrl"] == pytest.approx(-0.05 * float(np.sum(a**2)))
    assert info["direction"] == -1.0


@pytest.mark.parametrize("family_id", FAMILIES)
def test_env_checkers_pass(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    task = family.sample(1, np.random.default_rng(0))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = family.make_env(task)
        check_env(env, skip_render_check=True)
        sb3_check_env(family.make_env(task), warn=False)
    env.close()


@pytest.mark.parametrize(
    ("family_id", "params", "name"),
    [
        ("HalfCheetahVel-v0", {"velocity": 2.5}, "velocity"),
        ("HalfCheetahDir-v0", {"direction": 0.5}, "direction"),
        ("AntVel-v0", {"velocity": -0.1}, "velocity"),
        ("AntDir-v0", {"direction": 0}, "direction"),
        ("AntDir2D-v0", {"angle": 7.0}, "angle"),
        ("AntGoal-v0", {"goal": (4.0, 0.0)}, "goal"),
        ("AntGoal-v0", {"goal": (1.0, 1.0, 1.0)}, "goal"),
        ("HumanoidDir-v0", {"angle": float("nan")}, "angle"),
    ],
)
def test_bad_task_parameters_are_rejected(family_id: str, params: dict, name: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    with pytest.raises(ValueError, match=name):
        family.task(**params)
    env = family.make_env()
    base = env.unwrapped
    assert isinstance(base, metarl.TaskEnv)
    with pytest.raises(ValueError, match=name):
        base.set_task(metarl.Task.create(family.name, family.version, params))


def test_horizon_is_200_and_configurable() -> None:
    assert metarl.make_family("AntGoal-v0").max_episode_steps == 200
    family = metarl.make_family("HalfCheetahVel-v0", max_episode_steps=5)
    env = family.make_env(family.test[0])
    env.reset(seed=0)
    steps = [env.step(env.action_space.sample()) for _ in range(5)]
    assert [s[3] for s in steps] == [False] * 4 + [True]


def test_gymnasium_keywords_pass_through_and_are_checked() -> None:
    family = metarl.make_family("AntDir-v0", include_cfrc_ext_in_observation=False)
    env = family.make_env(family.test[0])
    assert env.observation_space.shape == (27,)
    with pytest.raises(ValueError, match="not_a_keyword"):
        metarl.make_family("AntDir-v0", not_a_keyword=1)


def test_direction_families_share_their_two_tasks_across_splits() -> None:
    family = metarl.make_family("HalfCheetahDir-v0")
    assert {t["direction"] for t in family.train} == {-1, 1}
    assert {t["direction"] for t in family.test} == {-1, 1}


def test_velocity_tasks_change_only_the_task_term() -> None:
    family = metarl.make_family("AntVel-v0", split_sizes=SMALL)
    runs = []
    for task in (family.task(velocity=0.0), family.task(velocity=3.0)):
        env = family.make_env(task)
        env.reset(seed=0)
        runs.append([env.step(a) for a in actions(env.action_space, 5, seed=0)])
    for (obs0, r0, *_, info0), (obs1, r1, *_, _) in zip(*runs, strict=True):
        np.testing.assert_array_equal(obs0, obs1)
        v = info0["x_velocity"]
        assert r0 - r1 == pytest.approx(abs(v - 3.0) - abs(v))
