"""Property-based bad-input tests: every input either works or raises a clear error.

"Clear" means ``ValueError``, ``TypeError`` or ``KeyError`` (or a subclass) with a message -- never
an unrelated traceback (``IndexError``, ``AttributeError``, ``ZeroDivisionError``, ...), a hang, or
NaN flowing silently into observations or rewards. Covered: task parameters of every registered
family (Meta-World skipped for speed), actions for single and vector envs, the arguments of
``make_vec``, ``collect`` and ``evaluate``, and results files read by ``EvalResult.from_json``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import metarl
from metarl import EvalResult, Task
from metarl.agents.scripted import RandomLearner, sample_actions

CLEAR_ERRORS = (ValueError, TypeError, KeyError)
FAMILIES = [f for f in metarl.list_families() if not f.startswith(("ML1-", "ML10-", "ML45-", "MT"))]
NAV = "Navigation2D-v0"
PROPERTY = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], database=None
)


@cache
def family(family_id: str) -> metarl.TaskFamily:
    return metarl.make_family(family_id, split_sizes={"train": 2, "validation": 1, "test": 1})


@cache
def single_env(family_id: str) -> gym.Env:
    fam = family(family_id)
    return fam.make_env(fam.train[0])


@cache
def vector_env(family_id: str, backend: str = "auto") -> Any:
    fam = family(family_id)
    return metarl.make_vec(fam, fam.train[:2], backend=backend)


def expect_clear_error(exc: BaseException) -> None:
    """Fail unless ``exc`` is a clear error with a message."""
    if not isinstance(exc, CLEAR_ERRORS):
        raise AssertionError(f"unclear error {type(exc).__name__}: {exc}") from exc
    assert str(exc), f"{type(exc).__name__} without a message"


def assert_no_nan(*arrays: Any) -> None:
    for value in arrays:
        arr = np.asarray(value, dtype=np.float64)
        assert not np.isnan(arr).any(), f"NaN leaked into an output: {arr}"


def assert_finite(*arrays: Any) -> None:
    """No NaN and no inf (an infinite reward turns advantages into NaN in training)."""
    for value in arrays:
        arr = np.asarray(value, dtype=np.float64)
        assert np.isfinite(arr).all(), f"a non-finite value leaked into an output: {arr}"


# ------------------------------------------------------------------------------------ strategies
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
WEIRD = st.one_of(
    FLOATS,
    st.integers(-(10**30), 10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(FLOATS, max_size=3),
    st.lists(st.lists(FLOATS, max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), FLOATS, max_size=2),
)


@st.composite
def perturbed_params(draw: st.DrawFn, family_id: str) -> dict[str, Any]:
    """A sampled task's parameters with one entry replaced, one parameter dropped or renamed, or an
    unknown parameter added."""
    fam = family(family_id)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params: dict[str, Any] = {k: np.asarray(v).tolist() for k, v in fam.sample(1, rng)[0].params}
    name = draw(st.sampled_from(sorted(params)))
    how = draw(st.sampled_from(["element", "whole", "drop", "extra", "boundary"]))
    if how == "element" and np.ndim(params[name]) > 0:
        arr = np.asarray(params[name], dtype=object)
        idx = tuple(draw(st.integers(0, n - 1)) for n in arr.shape)
        arr[idx] = draw(st.one_of(FLOATS, st.integers(-(10**6), 10**6), st.none(), st.text(max_size=2)))
        params[name] = arr.tolist()
    elif how in ("element", "whole"):
        params[name] = draw(WEIRD)
    elif how == "drop":
        del params[name]
    elif how == "extra":
        params[draw(st.text(min_size=1, max_size=5))] = draw(WEIRD)
    else:
        param = next(p for p in fam.param_space if p.name == name)
        edge = draw(st.sampled_from([param.low, param.high]))
        if math.isfinite(edge):
            params[name] = np.full(param.shape, edge).tolist()
    return params


def bad_actions(space: gym.Space[Any], batch: int | None = None) -> st.SearchStrategy[Any]:
    """Actions for ``space`` (or ``batch`` of them): in bounds, out of bounds, NaN/inf, wrong shape
    or dtype, or not numbers at all."""
    lead = () if batch is None else (batch,)
    good_shape: st.SearchStrategy[np.ndarray]
    cast: st.SearchStrategy[np.ndarray]
    if isinstance(space, gym.spaces.Box):
        shape = lead + space.shape
        elements = st.one_of(
            st.floats(-1.0, 1.0), st.floats(-1e6, 1e6), FLOATS, st.sampled_from([1e308, -1e308])
        )
        good_shape = st.lists(elements, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda xs: np.asarray(xs, dtype=np.float64).reshape(shape)
        )
        cast = good_shape.map(lambda a: np.nan_to_num(a).astype(np.float32))
    else:
        shape = lead
        n = int(getattr(space, "n", 2))
        ints = st.integers(-3, n + 3) | st.integers(-(2**62), 2**62)
        good_shape = st.lists(ints, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda xs: np.asarray(xs, dtype=np.int64).reshape(shape)
        )
        cast = st.lists(FLOATS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda xs: np.asarray(xs, dtype=np.float64).reshape(shape)
        )
    wrong_shape = st.lists(FLOATS, max_size=5).map(np.asarray)
    return st.one_of(
        good_shape,
        cast,
        wrong_shape,
        WEIRD,
        good_shape.map(lambda a: a.astype(bool)),
        good_shape.map(lambda a: a.astype(str)),
    )


# ------------------------------------------------------------------------------------ tasks
@pytest.mark.parametrize("family_id", FAMILIES)
def test_task_parameters_are_validated(family_id: str) -> None:
    fam = family(family_id)

    @PROPERTY
    @given(params=perturbed_params(family_id))
    def check(params: dict[str, Any]) -> None:
        try:
            task = fam.task(**params)
        except Exception as exc:
            expect_clear_error(exc)
            return
        env = single_env(family_id)
        obs, _ = env.reset(seed=0, options={"task": task})
        action = sample_actions(env.action_space, 1, np.random.default_rng(0))[0]
        obs2, reward, *_ = env.step(action)
        assert_no_nan(obs, obs2, reward)
        assert Task.from_json(task.to_json()) == task

    check()


@PROPERTY
@given(
    split_sizes=st.one_of(WEIRD, st.dictionaries(st.sampled_from(["train", "test", "x"]), WEIRD, max_size=2)),
    split_seed=WEIRD,
    max_episode_steps=WEIRD,
)
def test_family_keywords_are_validated(split_sizes: Any, split_seed: Any, max_episode_steps: Any) -> None:
    try:
        fam = metarl.make_family(
            NAV, split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps
        )
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert fam.max_episode_steps >= 1


@PROPERTY
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.just(Task.create("Navigation2D", 0, {"goal": [0, 0]}).to_json()).flatmap(
            lambda t: st.integers(0, len(t)).map(lambda k: t[:k])
        ),
    )
)
def test_task_json_is_validated(text: str) -> None:
    try:
        task = Task.from_json(text)
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert Task.from_json(task.to_json()) == task


@PROPERTY
@given(record=st.dictionaries(st.sampled_from(["family", "version", "params", "task_id", "x"]), WEIRD))
def test_task_records_are_validated(record: dict[str, Any]) -> None:
    try:
        task = Task.from_dict(record)
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert Task.from_json(task.to_json()) == task


# ------------------------------------------------------------------------------------ actions
@pytest.mark.parametrize("family_id", FAMILIES)
def test_single_env_actions_are_validated(family_id: str) -> None:
    env = single_env(family_id)

    @PROPERTY
    @given(action=bad_actions(env.action_space))
    def check(action: Any) -> None:
        env.reset(seed=0)
        try:
            obs, reward, *_ = env.step(action)
        except Exception as exc:
            expect_clear_error(exc)
            return
        assert_no_nan(obs, reward)
        assert_finite(reward)

    check()


VECTOR_CASES = [(f, "auto") for f in FAMILIES] + [
    (f, "gymnasium") for f in ("Navigation2D-v0", "BernoulliBandit-v0", "TabularMDP-v0") if f in FAMILIES
]


@pytest.mark.parametrize(("family_id", "backend"), VECTOR_CASES)
def test_vector_env_actions_are_validated(family_id: str, backend: str) -> None:
    vec = vector_env(family_id, backend)

    @PROPERTY
    @given(actions=bad_actions(vec.single_action_space, vec.num_envs))
    def check(actions: Any) -> None:
        vec.reset(seed=0)
        try:
            obs, rewards, *_ = vec.step(actions)
        except Exception as exc:
            expect_clear_error(exc)
            return
        assert_no_nan(obs, rewards)
        assert_finite(rewards)

    check()


# MuJoCo envs do not clip actions (Gymnasium's convention; MuJoCo clamps the controls): an action
# out of bounds is accepted and pays the control cost of its unclipped value, unless that cost
# overflows, which raises a ValueError naming the action instead of returning an infinite reward.
MUJOCO_REWARD_FAMILIES = ["HalfCheetahVel-v0", "AntDir-v0", "HumanoidDir-v0"]


@pytest.mark.parametrize("family_id", MUJOCO_REWARD_FAMILIES)
@pytest.mark.parametrize("huge", [1e308, -1e308, np.float32(3e38)])
def test_huge_action_in_mujoco_single_env_raises_naming_it(family_id: str, huge: Any) -> None:
    env = single_env(family_id)
    assert isinstance(env.action_space, gym.spaces.Box)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.asarray(huge).dtype)
    action[1] = huge
    if family_id.startswith("Humanoid") and action.dtype == np.float32:
        # Humanoid's cost reads data.ctrl (float64), where 3e38 squared is finite: accepted
        _, reward, *_ = env.step(action)
        assert math.isfinite(reward) and float(reward) < -1e75
        return
    with pytest.raises(
        ValueError, match=r"makes the reward non-finite.*largest entry is 1: -?(1e\+308|3\.\d*e\+38)"
    ):
        with np.errstate(over="ignore"):
            env.step(action)
    env.reset(seed=0)  # the env still works
    assert_finite(env.step(np.zeros(env.action_space.shape))[1])


@pytest.mark.parametrize("family_id", [*MUJOCO_REWARD_FAMILIES, "HopperRandParams-v0"])
def test_huge_action_in_mujoco_batched_env_raises_naming_it(family_id: str) -> None:
    vec = vector_env(family_id)
    assert type(vec).__name__ == "MujocoVectorEnv"
    vec.reset(seed=0)
    actions = np.zeros(vec.action_space.shape)
    actions[1, -1] = 1e308
    with pytest.raises(ValueError, match=r"sub-env 1's action .* non-finite.*largest entry is \d+: 1e\+308"):
        with np.errstate(over="ignore"):
            vec.step(actions)
    with pytest.raises(metarl.TaskNotSetError, match="reset"):  # its step was cut short
        vec.step(np.zeros(vec.action_space.shape))
    vec.reset(seed=0)
    assert_finite(vec.step(np.zeros(vec.action_space.shape))[1])


@pytest.mark.parametrize("family_id", [*MUJOCO_REWARD_FAMILIES, "HopperRandParams-v0"])
def test_out_of_bounds_mujoco_actions_pay_their_unclipped_control_cost(family_id: str) -> None:
    """5x the bounds: accepted, the same reward in the single and the batched env, and the control
    cost of the action as given (Gymnasium's convention), not of the clipped one."""
    fam = family(family_id)
    vec = metarl.make_vec(fam, fam.train[:1])
    env = fam.make_env(fam.train[0])
    assert isinstance(env.action_space, gym.spaces.Box)
    action = 5.0 * np.asarray(env.action_space.high, dtype=np.float64)
    action[0] = -action[0]
    env.reset(seed=3)
    _, reward, _, _, info = env.step(action)
    vec.reset(seed=3)
    _, rewards, _, _, infos = vec.step(action[None])
    assert math.isfinite(reward) and rewards[0] == reward
    if not family_id.startswith("Humanoid"):  # Humanoid's cost reads data.ctrl (the same values)
        base = env.unwrapped
        assert isinstance(base, (HalfCheetahEnv, AntEnv, HopperEnv))
        weight = base._ctrl_cost_weight
        assert info["reward_ctrl"] == -weight * np.sum(np.square(action))
        assert infos["reward_ctrl"][0] == info["reward_ctrl"]


@pytest.mark.parametrize(
    "family_id", ["HopperRandParams-v0", "Walker2dRandParams-v0", "HalfCheetahRandParams-v0"]
)
def test_huge_action_in_rand_params_single_env(family_id: str) -> None:
    env = single_env(family_id)
    env.reset(seed=0)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"non-finite.*1e\+308"):
        env.step(np.full(env.action_space.shape, 1e308))


