"""Multi-task vector envs: every sub-env runs its own task.

:func:`make_vec` returns a Gymnasium :class:`~gymnasium.vector.VectorEnv` whose sub-env ``i`` runs
``tasks[i // envs_per_task]``. It uses the family's native batched implementation (all sub-envs'
state in arrays) when the family has one, and Gymnasium's ``SyncVectorEnv`` of single envs
otherwise.

Autoreset mode: always ``AutoresetMode.SAME_STEP`` (asserted). When a sub-env's episode ends, the
observation returned by ``step`` is already the first observation of its next episode; the last
observation of the finished episode is in ``infos["final_obs"][i]`` (mask ``infos["_final_obs"]``)
and its step info in ``infos["final_info"]``. There is no dead step between episodes, which
multi-episode trials (RL²) rely on.

Tasks can be reassigned in place with ``set_tasks`` between batches; call ``reset`` afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl.family import TaskEnv, TaskFamily, TaskNotSetError
from metarl.task import Task, check_int

__all__ = [
    "AUTORESET_MODE",
    "BatchedTaskVectorEnv",
    "SyncTaskVectorEnv",
    "TaskVectorEnv",
    "make_vec",
    "step_info",
]

AUTORESET_MODE = AutoresetMode.SAME_STEP


def _is_seed(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)


def _seeds(seed: int | Sequence[int] | None, n: int) -> list[int | None]:
    """One seed per sub-env: ``seed + i``, or the given sequence; ``ValueError`` for bad seeds."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and _is_seed(seed):
        return [int(seed) + i for i in range(n)]
    if isinstance(seed, (str, bytes)) or not isinstance(seed, Sequence | np.ndarray):
        raise ValueError(f"seed must be a non-negative int, one per sub-env, or None; got {seed!r}")
    seeds: list[int | None] = list(seed)
    if len(seeds) != n or not all(s is None or _is_seed(s) for s in seeds):
        raise ValueError(f"need {n} non-negative int seeds (or None), one per sub-env; got {seed!r}")
    return seeds


class TaskVectorEnv:
    """What both multi-task vector env implementations add to ``VectorEnv``."""

    family: TaskFamily
    envs_per_task: int
    _tasks: tuple[Task, ...]

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The distinct tasks, in order; sub-env ``i`` runs ``tasks[i // envs_per_task]``."""
        return self._tasks

    @property
    def subenv_tasks(self) -> tuple[Task, ...]:
        return tuple(t for t in self._tasks for _ in range(self.envs_per_task))

    @property
    def task_index(self) -> np.ndarray:
        """For each sub-env, the index of its task in :attr:`tasks`."""
        return np.repeat(np.arange(len(self._tasks)), self.envs_per_task)

    def _check_tasks(self, tasks: Sequence[Task]) -> tuple[Task, ...]:
        tasks = tuple(tasks)
        if not tasks:
            raise ValueError("a multi-task vector env needs at least one task")
        return tuple(self.family.validate(t) for t in tasks)


class BatchedTaskVectorEnv(TaskVectorEnv, VectorEnv):
    """Base class of native batched implementations.

    Subclasses keep all sub-envs' state in arrays and implement :meth:`_apply_tasks`,
    :meth:`_reset_envs` and :meth:`_step_envs`. This class handles seeding (one generator per
    sub-env, seeded exactly as the single env's ``np_random``), the time limit, same-step autoreset
    and input checks, so a batched env can match the single env step for step.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AUTORESET_MODE}

    def __init__(self, family: TaskFamily, tasks: Sequence[Task], envs_per_task: int = 1) -> None:
        self.family = family
        self.envs_per_task = int(envs_per_task)
        self._tasks = self._check_tasks(tasks)
        self.num_envs = len(self._tasks) * self.envs_per_task
        probe = family.make_env()
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        probe.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.max_episode_steps = family.max_episode_steps
        self.np_randoms: list[np.random.Generator | None] = [None] * self.num_envs
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = True
        self._apply_tasks(self.subenv_tasks)

    # -- to implement -------------------------------------------------------------------------
    def _apply_tasks(self, tasks: tuple[Task, ...]) -> None:
        """Store per-sub-env task parameters in arrays (one entry per sub-env)."""
        raise NotImplementedError

    def _reset_envs(self, mask: np.ndarray) -> np.ndarray:
        """Reset the sub-envs in ``mask`` drawing from ``self.np_randoms[i]`` exactly as the single
        env's ``reset`` draws from its ``np_random``; return their first observations."""
        raise NotImplementedError

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every sub-env; return ``(obs, rewards, terminations, infos)``."""
        raise NotImplementedError

    # -- VectorEnv API ------------------------------------------------------------------------
    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Reassign tasks in place (same count); call ``reset`` before the next ``step``."""
        tasks = self._check_tasks(tasks)
        if len(tasks) != len(self._tasks):
            raise ValueError(f"set_tasks needs {len(self._tasks)} tasks, got {len(tasks)}")
        self._tasks = tasks
        self._apply_tasks(self.subenv_tasks)
        self._needs_reset = True

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(f"batched vector envs take no reset options, got {sorted(options)}")
        for i, s in enumerate(_seeds(seed, self.num_envs)):
            if s is not None or self.np_randoms[i] is None:
                self.np_randoms[i], _ = seeding.np_random(s)
        self._elapsed[:] = 0
        self._needs_reset = False
        obs = self._reset_envs(np.ones(self.num_envs, dtype=bool))
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._needs_reset:
            raise TaskNotSetError("call reset() before step() (after construction or set_tasks)")
        actions = np.asarray(actions)
        if actions.dtype.kind not in "biuf":
            raise TypeError(f"actions must be numbers, got an array of dtype {actions.dtype}")
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions have shape {actions.shape}, expected {self.action_space.shape}")
        if actions.dtype.kind == "f" and not np.isfinite(actions).all():
            bad = np.flatnonzero(~np.isfinite(actions).reshape(self.num_envs, -1).all(axis=1))
            raise ValueError(f"actions must be finite; sub-envs {bad.tolist()} got NaN or inf")
        obs, rewards, terminations, infos = self._step_envs(actions)
        self._elapsed += 1
        truncations = self._elapsed >= self.max_episode_steps
        done = terminations | truncations
        if done.any():
            infos["final_obs"] = obs.copy()
            infos["_final_obs"] = done.copy()
            obs[done] = self._reset_envs(done)
            self._elapsed[done] = 0
        return obs, rewards, terminations, truncations, infos

    def close_extras(self, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family.id}, tasks={len(self._tasks)}, num_envs={self.num_envs})"


