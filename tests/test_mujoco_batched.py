"""The native batched MuJoCo backend against Gymnasium's path, step for step.

Longer runs than the registry-wide contract test: several episodes per sub-env with
termination-driven resets in the middle of the batch (Ant, Humanoid, Hopper, Walker2d), a
horizon shorter than the episodes so truncations interleave with terminations, several threads,
``set_tasks`` between batches, reward terms in ``infos`` summing to the reward, and float64 actions.
Everything is compared for exact equality (the backend makes the same MuJoCo calls as Gymnasium and
mirrors its numpy in the same order); the largest deviation is also asserted below 1e-9.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

import metarl
from metarl.envs import mujoco_physics
from metarl.envs.mujoco_batched import MujocoVectorEnv
from metarl.envs.mujoco_physics import BatchedPhysics

SPLITS = {"train": 6, "validation": 2, "test": 4}


def mujoco_model(env: gym.Env) -> mujoco.MjModel:
    """The MuJoCo model of a family's env (its unwrapped env is a Gymnasium ``MujocoEnv``)."""
    base = env.unwrapped
    assert isinstance(base, MujocoEnv)
    return base.model


# (family id, steps, horizon): horizons shorter than the run force truncations mid-batch (HalfCheetah,
# Ant); the healthy-terminating robots terminate at different steps in different sub-envs.
CASES = [
    ("HalfCheetahVel-v0", 260, 120),
    # 1200 steps, 1000 in one episode: the solver's warm start must carry over exactly throughout.
    ("HalfCheetahVel-v0", 1200, 1000),
    ("HalfCheetahDir-v0", 120, 50),
    ("AntDir-v0", 200, 90),
    ("AntVel-v0", 120, 60),
    ("AntDir2D-v0", 120, 60),
    ("AntGoal-v0", 120, 60),
    ("HumanoidDir-v0", 150, 100),
    ("HopperRandParams-v0", 300, 200),
    ("Walker2dRandParams-v0", 300, 200),
    ("HalfCheetahRandParams-v0", 120, 50),
]


def _run_pair(
    family_id: str, steps: int, horizon: int, *, num_threads: int, dtype: type = np.float32, seed: int = 3
) -> dict[str, int | float]:
    fam = metarl.make_family(family_id, split_sizes=SPLITS, max_episode_steps=horizon)
    tasks = list(fam.train[:4])
    native = MujocoVectorEnv(fam, tasks, envs_per_task=2, num_threads=num_threads)
    reference = metarl.make_vec(fam, tasks, envs_per_task=2, backend="gymnasium")
    obs_n, _ = native.reset(seed=seed)
    obs_r, _ = reference.reset(seed=seed)
    np.testing.assert_array_equal(obs_n, obs_r)
    rng = np.random.default_rng(seed + 1)
    space = native.action_space
    assert isinstance(space, gym.spaces.Box)
    max_dev = 0.0
    terminations = truncations = 0
    for _ in range(steps):
        a: np.ndarray = rng.uniform(space.low * 1.2, space.high * 1.2).astype(dtype)  # also outside ctrlrange
        on, rn, ten, trn, info = native.step(a)
        orf, rr, ter, trr, _ = reference.step(a)
        np.testing.assert_array_equal(ten, ter)
        np.testing.assert_array_equal(trn, trr)
        np.testing.assert_array_equal(on, orf)
        np.testing.assert_array_equal(rn, rr)
        max_dev = max(max_dev, float(np.abs(on - orf).max()), float(np.abs(rn - rr).max()))
        terms = [k for k in info if k.startswith("reward_")]
        np.testing.assert_allclose(sum(np.asarray(info[k], np.float64) for k in terms), rn, rtol=0, atol=1e-9)
        terminations += int(ter.sum())
        truncations += int((trr & ~ter).sum())
    native.close()
    reference.close()
    return {"max_dev": max_dev, "terminations": terminations, "truncations": truncations}


@pytest.mark.parametrize(("family_id", "steps", "horizon"), CASES)
def test_matches_gymnasium_with_mid_batch_resets(family_id: str, steps: int, horizon: int) -> None:
    result = _run_pair(family_id, steps, horizon, num_threads=2)
    assert result["max_dev"] <= 1e-9
    if family_id.startswith(("HalfCheetah", "Ant")):
        assert result["truncations"] > 0, "no truncation-driven reset was exercised"
    if not family_id.startswith("HalfCheetah"):
        assert result["terminations"] > 0, "no termination-driven reset was exercised"


