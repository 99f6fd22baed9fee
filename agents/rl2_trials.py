"""RL² trials: many trials of ``N`` episodes each, run side by side over a multi-task vector env.

In RL² (Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
section 2.2) a recurrent policy meets one task for a whole *trial* of ``N`` episodes. At every step
it receives

    x_t = [ obs_t , a_{t-1} , r_{t-1} , d_{t-1} ]

where ``obs_t`` is the observation (one-hot if the space is ``Discrete``), ``a_{t-1}`` the previous
action (one-hot if ``Discrete``; for a ``Box``, the executed action rescaled to ``[-1, 1]``),
``r_{t-1}`` the previous reward and ``d_{t-1}`` a flag that is 1 when the previous step ended an
episode, i.e. when ``obs_t`` is the first observation of the next episode of the same trial. At the
first step of a trial the previous action, reward and done flag are all zero. The hidden state is
carried across the episodes of a trial and reset only between trials.

Optionally (``prev_obs=True``, not in the paper) the row also holds ``obs_{t-1}``, the observation
the previous action was taken in, so the row is a whole transition
``(obs_{t-1}, a_{t-1}, r_{t-1}, obs_t)``: a reward can then be filed under its state-action pair
without the network recalling the previous state from its own memory.

:class:`TrialVecEnv` runs one trial per sub-env of a :func:`metarl.make_vec` vector env. The
vector env autoresets on the same step (``metarl.vector``), so the observation returned on a
done step is already the next episode's first observation and no step is lost between episodes.
Trials of one batch start together; a sub-env whose trial has ended (its ``N``-th episode is over)
keeps stepping, because a vector env steps all sub-envs, but it is marked inactive and its steps
are padding. With fixed-length episodes (bandits, tabular MDPs) every trial ends on the same step
and there is no padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from metarl.family import TaskFamily
from metarl.task import Task, check_int
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec, step_info

__all__ = ["TaskSampler", "TrialInputs", "TrialStep", "TrialVecEnv"]


class TrialInputs:
    """Encodes ``(obs, previous action, previous reward, done flag)`` into one float32 vector.

    Supports ``Box`` and ``Discrete`` observation and action spaces. The layout of an input row is
    ``[obs (obs_dim) | prev action (act_dim) | prev reward (1) | done flag (1)]``, followed with
    ``prev_obs=True`` by ``[prev obs (obs_dim)]``: the encoded observation the previous action was
    taken in (zeros at a trial's first step). Across an episode boundary it is the previous
    episode's last observation, the state the reward in the same row was received in.

    Continuous policies act in a normalised space ``u``: the env receives
    ``centre + half_range * clip(u, -1, 1)`` for bounded ``Box`` actions (``u`` itself where a bound
    is infinite), and the previous-action input is the clipped ``u``, so every family presents
    inputs of the same scale.
    """

    def __init__(
        self, observation_space: gym.Space[Any], action_space: gym.Space[Any], *, prev_obs: bool = False
    ) -> None:
        if not isinstance(prev_obs, bool):
            raise TypeError(f"prev_obs must be a bool, got {prev_obs!r}")
        self.prev_obs = prev_obs
        for what, space in (("observation", observation_space), ("action", action_space)):
            if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
                raise TypeError(f"RL² supports Box and Discrete {what} spaces, got {space}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_discrete = isinstance(observation_space, gym.spaces.Discrete)
        self.act_discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(observation_space, gym.spaces.Discrete):
            self.obs_dim, self._obs_start = int(observation_space.n), int(observation_space.start)
        else:
            self.obs_dim, self._obs_start = int(np.prod(observation_space.shape or ())), 0
        self._act_shape: tuple[int, ...] = ()
        self._act_dtype: Any = np.int64
        if isinstance(action_space, gym.spaces.Discrete):
            self.act_dim, self._act_start = int(action_space.n), int(action_space.start)
        else:
            assert isinstance(action_space, gym.spaces.Box)
            self._act_shape, self._act_dtype = tuple(action_space.shape), action_space.dtype
            self.act_dim, self._act_start = int(np.prod(self._act_shape)), 0
            low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
            bounded = np.isfinite(low) & np.isfinite(high)
            self._bounded = bounded
            self._centre = np.where(bounded, (low + high) / 2.0, 0.0)
            self._half = np.where(bounded, (high - low) / 2.0, 1.0)
        self.input_dim = self.obs_dim + self.act_dim + 2 + (self.obs_dim if prev_obs else 0)

    # -- observations -----------------------------------------------------------------------
    def encode_obs(self, observations: np.ndarray) -> np.ndarray:
        """``(n, *obs_shape)`` observations (or ``(n,)`` ints) -> ``(n, obs_dim)`` float32."""
        obs = np.asarray(observations)
        if self.obs_discrete:
            index = obs.reshape(-1).astype(np.int64) - self._obs_start
            if index.size and (index.min() < 0 or index.max() >= self.obs_dim):
                raise ValueError(f"observations {obs.tolist()} are outside {self.observation_space}")
            return np.eye(self.obs_dim, dtype=np.float32)[index]
        return obs.reshape(obs.shape[0], -1).astype(np.float32)

    # -- actions ----------------------------------------------------------------------------
    def encode_action(self, policy_actions: np.ndarray) -> np.ndarray:
        """The previous-action input ``(n, act_dim)`` for policy actions (indices, or ``u``)."""
        act = np.asarray(policy_actions)
        if self.act_discrete:
            return np.eye(self.act_dim, dtype=np.float32)[act.reshape(-1).astype(np.int64)]
        u = act.reshape(act.shape[0], -1).astype(np.float64)
        return np.where(self._bounded, np.clip(u, -1.0, 1.0), u).astype(np.float32)

    def to_env(self, policy_actions: np.ndarray) -> np.ndarray:
        """Policy actions -> actions the vector env accepts (``start``-offset ints, or rescaled ``u``)."""
        act = np.asarray(policy_actions)
        if self.act_discrete:
            return act.reshape(-1).astype(np.int64) + self._act_start
        u = act.reshape(act.shape[0], -1).astype(np.float64)
        env = np.where(self._bounded, self._centre + self._half * np.clip(u, -1.0, 1.0), u)
        return env.reshape(act.shape[0], *self._act_shape).astype(self._act_dtype)

    def build(
        self,
        observations: np.ndarray,
        prev_actions: np.ndarray,
        prev_rewards: np.ndarray,
        prev_dones: np.ndarray,
        prev_observations: np.ndarray | None = None,
    ) -> np.ndarray:
        """One input row per sub-env, ``(n, input_dim)`` float32.

        ``prev_actions`` is already encoded (``(n, act_dim)``, see :meth:`encode_action`), and so is
        ``prev_observations`` (``(n, obs_dim)``, see :meth:`encode_obs`), which inputs built with
        ``prev_obs=True`` need and others refuse.
        """
        obs = self.encode_obs(observations)
        n = obs.shape[0]
        parts = [
            obs,
            np.asarray(prev_actions, dtype=np.float32).reshape(n, self.act_dim),
            np.asarray(prev_rewards, dtype=np.float32).reshape(n, 1),
            np.asarray(prev_dones, dtype=np.float32).reshape(n, 1),
        ]
        if self.prev_obs != (prev_observations is not None):
            need = "need" if self.prev_obs else "take no"
            raise ValueError(f"these RL² inputs (prev_obs={self.prev_obs}) {need} previous observations")
        if prev_observations is not None:
            prev = np.asarray(prev_observations, dtype=np.float32)
            if prev.shape != (n, self.obs_dim):
                raise ValueError(
                    f"previous observations must be encoded as ({n}, {self.obs_dim}), got shape {prev.shape}"
                )
            parts.append(prev)
        return np.concatenate(parts, axis=1)


class TaskSampler:
    """Where training trials get their tasks.

    ``"sample"`` draws fresh tasks from the family's distribution and redraws any that belongs to
    the validation or test split, so held-out tasks are never trained on; ``"train"`` draws
    uniformly (with replacement) from the fixed train split.
    """

    def __init__(self, family: TaskFamily, source: Literal["sample", "train"] = "sample") -> None:
        if source not in ("sample", "train"):
            raise ValueError(f"task source must be 'sample' or 'train', got {source!r}")
        self.family = family
        self.source = source
        if source == "train" and not family.train:
            raise ValueError(f"{family.id} has an empty train split; use task source 'sample'")
        # tasks compare and hash by their parameters; their ids are not needed (nor computed) here
        self._held_out = set((*family.validation, *family.test))

    def __call__(self, n: int, rng: np.random.Generator) -> list[Task]:
        if self.source == "train":
            train = self.family.train
            return [train[i] for i in rng.integers(len(train), size=n)]
        tasks: list[Task] = []
        for _ in range(100 * n + 100):
            if len(tasks) == n:
                return tasks
            task = self.family.sample(1, rng)[0]
            if task not in self._held_out:
                tasks.append(task)
        raise ValueError(f"{self.family.id}: cannot sample tasks outside the held-out splits")


@dataclass(frozen=True)
class TrialStep:
    """What :meth:`TrialVecEnv.step` returns, one entry per sub-env (trial).

    Attributes:
        inputs: ``(n, input_dim)`` the policy inputs for the next step.
        rewards: ``(n,)`` float64 rewards of this step.
        episode_done: ``(n,)`` this step ended an episode (termination or truncation).
        active: ``(n,)`` this step belonged to a running trial (padding otherwise).
        trial_done: ``(n,)`` the trial has ended (after this step).
        expected_rewards: ``(n,)`` float64 ``info["expected_reward"]`` of this step (the reward's
            mean given the task, state and action), NaN for sub-envs that do not report it.
    """

    inputs: np.ndarray
    rewards: np.ndarray
    episode_done: np.ndarray
    active: np.ndarray
    trial_done: np.ndarray
    expected_rewards: np.ndarray


class TrialVecEnv:
    """``num_trials`` RL² trials of ``episodes_per_trial`` episodes, one per vector-env sub-env.

    Args:
        family: the task family.
        num_trials: trials run side by side (sub-envs).
        episodes_per_trial: ``N``, episodes of the same task in one trial.
        backend: vector env backend (see :func:`metarl.make_vec`).
        vec: run the trials in this vector env (of ``family``, one sub-env per task, ``num_trials``
            sub-envs) instead of making one; it is not closed by :meth:`close`.
        prev_obs: inputs also hold the previous observation (:class:`TrialInputs`).
    """

    def __init__(
        self,
        family: TaskFamily,
        num_trials: int,
        episodes_per_trial: int,
        *,
        backend: str = "auto",
        vec: BatchedTaskVectorEnv | SyncTaskVectorEnv | None = None,
        prev_obs: bool = False,
    ) -> None:
        self.family = family
        self.num_trials = check_int("num_trials", num_trials)
        self.episodes_per_trial = check_int("episodes_per_trial", episodes_per_trial)
        self._owns_vec = vec is None
        if vec is None:
            placeholder = family.sample(1, np.random.default_rng(0))[0]
            vec = make_vec(family, [placeholder] * self.num_trials, backend=backend)
        elif vec.envs_per_task != 1 or vec.num_envs != self.num_trials:
            raise ValueError(
                f"a trial vector env needs one sub-env per trial ({self.num_trials}), got "
                f"{vec.num_envs} sub-envs with envs_per_task={vec.envs_per_task}"
            )
        self.vec = vec
        self.inputs = TrialInputs(
            self.vec.single_observation_space, self.vec.single_action_space, prev_obs=prev_obs
        )
        #: With ``prev_obs``: the encoded observations of the last inputs (what the next actions are
        #: taken in), the first ``obs_dim`` entries of those rows.
        self._last_obs: np.ndarray | None = None
        #: Upper bound on a trial's length in steps.
        self.max_trial_steps = self.episodes_per_trial * family.max_episode_steps
        self._episodes = np.zeros(self.num_trials, dtype=np.int64)
        self._started = False

    def reset(self, tasks: Sequence[Task], seed: int | Sequence[int] | None = None) -> np.ndarray:
        """Start a new trial in every sub-env (sub-env ``i`` on ``tasks[i]``); return the first inputs.

        ``seed``: an int (sub-env ``i`` is reset with ``seed + i``) or one seed per sub-env."""
        tasks = list(tasks)
        if len(tasks) != self.num_trials:
            raise ValueError(f"reset needs {self.num_trials} tasks (one per trial), got {len(tasks)}")
        self.vec.set_tasks(tasks)
        obs, _ = self.vec.reset(seed=seed)  # type: ignore[arg-type]
        self._episodes[:] = 0
        self._started = True
        n = self.num_trials
        first_prev = np.zeros((n, self.inputs.obs_dim), dtype=np.float32) if self.inputs.prev_obs else None
        inputs = self.inputs.build(
            obs, np.zeros((n, self.inputs.act_dim)), np.zeros(n), np.zeros(n), first_prev
        )
        self._last_obs = inputs[:, : self.inputs.obs_dim].copy() if self.inputs.prev_obs else None
        return inputs

    def step(self, policy_actions: np.ndarray) -> TrialStep:
        """Step every sub-env with the policy's actions (see :meth:`TrialInputs.to_env`)."""
        if not self._started:
            raise RuntimeError("call TrialVecEnv.reset(tasks) before step()")
        active = self._episodes < self.episodes_per_trial
        obs, rewards, terms, truncs, infos = self.vec.step(self.inputs.to_env(policy_actions))
        done = np.asarray(terms, dtype=bool) | np.asarray(truncs, dtype=bool)
        rewards = np.asarray(rewards, dtype=np.float64)
        expected = step_info(infos, "expected_reward", done, np.nan)
        self._episodes += done & active
        inputs = self.inputs.build(
            obs, self.inputs.encode_action(policy_actions), rewards, done, self._last_obs
        )
        if self.inputs.prev_obs:
            self._last_obs = inputs[:, : self.inputs.obs_dim].copy()
        return TrialStep(
            inputs=inputs,
            rewards=rewards,
            episode_done=done,
            active=active,
            trial_done=self._episodes >= self.episodes_per_trial,
            expected_rewards=np.full(len(rewards), np.nan) if expected is None else expected,
        )

    @property
    def episodes_done(self) -> np.ndarray:
        """Episodes completed so far in each sub-env's trial."""
        return self._episodes.copy()

    def close(self) -> None:
        if self._owns_vec:
            self.vec.close()
