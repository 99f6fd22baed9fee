"""Task families: a parameter space, fixed seeded splits, and the environments that run tasks.

The env contract every family honours:

* ``env.unwrapped.set_task(task)`` validates the task and applies it; ``env.unwrapped.task`` is the
  current task (``None`` before one is set);
* ``env.reset(options={"task": task})`` sets the task and resets in one call;
* ``info["task_id"]`` is present after every ``reset`` and ``step``;
* resetting or stepping before a task is set raises :class:`TaskNotSetError`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from metarl.task import Param, ParameterSpace, Task, check_int

if TYPE_CHECKING:
    from metarl.vector import BatchedTaskVectorEnv

__all__ = ["SPLITS", "TaskEnv", "TaskFamily", "TaskNotSetError", "TaskWrapper"]

#: The names of the fixed splits, in the order they are drawn.
SPLITS: tuple[str, ...] = ("test", "validation", "train")


class TaskNotSetError(RuntimeError):
    """An env was reset or stepped before a task was set."""


class TaskFamily:
    """A distribution over tasks, with fixed seeded splits and an env factory.

    Subclasses set the class attributes below and implement :meth:`_make_base_env` (and, when
    they can, :meth:`make_batched_env`). Families whose parameter space depends on constructor
    arguments (the number of bandit arms, say) build ``self.parameters`` in ``__init__``.

    Args:
        split_sizes: sizes of the ``train``, ``validation`` and ``test`` splits; missing keys keep
            the family's defaults.
        split_seed: the seed the splits are drawn from. Splits are identical on every machine for
            the same family version, seed and sizes; a split's first ``n`` tasks do not depend on
            the other splits' sizes or on its own size.
        max_episode_steps: the horizon; ``None`` keeps the family's default.
    """

    #: Family name without version, e.g. ``"Navigation2D"``.
    name: ClassVar[str]
    #: Bumped whenever tasks, splits or dynamics change meaning.
    version: ClassVar[int] = 0
    #: What varies between tasks: ``"goal"``, ``"reward"``, ``"dynamics"`` or combinations.
    varies: ClassVar[str] = ""
    #: One sentence describing the family; a class attribute, or an instance attribute set in
    #: ``__init__`` (families built from constructor arguments).
    description: str = ""
    #: Default horizon (``TimeLimit``).
    default_max_episode_steps: ClassVar[int] = 100
    default_split_sizes: ClassVar[Mapping[str, int]] = {"train": 100, "validation": 20, "test": 40}
    #: ``False`` for families with a handful of tasks (two running directions) where every split
    #: necessarily holds the same tasks.
    disjoint_splits: ClassVar[bool] = True
    #: ``True`` when ``info["success"]`` is defined (Meta-World).
    has_success: ClassVar[bool] = False
    #: The parameters; a class attribute, or an instance attribute set in ``__init__``.
    parameters: Sequence[Param] = ()

    def __init__(
        self,
        *,
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
    ) -> None:
        sizes = dict(self.default_split_sizes)
        for key, value in dict(split_sizes or {}).items():
            if key not in SPLITS:
                raise ValueError(f"unknown split {key!r} in split_sizes; splits are {list(SPLITS)}")
            sizes[key] = check_int(f"split size for {key!r}", value, minimum=0)
        check_int("split_seed", split_seed, minimum=0)
        horizon = self.default_max_episode_steps if max_episode_steps is None else max_episode_steps
        check_int("max_episode_steps", horizon)
        self.split_sizes: dict[str, int] = sizes
        self.split_seed = int(split_seed)
        self.max_episode_steps = int(horizon)
        self._splits: dict[str, tuple[Task, ...]] = {}

    # ----------------------------------------------------------------------------- identity
    @property
    def id(self) -> str:
        """The registry id, ``"<name>-v<version>"``."""
        return f"{self.name}-v{self.version}"

    @property
    def param_space(self) -> ParameterSpace:
        params = self.parameters
        return params if isinstance(params, ParameterSpace) else ParameterSpace(tuple(params))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, splits={self.split_sizes})"

    # ----------------------------------------------------------------------------- tasks
    def task(self, **params: Any) -> Task:
        """Build and validate a task from keyword parameters."""
        return self.validate(Task.create(self.name, self.version, params))

    def validate(self, task: Task) -> Task:
        """Return ``task`` if it belongs to this family and its parameters are allowed.

        Raises:
            TypeError: ``task`` is not a :class:`Task`.
            ValueError: wrong family or version, or a missing, unknown or out-of-range parameter.
        """
        if not isinstance(task, Task):
            raise TypeError(f"expected a metarl.Task, got {type(task).__name__}: {task!r}")
        if task.family != self.name or task.version != self.version:
            raise ValueError(f"task {task.task_id} belongs to {task.family_id}, not to {self.id}")
        self.param_space.validate(dict(task.params))
        self._validate_params(task)
        return task

    def _validate_params(self, task: Task) -> None:
        """Family-specific checks beyond bounds and shapes; raise ``ValueError``."""

    def sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draw ``n`` tasks from the family's distribution using only ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}"
            )
        return [self._sample_task(rng) for _ in range(check_int("n", n, minimum=0))]

    def _sample_task(self, rng: np.random.Generator) -> Task:
        return Task.create(self.name, self.version, self.param_space.sample(rng))

    # ----------------------------------------------------------------------------- splits
    def split(self, name: str) -> tuple[Task, ...]:
        """The fixed tasks of split ``name`` (``"train"``, ``"validation"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {list(SPLITS)}")
        if not self._splits:
            self._splits = self._build_splits()
        return self._splits[name]

    @property
    def train(self) -> tuple[Task, ...]:
        return self.split("train")

    @property
    def validation(self) -> tuple[Task, ...]:
        return self.split("validation")

    @property
    def test(self) -> tuple[Task, ...]:
        return self.split("test")

    def _split_rng(self, split: str) -> np.random.Generator:
        key = int.from_bytes(hashlib.sha256(f"{self.id}/{split}".encode()).digest()[:8], "little")
        return np.random.default_rng(np.random.SeedSequence(self.split_seed, spawn_key=(key,)))

    def _build_splits(self) -> dict[str, tuple[Task, ...]]:
        """Draw the splits: test first, then validation, then train, each from its own stream.

        With ``disjoint_splits`` a task already in an earlier split is redrawn, so the held-out
        test tasks never change when the training split grows.
        """
        taken: set[str] = set()
        splits: dict[str, tuple[Task, ...]] = {}
        for split in SPLITS:
            rng = self._split_rng(split)
            tasks: list[Task] = []
            attempts = 0
            while len(tasks) < self.split_sizes[split]:
                task = self._sample_task(rng)
                attempts += 1
                if self.disjoint_splits and task.task_id in taken:
                    if attempts > 100 * (self.split_sizes[split] + 10):
                        raise ValueError(
                            f"{self.id}: cannot draw {self.split_sizes[split]} {split} tasks "
                            f"disjoint from the other splits; the task space is too small"
                        )
                    continue
                taken.add(task.task_id)
                tasks.append(task)
            splits[split] = tuple(tasks)
        return splits

    # ----------------------------------------------------------------------------- envs
    def _make_base_env(self) -> gym.Env:
        """Return a fresh unwrapped env (a :class:`TaskEnv`) with no task set."""
        raise NotImplementedError(f"{type(self).__name__} must implement _make_base_env()")

    def make_env(self, task: Task | None = None) -> gym.Env:
        """A Gymnasium env for this family: the base env in a :class:`TaskWrapper`, which also
        truncates episodes at the horizon (as Gymnasium's ``TimeLimit``) and enforces
        reset-before-step (as ``OrderEnforcing``), in one layer.

        If ``task`` is given it is set now; otherwise pass it with ``set_task`` or
        ``reset(options={"task": task})`` before the first step.
        """
        base = self._make_base_env()
        if not isinstance(base, TaskEnv):
            raise TypeError(f"{type(self).__name__}._make_base_env() must return a metarl.TaskEnv")
        env = TaskWrapper(base, max_episode_steps=self.max_episode_steps)
        if task is not None:
            base.set_task(task)
        return env

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> BatchedTaskVectorEnv | None:
        """A native batched vector env running ``tasks`` (``envs_per_task`` each), or ``None``.

        Families that return one must match :meth:`make_env` step for step; the contract tests
        check it.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: id, what varies, parameters, split sizes, horizon."""
        return {
            "id": self.id,
            "varies": self.varies,
            "parameters": self.param_space.describe(),
            "split_sizes": dict(self.split_sizes),
            "max_episode_steps": self.max_episode_steps,
            "description": self.description,
            "batched": type(self).make_batched_env is not TaskFamily.make_batched_env,
        }


class TaskEnv:
    """Mixin for the unwrapped env of a family: holds the current task.

    Put it first among the bases (``class MyEnv(TaskEnv, gym.Env)``), give the env a
    ``task_family`` attribute and implement :meth:`_apply_task`.
    """

    task_family: TaskFamily
    _task: Task | None = None

    @property
    def task(self) -> Task | None:
        """The current task, or ``None`` before one is set."""
        return self._task

    def set_task(self, task: Task) -> None:
        """Validate ``task`` against the family and apply it (takes effect immediately)."""
        task = self.task_family.validate(task)
        self._apply_task(task)
        self._task = task

    def _apply_task(self, task: Task) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _apply_task(task)")


def _all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()``, several times faster on the small arrays actions are.

    A finite sum of the entries means every entry is finite (NaN and inf propagate into it); Python
    float addition overflows to inf silently, and only then does the elementwise test decide.
    """
    if arr.dtype.kind == "f" and arr.size <= 32:
        return math.isfinite(sum(arr.ravel().tolist())) or bool(np.isfinite(arr).all())
    return b"\x00" not in np.isfinite(arr).tobytes()


# Module-level names for TaskWrapper.step's fast path (a global load, not an attribute lookup).
_NDARRAY = np.ndarray
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_isfinite = math.isfinite


def _shorten(value: Any) -> str:
    """``repr(value)`` on one line, cut at 200 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 200 else text[:200] + "..."


class TaskWrapper(gym.Wrapper):
    """The one wrapper of every family env: task handling, ``info["task_id"]``, input checks,
    reset-before-step (``ResetNeeded``, as Gymnasium's ``OrderEnforcing``) and, given
    ``max_episode_steps``, the horizon (``truncated`` once that many steps were taken since the
    reset, and ``spec.max_episode_steps``, as Gymnasium's ``TimeLimit``): one layer, so a step
    pays for one wrapper call, not three.

    Box actions are checked on every step, each failure a ``TypeError`` or ``ValueError`` that
    shows the action: numbers (dtype bool, int, uint or float), the space's shape, every entry
    finite. A float32 or float64 ndarray of a 1-D space's shape takes a fast path (identity and
    shape comparisons and one sum of its entries); anything else, and any action the fast path
    cannot clear, goes through the full checks.
    """

    def __init__(self, env: gym.Env, max_episode_steps: int | None = None) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, TaskEnv):
            raise TypeError("TaskWrapper wraps envs whose unwrapped env is a metarl.TaskEnv")
        if max_episode_steps is not None:
            check_int("max_episode_steps", max_episode_steps)
        #: The horizon, or ``None`` for none here (a ``TimeLimit`` inside, say).
        self._max_episode_steps = max_episode_steps
        self._elapsed_steps = 0
        self._task_env: TaskEnv = env.unwrapped
        space = env.action_space
        self._box_shape = space.shape if isinstance(space, gym.spaces.Box) else None
        # The fast path's shape: 1-D boxes only, whose ``tolist()`` is a flat list of numbers.
        self._fast_shape = (
            self._box_shape if self._box_shape is not None and len(self._box_shape) == 1 else None
        )
        self._needs_reset = True

    def _require_task(self, what: str) -> Task:
        task = self._task_env.task
        if task is None:
            raise TaskNotSetError(
                f"{what} before a task was set: call env.unwrapped.set_task(task) or "
                f"env.reset(options={{'task': task}}) first (tasks come from family.train, "
                f"family.test or family.sample)"
            )
        return task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if options and "task" in options:
            options = dict(options)
            self._task_env.set_task(options.pop("task"))
        task = self._require_task("reset()")
        self._elapsed_steps = 0
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._needs_reset = False
        info["task_id"] = task.task_id
        return obs, info

    def _check_action(self, action: Any) -> None:
        """The full checks of a Box action; raise ``TypeError`` or ``ValueError`` naming it."""
        arr = action if type(action) is np.ndarray else np.asarray(action)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"action must be numbers, got dtype {arr.dtype}: {_shorten(action)}")
        if arr.shape != self._box_shape:
            raise ValueError(f"action has shape {arr.shape}, expected {self._box_shape}: {_shorten(action)}")
        if not _all_finite(arr):
            raise ValueError(f"action must be finite, got {_shorten(action)}")

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        task = self._task_env._task
        if task is None:
            task = self._require_task("step()")
        if self._needs_reset:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        if self._box_shape is not None and not (
            # The fast path: exactly a float32/float64 ndarray of the 1-D shape, whose entries have
            # a finite sum. NaN and inf propagate into a sum, so a finite sum proves every entry
            # finite; a non-finite one (or an overflow of finite entries) goes to the full checks.
            type(action) is _NDARRAY
            and ((dtype := action.dtype) is _FLOAT32 or dtype is _FLOAT64)
            and action.shape == self._fast_shape
            and _isfinite(sum(action.tolist()))
        ):
            self._check_action(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._elapsed_steps += 1
        if self._max_episode_steps is not None and self._elapsed_steps >= self._max_episode_steps:
            truncated = True
        info["task_id"] = task.task_id
        return obs, reward, terminated, truncated, info

    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:  # type: ignore[override]
        """The env's spec with this wrapper added and, given a horizon, ``max_episode_steps`` set
        to it (as ``TimeLimit`` sets it)."""
        spec = super().spec
        if spec is not None and self._max_episode_steps is not None:
            if spec.max_episode_steps != self._max_episode_steps:
                spec.max_episode_steps = self._max_episode_steps  # a copy, cached by gym.Wrapper
        return spec