@pytest.mark.parametrize("family_id", ["AntDir-v0", "HumanoidDir-v0", "Walker2dRandParams-v0"])
def test_python_loop_matches_gymnasium_too(family_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python stepping loop (the fallback without a C compiler) is exact as well."""
    monkeypatch.setenv("METARL_MUJOCO_KERNEL", "python")
    assert _run_pair(family_id, 100, 45, num_threads=2)["max_dev"] == 0.0


def _c_kernel_or_skip() -> None:
    if mujoco_physics.load_c_kernel() is None:
        pytest.skip(f"no C kernel here: {mujoco_physics.c_kernel_error()}")


def test_c_and_python_loops_give_the_same_bits_in_every_field() -> None:
    """Ant copies a body position and the contact forces out of the scratch data per sub-env."""
    _c_kernel_or_skip()
    fam = metarl.make_family("AntGoal-v0", split_sizes=SPLITS)
    model = mujoco_model(fam.make_env())
    fields = {"qpos": ("qpos", None), "xy": ("xpos", (1, slice(0, 2))), "cfrc": ("cfrc_ext", None)}
    outs = []
    for kernel, threads in (("python", 2), ("c", 2), ("c", 3), ("c", 1)):
        phys = BatchedPhysics([model] * 9, 5, fields, num_threads=threads, kernel=kernel)
        assert phys.kernel == kernel
        rng = np.random.default_rng(0)
        for i in range(9):
            phys.set_state(i, model.qpos0 + rng.uniform(-0.1, 0.1, model.nq), rng.normal(size=model.nv) * 0.1)
        for _ in range(30):
            phys.step(rng.uniform(-1, 1, (9, model.nu)))
        outs.append({k: v.copy() for k, v in phys.out.items()} | {"state": phys.state.copy()})
        phys.close()
    assert np.abs(outs[0]["cfrc"]).max() > 0  # contacts happened
    for other in outs[1:]:
        for key, value in outs[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=key)


def test_the_native_env_uses_the_c_loop_by_default() -> None:
    _c_kernel_or_skip()
    fam = metarl.make_family("HalfCheetahVel-v0", split_sizes=SPLITS)
    vec = metarl.make_vec(fam, fam.test[:2])
    assert isinstance(vec, MujocoVectorEnv)
    vec.reset(seed=0)
    assert vec._physics is not None and vec._physics.kernel == "c"
    vec.close()
    slow = MujocoVectorEnv(fam, fam.test[:2], kernel="python")
    slow.reset(seed=0)
    assert slow._physics is not None and slow._physics.kernel == "python"
    slow.close()


def test_kernel_choice_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    model = mujoco_model(metarl.make_family("HalfCheetahVel-v0", split_sizes=SPLITS).make_env())
    with pytest.raises(ValueError, match=r"kernel must be one of.*'fortran'"):
        BatchedPhysics([model], 5, {}, kernel="fortran")
    monkeypatch.setenv("METARL_MUJOCO_KERNEL", "gpu")
    with pytest.raises(ValueError, match=r"METARL_MUJOCO_KERNEL must be one of.*'gpu'"):
        BatchedPhysics([model], 5, {})


def test_without_a_compiler_the_python_loop_is_used_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    model = mujoco_model(metarl.make_family("HalfCheetahVel-v0", split_sizes=SPLITS).make_env())
    monkeypatch.setattr(mujoco_physics, "_kernel", None)
    monkeypatch.setattr(mujoco_physics, "_kernel_error", None)
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="Python MuJoCo stepping loop"):
        phys = BatchedPhysics([model] * 2, 5, {"qpos": ("qpos", None)}, num_threads=2)
    assert phys.kernel == "python"
    phys.step(np.zeros((2, model.nu)))
    phys.close()
    with pytest.raises(RuntimeError, match=r"could not be built.*no-such-compiler"):
        BatchedPhysics([model], 5, {}, kernel="c")


def test_float64_actions_and_single_thread() -> None:
    result = _run_pair("AntGoal-v0", 80, 40, num_threads=1, dtype=np.float64)
    assert result["max_dev"] == 0.0


def test_set_tasks_rebuilds_dynamics() -> None:
    """Reassigning dynamics tasks in place gives the same models as fresh single envs."""
    fam = metarl.make_family("HopperRandParams-v0", split_sizes=SPLITS, max_episode_steps=50)
    native = MujocoVectorEnv(fam, list(fam.train[:2]), envs_per_task=2, num_threads=2)
    reference = metarl.make_vec(fam, list(fam.train[:2]), envs_per_task=2, backend="gymnasium")
    for tasks in (list(fam.train[2:4]), list(fam.train[:2])):
        native.set_tasks(tasks)
        reference.set_tasks(tasks)
        np.testing.assert_array_equal(native.reset(seed=1)[0], reference.reset(seed=1)[0])
        rng = np.random.default_rng(0)
        for _ in range(60):
            a = rng.uniform(-1, 1, native.action_space.shape).astype(np.float32)
            for x, y in zip(native.step(a)[:4], reference.step(a)[:4], strict=True):
                np.testing.assert_array_equal(x, y)
    native.close()


def test_auto_backend_is_native_and_gymnasium_on_request() -> None:
    fam = metarl.make_family("HalfCheetahVel-v0", split_sizes=SPLITS)
    assert isinstance(metarl.make_vec(fam, fam.test[:2]), MujocoVectorEnv)
    assert not isinstance(metarl.make_vec(fam, fam.test[:2], backend="gymnasium"), MujocoVectorEnv)
    assert fam.describe()["batched"]


def test_physics_threads_do_not_change_results() -> None:
    """The chunked thread pool gives the same states as stepping on one thread."""
    fam = metarl.make_family("AntDir-v0", split_sizes=SPLITS)
    model = mujoco_model(fam.make_env())
    outs = []
    for threads in (1, 2, 3):
        phys = BatchedPhysics([model] * 7, 5, {"qpos": ("qpos", None)}, num_threads=threads)
        rng = np.random.default_rng(0)
        for i in range(7):
            phys.set_state(i, model.qpos0 + rng.uniform(-0.1, 0.1, model.nq), rng.normal(size=model.nv) * 0.1)
        for _ in range(20):
            phys.step(rng.uniform(-1, 1, (7, model.nu)))
        outs.append(phys.out["qpos"].copy())
        phys.close()
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_models_of_different_robots_are_rejected() -> None:
    """Sub-envs share one scratch ``MjData`` per thread, so their models must have one size."""
    cheetah = mujoco_model(metarl.make_family("HalfCheetahVel-v0", split_sizes=SPLITS).make_env())
    ant = mujoco_model(metarl.make_family("AntDir-v0", split_sizes=SPLITS).make_env())
    with pytest.raises(ValueError, match="one size"):
        BatchedPhysics([cheetah, ant], 5, {"qpos": ("qpos", None)}, num_threads=1)
