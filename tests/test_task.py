"""Task and ParameterSpace: immutability, hashing, JSON, stable ids, sampling and validation."""

from __future__ import annotations

import dataclasses
import json
import re

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl import Choice, Dirichlet, LogUniform, Normal, Param, ParameterSpace, Task, Uniform


def test_task_is_frozen_hashable_and_round_trips() -> None:
    task = Task.create("Toy", 0, {"goal": np.array([0.25, -0.125]), "k": 3})
    assert task.params == (("goal", (0.25, -0.125)), ("k", 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.family = "Other"  # type: ignore[misc]
    assert {task: 1}[Task.create("Toy", 0, {"k": 3, "goal": [0.25, -0.125]})] == 1
    back = Task.from_json(task.to_json())
    assert back == task and back.task_id == task.task_id
    assert isinstance(back["k"], int) and back.array("goal").dtype == np.float64
    assert task.family_id == "Toy-v0" and task.task_id.startswith("Toy-v0/")


def test_task_id_is_stable_across_machines() -> None:
    # sha256 of the canonical JSON of (family, version, params): a golden value.
    task = Task.create("Navigation2D", 0, {"goal": [0.1, -0.2]})
    assert task.task_id == "Navigation2D-v0/" + task._make_id().split("/")[1]
    payload = json.dumps(["Navigation2D", 0, [["goal", [0.1, -0.2]]]], separators=(",", ":"))
    import hashlib

    assert task.task_id.split("/")[1] == hashlib.sha256(payload.encode()).hexdigest()[:12]


def test_array_parameters_freeze_like_nested_lists_of_python_numbers() -> None:
    """The ndarray fast path of task freezing gives the same values, types and ids as lists."""
    rng = np.random.default_rng(3)
    arrays: dict[str, np.ndarray] = {
        "p": rng.dirichlet(np.ones(4), size=(3, 2)),  # 3-d float64, like TabularMDP's transitions
        "f32": np.array([0.1, 2.5], dtype=np.float32),
        "i": np.array([[1, -2], [3, 4]], dtype=np.int64),
        "u": np.array([7], dtype=np.uint8),
        "s": np.array(0.5),
    }
    from_arrays = Task.create("Toy", 0, arrays)
    from_lists = Task.create("Toy", 0, {k: v.tolist() for k, v in arrays.items()})
    assert from_arrays.params == from_lists.params and from_arrays.task_id == from_lists.task_id
    i_param = from_arrays["i"]
    assert isinstance(i_param, tuple) and i_param == ((1, -2), (3, 4)) and type(i_param[0][0]) is int
    f32_param = from_arrays["f32"]
    assert isinstance(f32_param, tuple) and type(f32_param[0]) is float and from_arrays["s"] == 0.5
    np.testing.assert_array_equal(from_arrays.array("p"), arrays["p"])
    with pytest.raises(TypeError, match="boolean"):
        Task.create("Toy", 0, {"b": np.array([True, False])})
    # A golden id for a 3-d parameter, so a change of the canonical form is noticed.
    assert Task.create("Toy", 0, {"m": np.arange(8.0).reshape(2, 2, 2)}).task_id == "Toy-v0/947c0b3dd4c7"


def test_navigation_splits_are_golden() -> None:
    """The held-out tasks are identical on every machine for a given family version and seed."""
    fam = metarl.make_family("Navigation2D-v0")
    assert len(fam.test) == 40 and len(fam.train) == 100 and len(fam.validation) == 20
    goal = fam.test[0].array("goal")
    np.testing.assert_allclose(goal, [-0.20152513, 0.49741627], atol=1e-8)
    assert fam.test[0].task_id == "Navigation2D-v0/414cfa87650b"


def test_task_id_is_computed_on_first_read_and_kept() -> None:
    import pickle

    task = Task.create("Toy", 0, {"m": np.arange(8.0).reshape(2, 2, 2)})
    assert "task_id" not in vars(task)  # creating a task does not hash it
    assert task.task_id == "Toy-v0/947c0b3dd4c7" and vars(task)["task_id"] == task.task_id
    back = pickle.loads(pickle.dumps(task))
    assert back == task and hash(back) == hash(task) and back.task_id == task.task_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.task_id = "Toy-v0/000000000000"  # type: ignore[misc]


def test_tampered_task_id_is_detected() -> None:
    task = Task.create("Toy", 0, {"x": 1.0})
    data = task.to_dict()
    data["params"]["x"] = 2.0
    with pytest.raises(ValueError, match="does not match"):
        Task.from_dict(data)
    with pytest.raises(ValueError, match="needs the keys"):
        Task.from_dict({"family": "Toy"})
    with pytest.raises(TypeError, match="numbers"):
        Task.create("Toy", 0, {"x": "fast"})


def test_parameter_space_samples_from_the_generator_only() -> None:
    space = ParameterSpace(
        [
            Param("u", Uniform(-1, 1), shape=(2,), low=-1, high=1),
            Param("c", Choice((-1.0, 1.0))),
            Param("n", Normal(1, 1)),
            Param("m", LogUniform(1.5, -3, 3), shape=(3,), low=1.5**-3, high=1.5**3),
            Param("p", Dirichlet(1.0), shape=(2, 4), low=0, high=1, simplex=True),
        ]
    )
    a = space.sample(np.random.default_rng(4))
    b = space.sample(np.random.default_rng(4))
    for name in space.names:
        np.testing.assert_array_equal(a[name], b[name])
    space.validate(a)
    np.testing.assert_allclose(a["p"].sum(axis=-1), 1.0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"u": [0.0, 0.0]}, r"missing task parameter\(s\) \['c'\]"),
        ({"u": [0.0, 0.0], "c": 1.0, "zz": 1}, r"unknown task parameter\(s\) \['zz'\]"),
        ({"u": [0.0, 1.5], "c": 1.0}, r"'u' = 1.5 is out of range; allowed range is \[-1, 1\]"),
        ({"u": [0.0], "c": 1.0}, r"'u' has shape \(1,\), expected \(2,\)"),
        ({"u": [0.0, float("nan")], "c": 1.0}, "'u' must be finite"),
        ({"u": [0.0, 0.0], "c": 0.5}, "'c' = 0.5 is not one of the allowed values"),
    ],
)
def test_validation_names_the_parameter_and_the_range(params: dict, match: str) -> None:
    space = ParameterSpace(
        [Param("u", Uniform(-1, 1), shape=(2,), low=-1, high=1), Param("c", Choice((-1.0, 1.0)))]
    )
    with pytest.raises(ValueError, match=match):
        space.validate(params)


