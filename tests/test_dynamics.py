"""The dynamics randomiser and the RandParams families of metarl.envs.dynamics."""

from __future__ import annotations

import json
import pickle
import warnings
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import metarl
from metarl.envs.dynamics import (
    RAND_PARAM_ENVS_SPEC,
    DynamicsSpec,
    RandParamsFamily,
    register_randomized,
)

FAMILIES = ["HopperRandParams-v0", "Walker2dRandParams-v0", "HalfCheetahRandParams-v0"]
SMALL = {"train": 4, "validation": 2, "test": 3}


def trajectory(env: gym.Env, seed: int, n: int = 40) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0)]
    for _ in range(n):
        obs, reward, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append((obs, float(reward)))
        if term or trunc:
            break
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True)
    )


def mujoco_model(env: gym.Env) -> mujoco.MjModel:
    """The MuJoCo model of an env whose unwrapped env is a Gymnasium ``MujocoEnv``."""
    base = env.unwrapped
    assert isinstance(base, MujocoEnv)
    return base.model


def ones_task(family: metarl.TaskFamily) -> metarl.Task:
    return family.task(**{p.name: np.ones(p.shape) for p in family.param_space})


@pytest.mark.parametrize("family_id", FAMILIES)
def test_unit_multipliers_reproduce_the_bare_gymnasium_env(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    assert isinstance(family, RandParamsFamily)
    env = family.make_env(ones_task(family))
    bare = gym.make(family.env_id)
    assert same(trajectory(env, seed=1), trajectory(bare, seed=1))


@pytest.mark.parametrize("family_id", FAMILIES)
def test_different_tasks_give_different_transitions(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    a, b = family.test[0], family.test[1]
    assert not same(trajectory(family.make_env(a), seed=2), trajectory(family.make_env(b), seed=2))


def test_tasks_never_compound() -> None:
    family = metarl.make_family("HopperRandParams-v0", split_sizes=SMALL)
    env = family.make_env(family.test[0])
    base = env.unwrapped
    assert isinstance(base, MujocoEnv) and isinstance(base, metarl.TaskEnv)
    model = base.model
    first = trajectory(env, seed=3)
    masses = model.body_mass.copy()
    for task in (*family.train, family.test[2], family.test[1], *family.train[::-1]):
        base.set_task(task)
        trajectory(env, seed=4, n=5)
    base.set_task(family.test[0])
    np.testing.assert_array_equal(model.body_mass, masses)
    assert same(trajectory(env, seed=3), first)


def test_model_fields_are_pristine_times_multipliers() -> None:
    family = metarl.make_family("Walker2dRandParams-v0", split_sizes=SMALL)
    pristine = mujoco_model(gym.make("Walker2d-v5"))
    task = family.test[0]
    env = family.make_env(task)
    model = mujoco_model(env)
    for field in RAND_PARAM_ENVS_SPEC:
        np.testing.assert_allclose(getattr(model, field), getattr(pristine, field) * task.array(field))
    assert task.array("body_mass")[0] == 1.0  # the world body does not vary
    assert np.all(task.array("body_mass")[1:] != 1.0)
    # mj_setConst re-derives compile-time quantities from the new masses.
    assert model.body_subtreemass[0] == pytest.approx(model.body_mass.sum())


def test_multipliers_follow_the_rand_param_envs_ranges() -> None:
    family = metarl.make_family("HalfCheetahRandParams-v0", split_sizes=SMALL)
    tasks = family.sample(50, np.random.default_rng(0))
    mass = np.stack([t.array("body_mass")[1:] for t in tasks])
    damping = np.stack([t.array("dof_damping") for t in tasks])
    friction = np.stack([t.array("geom_friction") for t in tasks])
    for values, base in ((mass, 1.5), (damping, 1.3), (friction, 1.5)):
        exponents = np.log(values) / np.log(base)
        assert exponents.min() >= -3.0 and exponents.max() <= 3.0
        assert exponents.min() < -2.5 and exponents.max() > 2.5  # the whole range is used
        assert abs(exponents.mean()) < 0.3


@pytest.mark.parametrize("family_id", FAMILIES)
def test_env_checkers_pass(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    task = family.sample(1, np.random.default_rng(0))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(family.make_env(task), skip_render_check=True)
        sb3_check_env(family.make_env(task), warn=False)


def test_bad_parameters_are_rejected_with_their_name() -> None:
    family = metarl.make_family("HopperRandParams-v0", split_sizes=SMALL)
    params = {k: np.asarray(v) for k, v in family.test[0].params}
    with pytest.raises(ValueError, match="body_mass"):
        family.task(**{**params, "body_mass": np.full(5, 10.0)})
    with pytest.raises(ValueError, match="dof_damping"):
        family.task(**{**params, "dof_damping": np.ones(3)})
    world = params["body_mass"].copy()
    world[0] = 2.0
    with pytest.raises(ValueError, match="'body_mass': row 0 does not vary"):
        family.task(**{**params, "body_mass": world})


def test_a_custom_spec_selects_elements_and_modes() -> None:
    spec: dict[str, dict[str, Any]] = {
        "body_mass": {"elements": ["thigh", "foot"]},
        "dof_damping": {"mode": "uniform", "low": 0.5, "high": 2.0, "elements": ["thigh_joint"]},
        "dof_armature": {"base": 2.0, "low": -1.0, "high": 1.0},
    }
    family = RandParamsFamily("Hopper-v5", dynamics=spec, split_sizes=SMALL)
    env = family.make_env(family.test[0])
    model = mujoco_model(env)

    thigh = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "thigh")
    foot = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "foot")
    dof = model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "thigh_joint")]
    mass = family.test[0].array("body_mass")
    assert set(np.flatnonzero(mass != 1.0)) == {thigh, foot}
    damping = family.test[0].array("dof_damping")
    assert set(np.flatnonzero(damping != 1.0)) == {dof} and 0.5 <= damping[dof] <= 2.0
    assert family.test[0].names == ("body_mass", "dof_armature", "dof_damping")
    assert DynamicsSpec.from_dict(json.loads(json.dumps(family.spec.to_dict()))) == family.spec


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"body_mass": {"elements": ["no_such_body"]}}, "no_such_body"),
        ({"qpos0": {}}, "qpos0"),
        ({"body_mass": {"mode": "gaussian"}}, "gaussian"),
        ({"body_mass": {"low": 2.0, "high": 1.0}}, "low <= high"),
        ({"body_mass": {"scale": 2.0}}, "scale"),
        ({"body_nothing": {}}, "body_nothing"),
    ],
)
def test_bad_specs_are_rejected(spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RandParamsFamily("Hopper-v5", dynamics=spec)


def test_register_randomized_registers_data() -> None:
    family_id = register_randomized("Swimmer-v5", override=True)
    assert family_id == "SwimmerRandParams-v0"
    spec = metarl.family_spec(family_id)
    assert spec.entry_point == "metarl.envs.dynamics:RandParamsFamily"
    json.dumps(spec.defaults)
    family = metarl.make_family(family_id, split_sizes=SMALL)
    assert family.id == family_id and family.varies == "dynamics"
    env = family.make_env(family.test[0])
    assert env.reset(seed=0)[0].shape == (8,)
    custom = register_randomized(
        "Swimmer-v5", family_id="SwimmerMass-v0", dynamics={"body_mass": {}}, override=True
    )
    assert metarl.make_family(custom).param_space.names == ("body_mass",)
    with pytest.raises(ValueError, match="CartPole-v1"):
        register_randomized("CartPole-v1")
    with pytest.raises(ValueError, match="NoSuchEnv"):
        register_randomized("NoSuchEnv-v5")


def test_envs_and_families_pickle() -> None:
    family = metarl.make_family("HopperRandParams-v0", split_sizes=SMALL)
    env = family.make_env(family.test[1])
    copy = pickle.loads(pickle.dumps(env.unwrapped))
    assert copy.task == family.test[1]
    np.testing.assert_array_equal(copy.model.body_mass, mujoco_model(env).body_mass)
    assert pickle.loads(pickle.dumps(family)).test == family.test
