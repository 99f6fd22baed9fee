"""Rollouts: run a policy in a multi-task vector env and return a typed batch of episodes.

Episodes come back padded to a common length ``T`` with a ``mask``; they are ordered by task, then
by episode, so ``batch.by_task()`` can reshape every field to ``(n_tasks, episodes_per_task, ...)``.
Terminations (the MDP ended: do not bootstrap) and truncations (the time limit cut the episode:
bootstrap from ``final_observations``) are kept apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, _seeds, step_info

__all__ = ["EpisodeBatch", "Policy", "StatefulPolicy", "collect"]


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations ``(num_envs, *obs_shape)`` to a batch of actions.

    A policy whose ``clip_actions`` attribute is true has its actions clipped to the vector env's
    ``Box`` action space before they are stepped (Stable-Baselines3's convention, and rllab's
    ``normalize(env)`` around the MAML reference environments); the episode batch records the
    actions as the policy chose them, so their log-probabilities are those of the sampled actions.
    """

    def __call__(self, observations: np.ndarray, /) -> np.ndarray: ...


@runtime_checkable
class StatefulPolicy(Policy, Protocol):
    """A policy that also sees the outcome of every step (recurrent, context-based learners).

    ``active[i]`` is ``False`` for sub-envs whose episodes are no longer recorded; their steps
    must not change the policy's state.
    """

    def observe(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        active: np.ndarray,
    ) -> None: ...


