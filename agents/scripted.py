"""Learners whose behaviour is known in advance, for testing runners and as reference points.

* :class:`RandomLearner` acts uniformly at random and never adapts.
* :class:`Navigation2DTrilateration` probes three points in its first round, solves for each
  task's goal from the rewards (minus distances) it observed, and from then on walks straight to
  the goal: after one round its return equals the oracle's, exactly.
* :class:`Navigation2DOracle` is told the goal and walks straight to it from the start.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from metarl.evaluation import AdaptationUnit
from metarl.rollout import EpisodeBatch
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv

__all__ = ["Navigation2DOracle", "Navigation2DTrilateration", "RandomLearner", "sample_actions"]

VecEnv = BatchedTaskVectorEnv | SyncTaskVectorEnv


def sample_actions(space: gym.Space[Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform samples of ``space`` (Box or Discrete) from ``rng``."""
    if isinstance(space, gym.spaces.Box):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return (space.start + rng.integers(space.n, size=n)).astype(np.int64)
    raise TypeError(f"sample_actions supports Box and Discrete action spaces, got {space}")


class _RandomPolicy:
    def __init__(self, space: gym.Space[Any], n: int, rng: np.random.Generator) -> None:
        self.space, self.n, self.rng = space, n, rng

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return sample_actions(self.space, self.n, self.rng)


class _RandomAdaptation:
    def __init__(self, vec_env: VecEnv, seed: int) -> None:
        self._policy = _RandomPolicy(
            vec_env.single_action_space, vec_env.num_envs, np.random.default_rng(seed)
        )

    def policy(self) -> _RandomPolicy:
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:
        pass


class RandomLearner:
    """Uniformly random actions; does not adapt (a floor for normalised scores)."""

    name = "random"
    adaptation_unit: AdaptationUnit = "gradient step"

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _RandomAdaptation:
        return _RandomAdaptation(vec_env, seed)


def _walk_to(goals: np.ndarray, observations: np.ndarray) -> np.ndarray:
    return np.clip(goals - observations.astype(np.float64), -0.1, 0.1).astype(np.float32)


#: The probe: three moves visiting (0.1, 0), (0, 0.1), (-0.1, 0), then standing still.
_PROBE = np.array([[0.1, 0.0], [-0.1, 0.1], [-0.1, -0.1]])


class _ProbePolicy:
    def __init__(self, n: int) -> None:
        self.n = n
        self.t = np.zeros(n, dtype=np.int64)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        actions = np.zeros((self.n, 2))
        early = self.t < len(_PROBE)
        actions[early] = _PROBE[self.t[early]]
        return actions.astype(np.float32)

    def observe(
        self, actions: Any, rewards: Any, terminations: np.ndarray, truncations: np.ndarray, active: Any
    ) -> None:
        self.t = np.where(terminations | truncations, 0, self.t + 1)


class _GoalPolicy:
    def __init__(self, goals: np.ndarray) -> None:
        self.goals = goals

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return _walk_to(self.goals, observations)


def trilaterate(points: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The point at ``distances`` from three ``points`` (``(3, 2)``, ``(3,)``)."""
    p, d = np.asarray(points, dtype=np.float64), np.asarray(distances, dtype=np.float64)
    a = 2.0 * (p[1:] - p[0])
    b = d[0] ** 2 - d[1:] ** 2 + (p[1:] ** 2).sum(axis=1) - (p[0] ** 2).sum()
    return np.linalg.solve(a, b)


class _TrilaterationAdaptation:
    def __init__(self, vec_env: VecEnv) -> None:
        if vec_env.family.name != "Navigation2D":
            raise ValueError(f"Navigation2DTrilateration only works on Navigation2D, not {vec_env.family.id}")
        self.n = vec_env.num_envs
        self.task_index = vec_env.task_index
        self.goals: np.ndarray | None = None

    def policy(self) -> _ProbePolicy | _GoalPolicy:
        if self.goals is None:
            return _ProbePolicy(self.n)
        return _GoalPolicy(self.goals[self.task_index])

    def update(self, episodes: EpisodeBatch) -> None:
        if self.goals is not None:
            return
        n_tasks = episodes.num_tasks
        self.goals = np.zeros((n_tasks, 2))
        for k in range(n_tasks):
            ep = episodes.for_task(k).select(slice(0, 1))
            points = np.cumsum(_PROBE, axis=0)
            self.goals[k] = trilaterate(points, -ep.rewards[0, :3])


class Navigation2DTrilateration:
    """Finds each Navigation2D goal from three observed rewards, then walks to it."""

    name = "trilateration"
    adaptation_unit: AdaptationUnit = "gradient step"

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _TrilaterationAdaptation:
        return _TrilaterationAdaptation(vec_env)


class _OracleAdaptation:
    def __init__(self, vec_env: VecEnv) -> None:
        self._policy = _GoalPolicy(np.stack([t.array("goal") for t in vec_env.subenv_tasks]))

    def policy(self) -> _GoalPolicy:
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:
        pass


class Navigation2DOracle:
    """Reads the goal from the task and walks straight to it (an upper reference)."""

    name = "oracle"
    adaptation_unit: AdaptationUnit = "gradient step"

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _OracleAdaptation:
        return _OracleAdaptation(vec_env)
