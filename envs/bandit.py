"""BernoulliBandit: k arms with unknown success probabilities (Duan et al., 2016, RL²).

A task is a vector of arm means ``p ~ U[0, 1]^k``. Pulling arm ``a`` pays ``1`` with probability
``p[a]`` and ``0`` otherwise. Following RL², every pull is an episode of one step that terminates;
a *trial* is ``n_pulls`` consecutive episodes on the same task (``family.n_pulls``, default 100;
the paper uses 10, 100 and 500 with 5, 10 and 50 arms). A meta-learner must carry what it learned
from one pull to the next (a recurrent hidden state, or a classical agent's statistics).

Observation: always ``[0.0]``, in a ``Box(-1, 1, shape=(1,))``; it carries no information (the
reward is the signal) and exists because Gymnasium envs need one. The declared bounds are wider
than the constant so that code normalising by ``high - low`` does not divide by zero.

Step info: ``"expected_reward"``, the pulled arm's mean ``p[a]`` (what the pull pays on average).
A learner must not act on it (it is the task); RL² can train on it in place of the sampled reward
(``RL2Config.reward_signal``).

Randomness: ``reset`` draws the episode's single uniform ``u`` from ``np_random``; the pull pays
``1.0`` iff ``u < p[a]``. The batched env draws ``u`` from ``np_randoms[i]`` at each sub-env's
reset in the same way and compares in one vectorised step, so both match bit for bit for the
same tasks, seeds and actions.

The horizon (``TimeLimit``) is 2 and is never reached: every episode *terminates* after its
single pull. (A horizon of 1 would flag that step as truncated as well as terminated.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.family import TaskEnv, TaskFamily
from metarl.task import Param, Task, Uniform, check_int
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["BernoulliBanditEnv", "BernoulliBanditFamily", "BernoulliBanditVectorEnv"]


def _check_discrete_actions(actions: np.ndarray, n: int, what: str) -> np.ndarray:
    """Return ``actions`` as int64 or raise ``ValueError`` naming the offending value."""
    arr = np.asarray(actions)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.rint(arr))):
        raise ValueError(f"{what} must be integers in [0, {n - 1}], got {actions!r}")
    ints = arr.astype(np.int64)
    bad = (ints < 0) | (ints >= n)
    if np.any(bad):
        raise ValueError(f"{what} must be in [0, {n - 1}], got {ints[bad].ravel()[0]}")
    return ints


class BernoulliBanditFamily(TaskFamily):
    """Bernoulli multi-armed bandits with uniform arm means (RL², Duan et al. 2016).

    Args:
        n_arms: the number of arms ``k`` (default 5).
        n_pulls: the trial length, in pulls (= one-step episodes) per task (default 100).
        split_sizes, split_seed, max_episode_steps: see :class:`~metarl.family.TaskFamily`.

    Attributes:
        n_arms: the number of arms.
        n_pulls: pulls per trial; a learner is evaluated on the total reward of ``n_pulls``
            consecutive episodes of one task.
    """

    name = "BernoulliBandit"
    version = 0
    varies = "reward"
    description = "k-armed Bernoulli bandit; arm means ~ U[0, 1]; one pull per episode, n pulls per trial."
    default_max_episode_steps = 2
    default_split_sizes = {"train": 1000, "validation": 1000, "test": 1000}

    def __init__(
        self,
        *,
        n_arms: int = 5,
        n_pulls: int = 100,
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
    ) -> None:
        super().__init__(split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps)
        self.n_arms = check_int("n_arms", n_arms)
        self.n_pulls = check_int("n_pulls", n_pulls)
        self.parameters = (
            Param(
                "arm_means",
                Uniform(0.0, 1.0),
                shape=(self.n_arms,),
                low=0.0,
                high=1.0,
                doc="success probability of each arm",
            ),
        )

    @property
    def episodes_per_trial(self) -> int:
        """Episodes per trial (equal to :attr:`n_pulls`)."""
        return self.n_pulls

    def _make_base_env(self) -> BernoulliBanditEnv:
        return BernoulliBanditEnv(self)

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> BernoulliBanditVectorEnv:
        return BernoulliBanditVectorEnv(self, tasks, envs_per_task)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_arms": self.n_arms, "n_pulls": self.n_pulls}


class BernoulliBanditEnv(TaskEnv, gym.Env):
    """One Bernoulli bandit; each episode is a single pull."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, family: BernoulliBanditFamily) -> None:
        self.task_family = family
        self.n_arms = family.n_arms
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.n_arms)
        self._means = np.zeros(self.n_arms)
        self._u: float | None = None

    def _apply_task(self, task: Task) -> None:
        self._means = task.array("arm_means")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._u = float(self.np_random.random())
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arm = int(_check_discrete_actions(np.asarray(action), self.n_arms, "action"))
        if self._u is None:  # stepped again after the episode's pull without a reset
            self._u = float(self.np_random.random())
        reward = 1.0 if self._u < self._means[arm] else 0.0
        self._u = None
        return (
            np.zeros(1, dtype=np.float32),
            reward,
            True,
            False,
            {"expected_reward": float(self._means[arm])},
        )


class BernoulliBanditVectorEnv(BatchedTaskVectorEnv):
    """All sub-envs' arm means in a ``(num_envs, k)`` array; one uniform per sub-env episode."""

    def _apply_tasks(self, tasks: tuple[Task, ...]) -> None:
        self._means = np.stack([t.array("arm_means") for t in tasks])
        self._u = np.zeros(self.num_envs)

    def _reset_envs(self, mask: np.ndarray) -> np.ndarray:
        for i in np.flatnonzero(mask):
            rng = self.np_randoms[i]
            assert rng is not None
            self._u[i] = rng.random()
        return np.zeros((int(mask.sum()), 1), dtype=np.float32)

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        arms = _check_discrete_actions(actions, self._means.shape[1], "actions")
        means = self._means[np.arange(self.num_envs), arms]
        rewards = (self._u < means).astype(np.float64)
        obs = np.zeros((self.num_envs, 1), dtype=np.float32)
        info = {"expected_reward": means, "_expected_reward": np.ones(self.num_envs, dtype=bool)}
        return obs, rewards, np.ones(self.num_envs, dtype=bool), info