@dataclass(frozen=True)
class EpisodeBatch:
    """Episodes padded to a common length ``T``; ``E`` episodes in all.

    Attributes:
        observations: ``(E, T, *obs_shape)`` observation before each step.
        actions: ``(E, T, *act_shape)``.
        rewards: ``(E, T)`` float64, zero where padded.
        terminations: ``(E, T)`` bool, true at the last step of an episode the MDP ended.
        truncations: ``(E, T)`` bool, true at the last step of an episode the time limit cut.
        mask: ``(E, T)`` bool, true on real steps.
        lengths: ``(E,)`` steps per episode.
        final_observations: ``(E, *obs_shape)`` observation after the last step.
        task_index: ``(E,)`` index of the episode's task in the vector env's ``tasks``.
        success: ``(E,)`` float, 1.0 if ``info["success"]`` was true at any step, 0.0 if not, NaN
            where the family defines no success.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    final_observations: np.ndarray
    task_index: np.ndarray
    success: np.ndarray

    @property
    def num_episodes(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode, ``(E,)``."""
        return self.rewards.sum(axis=-1)

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def num_tasks(self) -> int:
        return int(self.task_index.max()) + 1 if self.num_episodes else 0

    def by_task(self) -> EpisodeBatch:
        """The same data with a leading task axis: every field becomes ``(n_tasks, E / n_tasks, ...)``."""
        n = self.num_tasks
        if self.num_episodes % n or not np.array_equal(
            self.task_index, np.repeat(np.arange(n), self.num_episodes // n)
        ):
            raise ValueError("by_task() needs the same number of episodes for every task, in task order")
        return EpisodeBatch(
            **{
                f.name: getattr(self, f.name).reshape(n, -1, *getattr(self, f.name).shape[1:])
                for f in fields(self)
            }
        )

    def select(self, index: np.ndarray | slice) -> EpisodeBatch:
        """The episodes at ``index`` (a mask, indices or a slice)."""
        return EpisodeBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def for_task(self, k: int) -> EpisodeBatch:
        return self.select(self.task_index == k)


def _clip_bounds(
    vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv, policy: Policy
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(low, high)`` to clip ``policy``'s actions to, or ``None`` (see :class:`Policy`)."""
    if not getattr(policy, "clip_actions", False):
        return None
    space = vec_env.single_action_space
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"clip_actions needs a Box action space, got {space}")
    return space.low, space.high


def _final_obs(infos: dict[str, Any], i: int) -> Any:
    return infos["final_obs"][i]


def _success_flags(infos: dict[str, Any], done: np.ndarray) -> np.ndarray | None:
    """``info["success"]`` of this step for every sub-env (from ``final_info`` where it reset)."""
    flags = step_info(infos, "success", done, False)
    return None if flags is None else flags.astype(bool)


def collect(
    vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv,
    policy: Policy,
    episodes_per_task: int,
    *,
    seed: int | Sequence[int] | None = None,
) -> EpisodeBatch:
    """Reset ``vec_env`` and run ``policy`` until every task has ``episodes_per_task`` episodes.

    Sub-env ``i`` contributes ``episodes_per_task / envs_per_task`` consecutive episodes; a sub-env
    that has its share keeps stepping (a vector env steps all sub-envs) but its steps are not
    recorded and a :class:`StatefulPolicy` is told they are inactive.

    Args:
        vec_env: a vector env from :func:`metarl.make_vec`.
        policy: a :class:`Policy` (or :class:`StatefulPolicy`).
        episodes_per_task: must be a multiple of ``vec_env.envs_per_task``.
        seed: passed to ``vec_env.reset``: an int (sub-env ``i`` gets ``seed + i``) or one seed per
            sub-env.
    """
    if not isinstance(episodes_per_task, (int, np.integer)) or isinstance(episodes_per_task, bool):
        raise TypeError(f"episodes_per_task must be an int, got {episodes_per_task!r}")
    per_env, rem = divmod(int(episodes_per_task), vec_env.envs_per_task)
    if episodes_per_task < 1 or rem:
        raise ValueError(
            f"episodes_per_task={episodes_per_task!r} must be a positive multiple of the vector "
            f"env's envs_per_task={vec_env.envs_per_task}"
        )
    n = vec_env.num_envs
    horizon = vec_env.family.max_episode_steps
    observe = getattr(policy, "observe", None)
    bounds = _clip_bounds(vec_env, policy)
    _seeds(seed, n)  # ValueError for a negative or malformed seed, before any env is touched
    # Both vector envs take an int or one seed per sub-env; their annotations differ.
    obs, _ = vec_env.reset(seed=seed)  # type: ignore[arg-type]
    steps_obs, steps_act, steps_rew, steps_term, steps_trunc, steps_succ = [], [], [], [], [], []
    finals: list[list[Any]] = [[] for _ in range(n)]
    done_count = np.zeros(n, dtype=np.int64)
    has_success = None
    for _ in range(per_env * horizon):
        active = done_count < per_env
        if not active.any():
            break
        actions = np.asarray(policy(obs))
        env_actions = (
            actions if bounds is None else np.clip(actions, *bounds).astype(actions.dtype, copy=False)
        )
        next_obs, rewards, terms, truncs, infos = vec_env.step(env_actions)
        done = terms | truncs
        if observe is not None:
            observe(actions, rewards, terms, truncs, active)
        succ = _success_flags(infos, done)
        if has_success is None:
            has_success = succ is not None
        steps_obs.append(obs)
        steps_act.append(actions)
        steps_rew.append(np.asarray(rewards, dtype=np.float64))
        steps_term.append(np.asarray(terms, dtype=bool))
        steps_trunc.append(np.asarray(truncs, dtype=bool))
        steps_succ.append(succ if succ is not None else np.zeros(n, dtype=bool))
        for i in np.flatnonzero(done & active):
            finals[i].append(_final_obs(infos, int(i)))
        done_count += done
        obs = next_obs
    if np.any(done_count < per_env):
        raise RuntimeError("episodes did not end within the family's horizon; is the TimeLimit missing?")
    return _assemble(
        vec_env,
        per_env,
        np.stack(steps_obs, 1),
        np.stack(steps_act, 1),
        np.stack(steps_rew, 1),
        np.stack(steps_term, 1),
        np.stack(steps_trunc, 1),
        np.stack(steps_succ, 1),
        finals,
        bool(has_success),
    )


def _assemble(
    vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv,
    per_env: int,
    obs: np.ndarray,
    act: np.ndarray,
    rew: np.ndarray,
    term: np.ndarray,
    trunc: np.ndarray,
    succ: np.ndarray,
    finals: list[list[Any]],
    has_success: bool,
) -> EpisodeBatch:
    """Cut each sub-env's step stream ``(n, steps, ...)`` into episodes, ordered task-major."""
    n, _steps = rew.shape
    ept = vec_env.envs_per_task
    n_tasks = n // ept
    bounds: list[list[tuple[int, int]]] = []
    for i in range(n):
        ends = np.flatnonzero(term[i] | trunc[i])[:per_env] + 1
        starts = np.concatenate([[0], ends[:-1]])
        bounds.append(list(zip(starts.tolist(), ends.tolist(), strict=True)))
    T = max(e - s for b in bounds for s, e in b)
    E = n_tasks * ept * per_env
    out_obs = np.zeros((E, T, *obs.shape[2:]), dtype=obs.dtype)
    out_act = np.zeros((E, T, *act.shape[2:]), dtype=act.dtype)
    out_rew = np.zeros((E, T))
    out_term = np.zeros((E, T), dtype=bool)
    out_trunc = np.zeros((E, T), dtype=bool)
    mask = np.zeros((E, T), dtype=bool)
    lengths = np.zeros(E, dtype=np.int64)
    final_obs = np.zeros((E, *obs.shape[2:]), dtype=obs.dtype)
    success = np.full(E, np.nan)
    task_index = np.repeat(np.arange(n_tasks), ept * per_env)
    for k in range(n_tasks):
        for j in range(ept * per_env):
            i = k * ept + j % ept  # round-robin over the task's sub-envs
            s, e = bounds[i][j // ept]
            row = k * ept * per_env + j
            length = e - s
            out_obs[row, :length] = obs[i, s:e]
            out_act[row, :length] = act[i, s:e]
            out_rew[row, :length] = rew[i, s:e]
            out_term[row, :length] = term[i, s:e]
            out_trunc[row, :length] = trunc[i, s:e]
            mask[row, :length] = True
            lengths[row] = length
            final_obs[row] = finals[i][j // ept]
            if has_success:
                success[row] = float(succ[i, s:e].any())
    return EpisodeBatch(
        observations=out_obs,
        actions=out_act,
        rewards=out_rew,
        terminations=out_term,
        truncations=out_trunc,
        mask=mask,
        lengths=lengths,
        final_observations=final_obs,
        task_index=task_index,
        success=success,
    )