def test_family_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        metarl.make_family("Navigation2D-v0", split_sizes={"dev": 3})
    with pytest.raises(ValueError, match="non-negative int, got -1"):
        metarl.make_family("Navigation2D-v0", split_sizes={"test": -1})
    with pytest.raises(ValueError, match="max_episode_steps must be a positive int"):
        metarl.make_family("Navigation2D-v0", max_episode_steps=0)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        metarl.make_family("Navigation2D-v0").sample(3, 0)  # type: ignore[arg-type]


def test_split_prefix_property_and_seed() -> None:
    small = metarl.make_family("Navigation2D-v0", split_sizes={"test": 5})
    big = metarl.make_family("Navigation2D-v0", split_sizes={"test": 50})
    assert big.test[:5] == small.test
    other = metarl.make_family("Navigation2D-v0", split_seed=1)
    assert other.test[0] != big.test[0]


class _EchoFamily(metarl.TaskFamily):
    """A family whose env records the actions it is stepped with (TaskWrapper's checks in isolation)."""

    name, varies = "Echo", "goal"
    parameters = (Param("goal", Uniform(-1.0, 1.0), low=-1.0, high=1.0),)

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def _make_base_env(self) -> _EchoEnv:
        return _EchoEnv(self)


class _EchoEnv(metarl.TaskEnv, gym.Env):  # type: ignore[misc]
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

    def __init__(self, family: _EchoFamily) -> None:
        self.task_family = family
        self.action_space = gym.spaces.Box(-1.0, 1.0, family.shape, np.float32)
        self.seen: list[object] = []

    def _apply_task(self, task: Task) -> None:
        pass

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        return np.zeros(1), {}

    def step(self, action: object) -> tuple:
        self.seen.append(action)
        return np.zeros(1), 0.0, False, False, {}


@pytest.mark.parametrize("shape", [(3,), (2, 2)])
def test_task_wrapper_checks_every_action_and_names_it(shape: tuple[int, ...]) -> None:
    """The fast path (float32/float64 ndarrays of a 1-D space) and the full checks accept and
    reject the same actions; errors show the action."""
    fam = _EchoFamily(shape)
    env = fam.make_env(fam.test[0])
    echo = env.unwrapped
    assert isinstance(echo, _EchoEnv)
    env.reset(seed=0)
    n = int(np.prod(shape))
    good = [
        np.zeros(shape, np.float32),
        np.full(shape, 0.5),  # float64
        np.full(shape, 1e308),  # finite entries whose sum overflows
        np.full(shape, 3e38, np.float32),
        np.full(shape, 0.5, np.float16),
        np.ones(shape, np.int64),
        np.ones(shape, bool),
        np.zeros(shape, np.float32)[..., ::-1],  # a non-contiguous view
        np.zeros(shape).tolist(),
    ]
    for action in good:
        env.step(action)
        assert echo.seen[-1] is action  # passed on as given
    for bad in (np.nan, np.inf, -np.inf):
        for dtype in (np.float32, np.float64, np.float16):
            action = np.zeros(shape, dtype)
            action.flat[n - 1] = bad
            with pytest.raises(ValueError, match=rf"action must be finite, got .*{bad}"):
                env.step(action)
    with pytest.raises(ValueError, match=r"action must be finite, got \[.*nan"):
        env.step(np.full(shape, np.nan).tolist())
    wrong_shape = np.zeros((n + 1,), np.float32)
    expected = re.escape(f"action has shape ({n + 1},), expected {shape}: array([0., 0.,")
    with pytest.raises(ValueError, match=expected):
        env.step(wrong_shape)
    with pytest.raises(ValueError, match="action has shape"):
        env.step(np.zeros((1, *shape), np.float32))
    for wrong_dtype in (np.full(shape, "a"), np.zeros(shape, complex), np.zeros(shape, object)):
        with pytest.raises(TypeError, match=rf"action must be numbers, got dtype {wrong_dtype.dtype}: "):
            env.step(wrong_dtype)
    assert len(echo.seen) == len(good)  # no rejected action reached the env