class SyncTaskVectorEnv(TaskVectorEnv, SyncVectorEnv):
    """Gymnasium's ``SyncVectorEnv`` of single family envs, one task per sub-env."""

    def __init__(self, family: TaskFamily, tasks: Sequence[Task], envs_per_task: int = 1) -> None:
        self.family = family
        self.envs_per_task = int(envs_per_task)
        self._tasks = self._check_tasks(tasks)
        super().__init__(
            [partial(family.make_env, t) for t in self.subenv_tasks], autoreset_mode=AUTORESET_MODE
        )

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Reassign tasks in place (same count); call ``reset`` before the next ``step``."""
        tasks = self._check_tasks(tasks)
        if len(tasks) != len(self._tasks):
            raise ValueError(f"set_tasks needs {len(self._tasks)} tasks, got {len(tasks)}")
        self._tasks = tasks
        for env, task in zip(self.envs, self.subenv_tasks, strict=True):
            task_env = env.unwrapped
            assert isinstance(task_env, TaskEnv), "family envs are TaskEnvs (TaskFamily.make_env checks)"
            task_env.set_task(task)


def step_info(infos: dict[str, Any], key: str, done: np.ndarray, fill: Any) -> np.ndarray | None:
    """``info[key]`` of the last step for every sub-env of a metarl vector env; ``None`` when no
    sub-env reported ``key``.

    Gymnasium's ``SyncVectorEnv`` (same-step autoreset) files the step info of a sub-env whose
    episode just ended under ``infos["final_info"]`` and puts its reset info at the top level; native
    batched envs report every sub-env's step info at the top level. Both are read here, each with
    its ``"_" + key`` mask. Sub-envs that did not report ``key`` get ``fill``.
    """
    done = np.asarray(done, dtype=bool)
    n = done.shape[0]
    out: np.ndarray | None = None
    for source, where in ((infos, None), (infos.get("final_info"), done)):
        if not (isinstance(source, dict) and key in source):
            continue
        values = np.asarray(source[key])
        mask = np.asarray(source.get("_" + key, np.ones(n, dtype=bool)), dtype=bool)
        if where is not None:
            mask = mask & where
        if out is None:
            out = np.full(n, fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
        out[mask] = values[mask]
    return out


def make_vec(
    family: TaskFamily | str,
    tasks: Sequence[Task],
    envs_per_task: int = 1,
    *,
    backend: str = "auto",
) -> BatchedTaskVectorEnv | SyncTaskVectorEnv:
    """A vector env in which sub-env ``i`` runs ``tasks[i // envs_per_task]``.

    Args:
        family: a family instance or a registered id.
        tasks: the distinct tasks.
        envs_per_task: sub-envs per task.
        backend: ``"auto"`` (native batched if the family has it), ``"native"`` or ``"gymnasium"``.
    """
    from metarl.registry import make_family

    if isinstance(family, str):
        family = make_family(family)
    if not isinstance(family, TaskFamily):
        raise TypeError(f"family must be a metarl.TaskFamily or a registered id, got {family!r}")
    check_int("envs_per_task", envs_per_task)
    if backend not in ("auto", "native", "gymnasium"):
        raise ValueError(f"backend must be 'auto', 'native' or 'gymnasium', got {backend!r}")
    vec: BatchedTaskVectorEnv | SyncTaskVectorEnv | None = None
    if backend in ("auto", "native"):
        vec = family.make_batched_env(tasks, envs_per_task)
        if vec is None and backend == "native":
            raise ValueError(f"{family.id} has no native batched implementation; use backend='gymnasium'")
    if vec is None:
        vec = SyncTaskVectorEnv(family, tasks, envs_per_task)
    assert vec.metadata["autoreset_mode"] == AUTORESET_MODE, "metarl vector envs autoreset on the same step"
    return vec
