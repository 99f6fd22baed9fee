"""Meta-World v3 families: ``ML1-<task>-v0``, ``ML10-v0`` and ``ML45-v0`` (Yu et al., 2019).

A task is numbers, not Meta-World's pickled ``Task`` payload:

* ``env_index``: the index of the env class in the family's class list, which is Meta-World's
  train classes followed by its test classes (``family.env_names``; one class for ML1);
* ``rand_vec``: the object and goal positions Meta-World draws at reset (its ``rand_vec``), padded
  with zeros to 6 numbers (classes with a 3-number ``rand_vec`` use the first 3).

``rand_vec`` is drawn uniformly from the class's ``_random_reset_space``, as Meta-World does, and
redrawn while it fails the class's own object-goal separation check (see
:mod:`metarl.envs.meta_world_data`); draws use only the family's :class:`numpy.random.Generator`,
never Meta-World's global ``np.random``. Splits follow Meta-World's train/test structure:

* ``train``: goals on Meta-World's *train* classes, round-robin over the classes (task ``k`` uses
  class ``k % n_train``), 50 per class by default, as Meta-World's benchmarks have;
* ``test``: goals on Meta-World's *test* classes (ML10/ML45: the 5 held-out classes; ML1: fresh goals
  of the same class, as ``metaworld.ML1``'s test tasks are), 50 per class by default;
* ``validation``: extra goals on the *train* classes, from their own seeded stream (so it never
  touches the held-out classes).

``family.sample(n, rng)`` draws from the training distribution (a uniformly chosen train class).

The env is Meta-World's, partially observable (39-dim observation, goal hidden), with reward
function ``"v2"`` (Meta-World v3's default). ``info["success"]`` is Meta-World's; episodes do not
end on success (``metaworld``'s default for training and evaluation); horizon 500. An env switches
class when a task of another class is set; it keeps one Meta-World env per class it has used.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from metarl.envs.meta_world_data import (
    ALL_ENV_NAMES,
    MIN_SEPARATION,
    ML10_TEST,
    ML10_TRAIN,
    ML45_TEST,
    ML45_TRAIN,
    RESET_SPACES,
)
from metarl.family import SPLITS, TaskEnv, TaskFamily
from metarl.task import Param, Task

__all__ = [
    "ML1Family",
    "ML10Family",
    "ML45Family",
    "MetaWorldEnv",
    "MetaWorldFamily",
    "require_metaworld",
]

RAND_VEC_SIZE = 6
_MAX_DRAWS = 10_000


def require_metaworld() -> Any:
    """Import and return ``metaworld.env_dict``, or raise an ``ImportError`` saying how to install it."""
    try:
        import metaworld.env_dict as env_dict
        import metaworld.types  # noqa: F401  (used by MetaWorldEnv)
    except ImportError as exc:
        raise ImportError(
            "the Meta-World families need the metaworld package (v3.1.1): pip install 'metarl[metaworld]'"
        ) from exc
    return env_dict


@dataclass(frozen=True)
class _ClassIndex:
    """Uniform over the first ``n_train`` classes (the training distribution)."""

    n_train: int

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(self.n_train, size=shape).astype(np.float64)

    def describe(self) -> str:
        return f"uniform over the {self.n_train} train classes"


@dataclass(frozen=True)
class _RandVec:
    """Uniform on the class's reset box; described only (families draw it with the class)."""

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError("rand_vec depends on env_index; MetaWorldFamily draws both together")

    def describe(self) -> str:
        return "U(class reset space), zero-padded to 6"


def _separation_ok(name: str, vec: np.ndarray) -> bool:
    rule = MIN_SEPARATION.get(name)
    if rule is None:
        return True
    threshold, ref = rule
    other = vec[3:5] if ref is None else np.asarray(ref)
    return bool(np.linalg.norm(vec[:2] - other) >= threshold)


def _draw_rand_vec(name: str, rng: np.random.Generator) -> np.ndarray:
    low, high = (np.asarray(b, dtype=np.float64) for b in RESET_SPACES[name])
    for _ in range(_MAX_DRAWS):
        vec = rng.uniform(low, high)
        if _separation_ok(name, vec):
            return np.concatenate([vec, np.zeros(RAND_VEC_SIZE - vec.size)])
    raise RuntimeError(f"could not draw a rand_vec for {name} passing its separation check")


