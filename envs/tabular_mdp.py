"""TabularMDP: random finite MDPs with unknown transitions and rewards (Duan et al., 2016, RL²).

A task is a transition tensor ``P[s, a, :] ~ Dirichlet(1)`` over ``S`` next states and a matrix
of mean rewards ``mu[s, a] ~ N(1, 1)``. Taking action ``a`` in state ``s`` pays
``r ~ N(mu[s, a], 1)`` and moves to ``s' ~ P[s, a, :]``. Every episode starts in state 0 and lasts
10 steps (a ``TimeLimit`` truncation; the MDP itself never terminates). A *trial* is ``n_episodes``
consecutive episodes on the same task (RL² uses 10, 25, 50, 75 and 100). Defaults follow RL²:
``S = 10`` states, ``A = 5`` actions.

Observation: the current state, ``Discrete(S)``. Action: ``Discrete(A)``.

Step info: ``"expected_reward"``, ``mu[s, a]`` of the step (its reward without the noise). A
learner must not act on it (it is the task); RL² can train on it in place of the sampled reward
(``RL2Config.reward_signal``).

Randomness: ``reset`` draws the whole episode's randomness from ``np_random`` at once: ``H``
uniforms (``rng.random(H)``), then ``H`` standard normals (``rng.standard_normal(H)``), where
``H`` is the horizon. Step ``t`` moves to the next state by inverse-CDF sampling,
``s' = #{j : cdf[s, a, j] <= u[t]}`` with ``cdf = cumsum(P, axis=-1)``, and pays
``mu[s, a] + z[t]``. The batched env makes the same draws from ``np_randoms[i]`` at each
sub-env's reset and steps all sub-envs in one vectorised operation, so both match bit for bit for
the same tasks, seeds and actions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.family import TaskEnv, TaskFamily
from metarl.task import Dirichlet, Normal, Param, Task, check_int
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["TabularMDPEnv", "TabularMDPFamily", "TabularMDPVectorEnv", "transition_cdf"]


def _check_actions(actions: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.rint(arr))):
        raise ValueError(f"{what} must be integers in [0, {n - 1}], got {actions!r}")
    ints = arr.astype(np.int64)
    bad = (ints < 0) | (ints >= n)
    if np.any(bad):
        raise ValueError(f"{what} must be in [0, {n - 1}], got {ints[bad].ravel()[0]}")
    return ints


def transition_cdf(transitions: np.ndarray) -> np.ndarray:
    """Cumulative next-state probabilities along the last axis, the last entry set to exactly 1.

    Used by both the single and the batched env, so their inverse-CDF samples agree bit for bit.
    """
    cdf = np.cumsum(np.asarray(transitions, dtype=np.float64), axis=-1)
    cdf[..., -1] = 1.0
    return cdf


class TabularMDPFamily(TaskFamily):
    """Random tabular MDPs (RL², Duan et al. 2016).

    Args:
        n_states: ``S`` (default 10).
        n_actions: ``A`` (default 5).
        n_episodes: the trial length, in episodes per task (default 10).
        split_sizes, split_seed, max_episode_steps: see :class:`~metarl.family.TaskFamily`; the
            default horizon is 10 steps.

    Attributes:
        n_states, n_actions: the MDP's size.
        n_episodes: episodes per trial; a learner is evaluated on the total reward of
            ``n_episodes`` consecutive episodes of one task.
    """

    name = "TabularMDP"
    version = 0
    varies = "dynamics+reward"
    description = (
        "Random MDP: transitions ~ Dirichlet(1), mean rewards ~ N(1, 1), Gaussian reward noise; "
        "episodes of 10 steps from state 0, n episodes per trial."
    )
    default_max_episode_steps = 10
    default_split_sizes = {"train": 1000, "validation": 1000, "test": 1000}

    def __init__(
        self,
        *,
        n_states: int = 10,
        n_actions: int = 5,
        n_episodes: int = 10,
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
    ) -> None:
        super().__init__(split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps)
        self.n_states = check_int("n_states", n_states)
        self.n_actions = check_int("n_actions", n_actions)
        self.n_episodes = check_int("n_episodes", n_episodes)
        S, A = self.n_states, self.n_actions
        self.parameters = (
            Param(
                "transitions",
                Dirichlet(1.0),
                shape=(S, A, S),
                low=0.0,
                high=1.0,
                simplex=True,
                doc="P[s, a, s']: probability of moving from s to s' under action a",
            ),
            Param("reward_means", Normal(1.0, 1.0), shape=(S, A), doc="mu[s, a]: mean reward"),
        )

    @property
    def episodes_per_trial(self) -> int:
        """Episodes per trial (equal to :attr:`n_episodes`)."""
        return self.n_episodes

    def _make_base_env(self) -> TabularMDPEnv:
        return TabularMDPEnv(self)

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> TabularMDPVectorEnv:
        return TabularMDPVectorEnv(self, tasks, envs_per_task)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_states": self.n_states,
            "n_actions": self.n_actions,
            "n_episodes": self.n_episodes,
        }


class TabularMDPEnv(TaskEnv, gym.Env):
    """One tabular MDP; every episode starts in state 0."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, family: TabularMDPFamily) -> None:
        self.task_family = family
        self.n_states, self.n_actions = family.n_states, family.n_actions
        self.observation_space = gym.spaces.Discrete(self.n_states)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self._cdf = np.zeros((self.n_states, self.n_actions, self.n_states))
        self._means = np.zeros((self.n_states, self.n_actions))
        self._state = 0
        self._t = 0
        self._u = np.zeros(0)
        self._z = np.zeros(0)

    def _apply_task(self, task: Task) -> None:
        self._cdf = transition_cdf(task.array("transitions"))
        self._means = task.array("reward_means")

    def _draw_episode(self) -> None:
        horizon = self.task_family.max_episode_steps
        self._u = self.np_random.random(horizon)
        self._z = self.np_random.standard_normal(horizon)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self._draw_episode()
        self._state = 0
        return self._state, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        a = int(_check_actions(action, self.n_actions, "action"))
        if self._t >= len(self._u):  # stepped past the horizon without the TimeLimit
            self._draw_episode()
        s, t = self._state, self._t
        reward = float(self._means[s, a] + self._z[t])
        self._state = min(int(np.count_nonzero(self._cdf[s, a] <= self._u[t])), self.n_states - 1)
        self._t += 1
        return self._state, reward, False, False, {"expected_reward": float(self._means[s, a])}