# ------------------------------------------------------------------------------------ arguments
SIZES = st.one_of(
    st.integers(-3, 4), st.floats(allow_nan=True), st.text(max_size=2), st.none(), st.booleans()
)


@PROPERTY
@given(
    envs_per_task=SIZES, n_tasks=st.integers(0, 3), backend=st.sampled_from(["auto", "gymnasium", "x", None])
)
def test_make_vec_arguments(envs_per_task: Any, n_tasks: int, backend: Any) -> None:
    fam = family(NAV)
    try:
        vec = metarl.make_vec(fam, fam.train[:n_tasks], envs_per_task=envs_per_task, backend=backend)
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert vec.num_envs == len(fam.train[:n_tasks]) * envs_per_task


@PROPERTY
@given(
    tasks=st.one_of(WEIRD, st.lists(WEIRD, min_size=1, max_size=2)),
    family_id=st.sampled_from([NAV, "Nav-v9", 3]),
)
def test_make_vec_rejects_non_tasks(tasks: Any, family_id: Any) -> None:
    try:
        metarl.make_vec(family_id, tasks)
    except Exception as exc:
        expect_clear_error(exc)
        return
    raise AssertionError(f"make_vec accepted tasks={tasks!r}")


@PROPERTY
@given(episodes=SIZES, seed=st.one_of(st.integers(-5, 5), st.text(max_size=2), st.floats(), st.none()))
def test_collect_arguments(episodes: Any, seed: Any) -> None:
    vec = vector_env(NAV)
    try:
        batch = metarl.collect(vec, lambda obs: np.zeros((2, 2), np.float32), episodes, seed=seed)
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert batch.num_episodes == 2 * episodes