class MetaWorldFamily(TaskFamily):
    """A Meta-World benchmark as a task family; subclasses set :attr:`train_names`, :attr:`test_names`.

    Args:
        reward_function_version: Meta-World's reward version, ``"v2"`` (default) or ``"v1"``.
        split_sizes, split_seed, max_episode_steps: see :class:`~metarl.family.TaskFamily`.
    """

    version = 0
    has_success = True
    default_max_episode_steps = 500
    train_names: ClassVar[tuple[str, ...]] = ()
    test_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        reward_function_version: str = "v2",
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
    ) -> None:
        require_metaworld()
        if reward_function_version not in ("v1", "v2"):
            raise ValueError(f"reward_function_version must be 'v1' or 'v2', got {reward_function_version!r}")
        super().__init__(split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps)
        self.reward_function_version = reward_function_version
        self._set_classes(*self._classes())

    def _classes(self) -> tuple[Sequence[str], Sequence[str]]:
        """Meta-World's train and test class names."""
        return self.train_names, self.test_names

    def _set_classes(self, train: Sequence[str], test: Sequence[str]) -> None:
        self.train_env_names = tuple(train)
        self.test_env_names = tuple(test)
        #: The class list ``env_index`` points into: train classes, then test classes.
        self.env_names = self.train_env_names + tuple(n for n in test if n not in train)
        lows = [v for n in self.env_names for v in RESET_SPACES[n][0]] + [0.0]
        highs = [v for n in self.env_names for v in RESET_SPACES[n][1]] + [0.0]
        self.parameters = (
            Param(
                "env_index",
                _ClassIndex(len(self.train_env_names)),
                low=0,
                high=len(self.env_names) - 1,
                integer=True,
                doc=f"index into the class list {list(self.env_names)}",
            ),
            Param(
                "rand_vec",
                _RandVec(),
                shape=(RAND_VEC_SIZE,),
                low=min(lows),
                high=max(highs),
                doc="Meta-World's rand_vec (object and goal positions), zero-padded to 6",
            ),
        )

    def _task_for(self, index: int, rng: np.random.Generator) -> Task:
        vec = _draw_rand_vec(self.env_names[index], rng)
        return Task.create(self.name, self.version, {"env_index": index, "rand_vec": vec})

    def _sample_task(self, rng: np.random.Generator) -> Task:
        return self._task_for(int(rng.integers(len(self.train_env_names))), rng)

    def _build_splits(self) -> dict[str, tuple[Task, ...]]:
        """Test tasks on the test classes, train and validation tasks on the train classes."""
        test_indices = [self.env_names.index(n) for n in self.test_env_names]
        train_indices = list(range(len(self.train_env_names)))
        taken: set[str] = set()
        splits: dict[str, tuple[Task, ...]] = {}
        for split in SPLITS:
            rng = self._split_rng(split)
            indices = test_indices if split == "test" else train_indices
            tasks: list[Task] = []
            while len(tasks) < self.split_sizes[split]:
                task = self._task_for(indices[len(tasks) % len(indices)], rng)
                if task.task_id not in taken:  # a repeat of a continuous draw: redraw
                    taken.add(task.task_id)
                    tasks.append(task)
            splits[split] = tuple(tasks)
        return splits

    def _validate_params(self, task: Task) -> None:
        index = int(task["env_index"])  # type: ignore[arg-type]
        name = self.env_names[index]
        low, high = (np.asarray(b) for b in RESET_SPACES[name])
        vec = task.array("rand_vec")
        k = low.size
        if np.any(vec[k:] != 0.0):
            raise ValueError(
                f"parameter 'rand_vec': {name} uses {k} numbers; entries {k}.. must be 0, got {vec}"
            )
        out = (vec[:k] < low) | (vec[:k] > high)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"parameter 'rand_vec'[{i}] = {vec[i]:g} is out of range for {name}; allowed range is "
                f"[{low[i]:g}, {high[i]:g}]"
            )
        if not _separation_ok(name, vec[:k]):
            threshold = MIN_SEPARATION[name][0]
            raise ValueError(
                f"parameter 'rand_vec' = {vec[:k]} puts the object within {threshold:g} of the goal; "
                f"{name} requires at least {threshold:g} (Meta-World's reset would loop forever)"
            )

    def _make_base_env(self) -> MetaWorldEnv:
        return MetaWorldEnv(self)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["train_classes"] = list(self.train_env_names)
        out["test_classes"] = list(self.test_env_names)
        return out


