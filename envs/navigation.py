"""Navigation2D: a point moves in the plane toward a goal it cannot see (Finn et al., 2017).

Observation: the point's position ``(x, y)`` (float32). Action: a displacement, clipped to
``[-0.1, 0.1]`` per coordinate. Reward: minus the L2 distance to the goal after the move. The
episode terminates within 0.01 of the goal; horizon 100. Tasks vary the goal, ``U[-0.5, 0.5]^2``;
every episode starts at the origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.family import TaskEnv, TaskFamily
from metarl.task import Param, Task, Uniform
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["Navigation2DEnv", "Navigation2DFamily", "Navigation2DVectorEnv"]

MAX_STEP = 0.1
GOAL_RADIUS = 0.01


def _distance(delta: np.ndarray) -> np.ndarray:
    """Euclidean length over the last axis (of size 2), one elementwise expression for the single and
    the batched env. ``np.linalg.norm`` goes through a BLAS dot product whose kernel (fused
    multiply-adds or not) depends on the CPU, and so can differ from this in the last bit."""
    return np.sqrt(delta[..., 0] * delta[..., 0] + delta[..., 1] * delta[..., 1])


class Navigation2DFamily(TaskFamily):
    name = "Navigation2D"
    version = 0
    varies = "goal"
    description = "Point robot in the plane; the goal position varies; reward is -distance to it."
    default_max_episode_steps = 100
    parameters = (
        Param("goal", Uniform(-0.5, 0.5), shape=(2,), low=-0.5, high=0.5, doc="goal position (x, y)"),
    )

    def _make_base_env(self) -> Navigation2DEnv:
        return Navigation2DEnv(self)

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> Navigation2DVectorEnv:
        return Navigation2DVectorEnv(self, tasks, envs_per_task)


class Navigation2DEnv(TaskEnv, gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, family: Navigation2DFamily) -> None:
        self.task_family = family
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, shape=(2,), dtype=np.float32)
        self._goal = np.zeros(2)
        self._pos = np.zeros(2)

    def _apply_task(self, task: Task) -> None:
        self._goal = task.array("goal")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        return self._pos.astype(np.float32), {"goal": self._goal.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._pos = self._pos + np.clip(np.asarray(action, dtype=np.float64), -MAX_STEP, MAX_STEP)
        distance = float(_distance(self._pos - self._goal))
        terminated = distance < GOAL_RADIUS
        return (
            self._pos.astype(np.float32),
            -distance,
            terminated,
            False,
            {"distance": distance, "goal": self._goal.copy()},
        )


class Navigation2DVectorEnv(BatchedTaskVectorEnv):
    """All sub-envs' positions and goals in ``(num_envs, 2)`` arrays."""

    def _apply_tasks(self, tasks: tuple[Task, ...]) -> None:
        self._goals = np.stack([t.array("goal") for t in tasks])
        self._pos = np.zeros((self.num_envs, 2))

    def _reset_envs(self, mask: np.ndarray) -> np.ndarray:
        self._pos[mask] = 0.0
        return self._pos[mask].astype(np.float32)

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._pos = self._pos + np.clip(actions.astype(np.float64), -MAX_STEP, MAX_STEP)
        distance = _distance(self._pos - self._goals)
        return self._pos.astype(np.float32), -distance, distance < GOAL_RADIUS, {"distance": distance}