@PROPERTY
@given(
    rounds=SIZES,
    episodes=SIZES,
    n_tasks=st.one_of(st.none(), SIZES),
    split=st.sampled_from(["test", "train", "nope", 3]),
    seed=st.one_of(st.integers(-2, 2), st.text(max_size=1)),
    confidence=st.one_of(st.floats(allow_nan=True), st.text(max_size=1)),
)
def test_evaluate_arguments(
    rounds: Any, episodes: Any, n_tasks: Any, split: Any, seed: Any, confidence: Any
) -> None:
    try:
        result = metarl.evaluate(
            RandomLearner(),
            family(NAV),
            rounds=rounds,
            episodes_per_round=episodes,
            n_tasks=n_tasks,
            split=split,
            seed=seed,
            confidence=confidence,
        )
    except Exception as exc:
        expect_clear_error(exc)
        return
    assert result.returns.shape[1] == rounds
    assert_no_nan(result.returns)


# ------------------------------------------------------------------------------------ results files
@cache
def result_text() -> str:
    fam = family(NAV)
    return metarl.evaluate(RandomLearner(), fam, rounds=2, episodes_per_round=1, n_tasks=1).to_json()


def check_loaded(text: str) -> None:
    try:
        result = EvalResult.from_json(text)
    except Exception as exc:
        expect_clear_error(exc)
        return
    result.to_markdown()
    result.to_json()


@PROPERTY
@given(cut=st.integers(0, 10_000))
def test_truncated_results_files(cut: int) -> None:
    text = result_text()
    assume(cut < len(text))
    check_loaded(text[:cut])


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@PROPERTY
@given(key=st.sampled_from(sorted(json.loads(result_text()))), value=JSON, drop=st.booleans())
def test_results_files_with_a_bad_field(key: str, value: Any, drop: bool) -> None:
    data = json.loads(result_text())
    if drop:
        del data[key]
    else:
        data[key] = value
    check_loaded(json.dumps(data))


@PROPERTY
@given(value=JSON)
def test_results_files_of_random_json(value: Any) -> None:
    check_loaded(json.dumps(value))