class ML1Family(MetaWorldFamily):
    """Meta-World ML1: goals of one env class; test goals are fresh draws of the same class.

    Args:
        task_name: a Meta-World v3 env name, ``"reach"`` or ``"reach-v3"``; the family is
            ``ML1-reach-v0``.
    """

    name = "ML1"
    varies = "goal"
    default_split_sizes = {"train": 50, "validation": 10, "test": 50}

    def __init__(self, task_name: str, **kwargs: Any) -> None:
        env_name = task_name if task_name.endswith("-v3") else f"{task_name}-v3"
        if env_name not in RESET_SPACES:
            raise ValueError(
                f"unknown Meta-World task {task_name!r}; known: {[n.removesuffix('-v3') for n in ALL_ENV_NAMES]}"
            )
        self.task_name = env_name.removesuffix("-v3")
        self.name = f"ML1-{self.task_name}"  # type: ignore[misc]
        self.description = f"Meta-World ML1 {env_name}: object and goal positions vary; success rate."
        self._env_name = env_name
        super().__init__(**kwargs)

    def _classes(self) -> tuple[Sequence[str], Sequence[str]]:
        return (self._env_name,), (self._env_name,)


class ML10Family(MetaWorldFamily):
    """Meta-World ML10: 10 train classes, 5 held-out test classes."""

    name = "ML10"
    varies = "goal, task"
    description = "Meta-World ML10: 10 manipulation classes for training, 5 held-out classes for testing."
    default_split_sizes = {"train": 500, "validation": 50, "test": 250}
    train_names = ML10_TRAIN
    test_names = ML10_TEST


class ML45Family(MetaWorldFamily):
    """Meta-World ML45: 45 train classes, 5 held-out test classes."""

    name = "ML45"
    varies = "goal, task"
    description = "Meta-World ML45: 45 manipulation classes for training, 5 held-out classes for testing."
    default_split_sizes = {"train": 2250, "validation": 90, "test": 250}
    train_names = ML45_TRAIN
    test_names = ML45_TEST


class MetaWorldEnv(TaskEnv, gym.Env):
    """Runs a family's tasks on Meta-World's envs (one per class, built when first needed)."""

    metadata: dict[str, Any] = {"render_modes": []}
    task_family: MetaWorldFamily
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box

    def __init__(self, family: MetaWorldFamily) -> None:
        self.task_family = family
        self._envs: dict[str, Any] = {}
        self._env = self._inner(family.env_names[0])
        space = self._env.observation_space
        self.observation_space = gym.spaces.Box(space.low, space.high, dtype=np.float64)
        act = self._env.action_space
        self.action_space = gym.spaces.Box(act.low, act.high, dtype=np.float32)
        self._env_name = family.env_names[0]

    def _inner(self, name: str) -> Any:
        if name not in self._envs:
            env_dict = require_metaworld()
            env = env_dict.ALL_V3_ENVIRONMENTS[name](
                reward_function_version=self.task_family.reward_function_version
            )
            env.max_path_length = max(self.task_family.max_episode_steps, 1)
            self._envs[name] = env
        return self._envs[name]

    @property
    def env_name(self) -> str:
        """The Meta-World env name of the current task's class."""
        return self._env_name

    def _apply_task(self, task: Task) -> None:
        import metaworld.types

        name = self.task_family.env_names[int(task["env_index"])]  # type: ignore[arg-type]
        env = self._inner(name)
        vec = task.array("rand_vec")[: len(RESET_SPACES[name][0])]
        # Meta-World's public set_task takes its own record (a pickled dict); we build it here from
        # the task's numbers, so nothing opaque is ever stored in a metarl Task.
        data = {"env_cls": type(env), "rand_vec": vec, "partially_observable": True}
        env.set_task(metaworld.types.Task(env_name=name, data=pickle.dumps(data)))
        self._env, self._env_name = env, name

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.np_random, _ = seeding.np_random(seed)
        obs, info = self._env.reset()
        return np.clip(obs, self.observation_space.low, self.observation_space.high), dict(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