class TabularMDPVectorEnv(BatchedTaskVectorEnv):
    """All sub-envs' CDFs ``(N, S, A, S)``, mean rewards ``(N, S, A)``, states and the episode's
    pre-drawn uniforms and normals ``(N, H)`` in arrays."""

    def _apply_tasks(self, tasks: tuple[Task, ...]) -> None:
        family = self.family
        assert isinstance(family, TabularMDPFamily)
        self._n_states, self._n_actions = family.n_states, family.n_actions
        self._cdf = np.stack([transition_cdf(t.array("transitions")) for t in tasks])
        self._means = np.stack([t.array("reward_means") for t in tasks])
        self._state = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._u = np.zeros((self.num_envs, self.max_episode_steps))
        self._z = np.zeros((self.num_envs, self.max_episode_steps))

    def _reset_envs(self, mask: np.ndarray) -> np.ndarray:
        horizon = self.max_episode_steps
        for i in np.flatnonzero(mask):
            rng = self.np_randoms[i]
            assert rng is not None
            self._u[i] = rng.random(horizon)
            self._z[i] = rng.standard_normal(horizon)
        self._state[mask] = 0
        self._t[mask] = 0
        return np.zeros(int(mask.sum()), dtype=np.int64)

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = _check_actions(actions, self._n_actions, "actions")
        idx = np.arange(self.num_envs)
        s, t = self._state, self._t
        means = self._means[idx, s, a]
        rewards = means + self._z[idx, t]
        below = self._cdf[idx, s, a] <= self._u[idx, t][:, None]
        self._state = np.minimum(np.count_nonzero(below, axis=1), self._n_states - 1).astype(np.int64)
        self._t = t + 1
        info = {"expected_reward": means, "_expected_reward": np.ones(self.num_envs, dtype=bool)}
        return self._state.copy(), rewards, np.zeros(self.num_envs, dtype=bool), info
