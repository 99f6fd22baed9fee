"""Classical baselines for Bernoulli bandits and tabular MDPs, as in RL² (Duan et al. 2016).

Every learner implements :class:`metarl.MetaLearner` with ``adaptation_unit = "episode"``: it
adapts within a trial through its own statistics, not through ``update``. ``begin_adaptation``
starts fresh statistics for every sub-env of the vector env (one sub-env = one trial), and the
policy is a :class:`metarl.StatefulPolicy` whose ``observe`` updates the statistics of active
sub-envs, vectorised over sub-envs with NumPy. The same policy object serves a whole trial, either
run by :func:`metarl.evaluate` (``rounds = n``, ``episodes_per_round = 1``: one episode per round)
or by :func:`metarl.agents.classical_bench.run_trials` (all episodes in one pass).

Bandits (arm ``a`` pulled ``n_a`` times with ``s_a`` successes; posterior ``Beta(1 + s_a,
1 + n_a - s_a)`` under the uniform prior the tasks are drawn from):

* :class:`RandomBandit`; :class:`GreedyBandit` (highest posterior mean ``(1 + s_a) / (2 + n_a)``);
  :class:`EpsilonGreedyBandit`; :class:`UCB1` (Auer et al. 2002: unplayed arms first, then
  ``s_a / n_a + c sqrt(2 ln t / n_a)``); :class:`ThompsonSampling` (Thompson 1933);
  :class:`OptimisticThompsonSampling` (``max(sample, posterior mean)``, May et al. 2012);
  :class:`GittinsIndex` (Gittins 1979; indices from :mod:`metarl.agents.gittins`).

Tabular MDPs (counts ``N[s, a, s']``, reward sums; a ``Dirichlet(1)`` prior on each transition
row, a ``N(1, 1)`` prior on each mean reward with unit reward noise, matching the task
distribution). Every agent plans at the start of each episode by finite-horizon value iteration
over the episode's steps, and acts on the plan's ``Q[t, s, a]``:

* :class:`RandomMDP`; :class:`GreedyMDP` (the posterior-mean model); :class:`EpsilonGreedyMDP`;
  :class:`PSRL` (Osband et al. 2013: one MDP sampled from the posterior per episode);
  :class:`BEB` (Kolter & Ng 2009: the posterior-mean model with reward bonus
  ``beta / (1 + N[s, a])``).

Ties between equally good actions are broken uniformly at random. Free constants (UCB1's ``c``,
``epsilon``, BEB's ``beta``, the Gittins discount) default to the values chosen on the validation
split for the family's default trial length, recorded in ``benchmarks/classical/tuned.json`` by
``scripts/tune_classical.py``; the benchmark uses the value tuned for each setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from metarl.agents.gittins import gittins_table
from metarl.evaluation import AdaptationUnit
from metarl.rollout import EpisodeBatch
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv

__all__ = [
    "BANDIT_LEARNERS",
    "BEB",
    "MDP_LEARNERS",
    "PSRL",
    "UCB1",
    "EpsilonGreedyBandit",
    "EpsilonGreedyMDP",
    "GittinsIndex",
    "GreedyBandit",
    "GreedyMDP",
    "OptimisticThompsonSampling",
    "RandomBandit",
    "RandomMDP",
    "ThompsonSampling",
    "argmax_random_ties",
    "finite_horizon_q",
]

VecEnv = BatchedTaskVectorEnv | SyncTaskVectorEnv


def argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Argmax over the last axis, choosing uniformly among exact ties."""
    best = values >= values.max(axis=-1, keepdims=True)
    keys = np.where(best, rng.random(values.shape), -1.0)
    return keys.argmax(axis=-1)


def _check_unit(name: str, value: float) -> float:
    if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_nonnegative(name: str, value: float) -> float:
    if not isinstance(value, (int, float, np.floating)) or not float(value) >= 0.0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _discrete_n(space: gym.Space[Any], what: str, family_id: str) -> int:
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"{what} of {family_id} is {space}; classical agents need Discrete spaces")
    return int(space.n)


class _TrialAdaptation:
    """An adaptation session: one stateful policy for the whole trial; ``update`` does nothing."""

    def __init__(self, policy: _TrialPolicy) -> None:
        self._policy = policy

    def policy(self) -> _TrialPolicy:
        # Each call starts a round of metarl.evaluate, which resets the vector env: episodes
        # restart at step 0. Statistics carry over.
        self._policy.start_episodes()
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:
        """Nothing to do: these agents adapt through the statistics updated in ``observe``."""


class _TrialPolicy:
    """Base of the stateful policies: sub-env count, generator and the step within the episode."""

    def __init__(self, n_envs: int, rng: np.random.Generator) -> None:
        self.n_envs = n_envs
        self.rng = rng
        self.t = np.zeros(n_envs, dtype=np.int64)
        self.episode_start = np.ones(n_envs, dtype=bool)

    def start_episodes(self) -> None:
        """Every sub-env is at the first step of a new episode (the env was just reset)."""
        self.t[:] = 0
        self.episode_start[:] = True

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _record(self, actions: np.ndarray, rewards: np.ndarray, done: np.ndarray, index: np.ndarray) -> None:
        """Update the statistics of the sub-envs in ``index`` (the active ones)."""
        raise NotImplementedError

    def observe(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        active: np.ndarray,
    ) -> None:
        """Update the statistics of active sub-envs and track episode boundaries of all."""
        done = np.asarray(terminations) | np.asarray(truncations)
        actions = np.asarray(actions, dtype=np.int64)
        self._record(actions, np.asarray(rewards, dtype=np.float64), done, np.flatnonzero(active))
        self.t = np.where(done, 0, self.t + 1)
        self.episode_start |= done


# ------------------------------------------------------------------------------------- bandits
class _BanditPolicy(_TrialPolicy):
    """Per sub-env pull counts ``n`` and reward sums ``s`` per arm; ``score`` ranks the arms."""

    def __init__(self, learner: _BanditLearner, n_envs: int, n_arms: int, rng: np.random.Generator) -> None:
        super().__init__(n_envs, rng)
        self.learner = learner
        self.n = np.zeros((n_envs, n_arms))
        self.s = np.zeros((n_envs, n_arms))

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        actions = argmax_random_ties(self.learner.score(self), self.rng)
        eps = self.learner.exploration
        if eps > 0.0:
            explore = self.rng.random(self.n_envs) < eps
            actions[explore] = self.rng.integers(self.n.shape[1], size=int(explore.sum()))
        return actions.astype(np.int64)

    def _record(self, actions: np.ndarray, rewards: np.ndarray, done: np.ndarray, index: np.ndarray) -> None:
        self.n[index, actions[index]] += 1.0
        self.s[index, actions[index]] += rewards[index]

    def posterior_mean(self) -> np.ndarray:
        """Posterior mean of each arm under the uniform ``Beta(1, 1)`` prior."""
        return (1.0 + self.s) / (2.0 + self.n)


class _BanditLearner:
    """Shared ``MetaLearner`` plumbing of the bandit agents; subclasses define :meth:`score`."""

    name: ClassVar[str] = "bandit"
    adaptation_unit: AdaptationUnit = "episode"
    exploration: float = 0.0

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        """``(n_envs, n_arms)`` scores; the policy pulls a highest-scoring arm."""
        raise NotImplementedError

    def _prepare(self, vec_env: VecEnv) -> None:
        """Hook run once per adaptation (e.g. to build lookup tables)."""

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _TrialAdaptation:
        n_arms = _discrete_n(vec_env.single_action_space, "the action space", vec_env.family.id)
        self._prepare(vec_env)
        return _TrialAdaptation(_BanditPolicy(self, vec_env.num_envs, n_arms, np.random.default_rng(seed)))


@dataclass
class RandomBandit(_BanditLearner):
    """Pulls arms uniformly at random (the floor)."""

    name: ClassVar[str] = "random"

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        return np.zeros_like(policy.n)


@dataclass
class GreedyBandit(_BanditLearner):
    """Pulls an arm with the highest posterior mean ``(1 + s_a) / (2 + n_a)``; never explores."""

    name: ClassVar[str] = "greedy"

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        return policy.posterior_mean()


@dataclass
class EpsilonGreedyBandit(GreedyBandit):
    """Greedy, except that with probability ``epsilon`` it pulls a uniformly random arm.

    Args:
        epsilon: exploration probability; the default 0.0 was chosen on the validation split at
            ``n = 100``, ``k = 5`` (``benchmarks/classical/tuned.json``; 0.1 at ``n = 500``),
            which makes the default identical to :class:`GreedyBandit`.
    """

    name: ClassVar[str] = "epsilon-greedy"
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        self.exploration = _check_unit("epsilon", self.epsilon)


@dataclass
class UCB1(_BanditLearner):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002) with a tuned exploration constant.

    Plays every arm once (unplayed arms first, ties random), then the arm maximising
    ``s_a / n_a + c * sqrt(2 ln t / n_a)``, ``t`` the pulls so far; ``c = 1`` is Auer et al.'s.

    Args:
        c: the exploration constant; the default 0.2 was chosen on the validation split at
            ``n = 100``, ``k = 5`` (``benchmarks/classical/tuned.json``).
    """

    name: ClassVar[str] = "UCB1"
    c: float = 0.2

    def __post_init__(self) -> None:
        _check_nonnegative("c", self.c)

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        n = policy.n
        total = n.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ucb = policy.s / n + self.c * np.sqrt(2.0 * np.log(np.maximum(total, 1.0)) / n)
        return np.where(n > 0, ucb, np.inf)


@dataclass
class ThompsonSampling(_BanditLearner):
    """Thompson sampling with a ``Beta(1, 1)`` prior: pulls the arm whose posterior sample is best."""

    name: ClassVar[str] = "Thompson sampling"

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        return policy.rng.beta(1.0 + policy.s, 1.0 + policy.n - policy.s)


@dataclass
class OptimisticThompsonSampling(_BanditLearner):
    """Thompson sampling whose samples are raised to at least the posterior mean (May et al. 2012)."""

    name: ClassVar[str] = "optimistic TS"

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        sample = policy.rng.beta(1.0 + policy.s, 1.0 + policy.n - policy.s)
        return np.maximum(sample, policy.posterior_mean())


@dataclass
class GittinsIndex(_BanditLearner):
    """Pulls the arm with the highest Gittins index of its ``Beta(1 + s_a, 1 + f_a)`` posterior.

    The index is Bayes-optimal for the *discounted* infinite-horizon problem; a trial is a finite
    undiscounted one, so the discount is a free constant, chosen on the validation split per
    trial length among {0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99} (``scripts/tune_classical.py``).
    The table covers ``a + b <= n_pulls + 2`` (``vec_env.family.n_pulls``, or 1000); beyond it
    an arm is scored by its posterior mean. Rewards must be 0 or 1.

    Args:
        gamma: the discount; the default 0.99 was chosen at ``n = 100``, ``k = 5``
            (``benchmarks/classical/tuned.json``; 0.5 at ``n = 10``).
    """

    name: ClassVar[str] = "Gittins"
    gamma: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 < float(self.gamma) < 1.0:
            raise ValueError(f"gamma must be a discount in (0, 1), got {self.gamma!r}")
        self._table = np.zeros((0, 0))

    def _prepare(self, vec_env: VecEnv) -> None:
        level = int(getattr(vec_env.family, "n_pulls", 1000)) + 2
        self._table = gittins_table(float(self.gamma), level)

    def score(self, policy: _BanditPolicy) -> np.ndarray:
        a = (1.0 + policy.s).astype(np.int64)
        b = (1.0 + policy.n - policy.s).astype(np.int64)
        size = self._table.shape[0]
        inside = (a + b) <= size
        index = self._table[np.where(inside, a, 1), np.where(inside, b, 1)]
        return np.where(inside, index, policy.posterior_mean())


#: The bandit learners of the RL² comparison, with default constants.
BANDIT_LEARNERS: tuple[type[_BanditLearner], ...] = (
    RandomBandit,
    GreedyBandit,
    EpsilonGreedyBandit,
    UCB1,
    ThompsonSampling,
    OptimisticThompsonSampling,
    GittinsIndex,
)


# ------------------------------------------------------------------------------------- MDPs
def finite_horizon_q(transitions: np.ndarray, rewards: np.ndarray, horizon: int) -> np.ndarray:
    """Finite-horizon value iteration for a batch of MDPs.

    Args:
        transitions: ``(M, S, A, S)`` next-state probabilities.
        rewards: ``(M, S, A)`` expected rewards.
        horizon: steps per episode ``H``.

    Returns:
        ``Q`` of shape ``(M, H, S, A)``: ``Q[m, t, s, a]`` is the expected reward of taking ``a``
        in ``s`` at step ``t`` and acting optimally for the remaining ``H - t - 1`` steps.
    """
    transitions = np.asarray(transitions, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if transitions.ndim != 4 or rewards.shape != transitions.shape[:3]:
        raise ValueError(
            f"transitions must be (M, S, A, S) and rewards (M, S, A); got {transitions.shape} and {rewards.shape}"
        )
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    m, s, a, _ = transitions.shape
    q = np.zeros((m, int(horizon), s, a))
    value = np.zeros((m, s))
    for t in range(int(horizon) - 1, -1, -1):
        q[:, t] = rewards + np.einsum("msan,mn->msa", transitions, value)
        value = q[:, t].max(axis=2)
    return q


class _MDPPolicy(_TrialPolicy):
    """Per sub-env transition counts ``(N, S, A, S)`` and reward sums ``(N, S, A)``; replans the
    sub-envs whose episode starts, then acts greedily on ``Q[t, s]`` (epsilon-greedily if asked)."""

    def __init__(
        self,
        learner: _MDPLearner,
        n_envs: int,
        n_states: int,
        n_actions: int,
        horizon: int,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(n_envs, rng)
        self.learner = learner
        self.horizon = horizon
        self.counts = np.zeros((n_envs, n_states, n_actions, n_states))
        self.visits = np.zeros((n_envs, n_states, n_actions))
        self.reward_sums = np.zeros((n_envs, n_states, n_actions))
        self.q = np.zeros((n_envs, horizon, n_states, n_actions))
        self._state = np.zeros(n_envs, dtype=np.int64)
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def posterior_mean_model(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior-mean transitions (Dirichlet(1) prior) and mean rewards (N(1, 1) prior, unit
        noise) of the sub-envs in ``index``."""
        counts = self.counts[index]
        transitions = (counts + 1.0) / (counts.sum(axis=-1, keepdims=True) + counts.shape[-1])
        rewards = (1.0 + self.reward_sums[index]) / (1.0 + self.visits[index])
        return transitions, rewards

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        states = np.asarray(observations, dtype=np.int64).reshape(self.n_envs)
        if self._pending is not None:  # the previous step's next state is this observation
            index, s, a = self._pending
            self.counts[index, s, a, states[index]] += 1.0
            self._pending = None
        replan = np.flatnonzero(self.episode_start)
        if replan.size:
            transitions, rewards = self.learner.model(self, replan)
            self.q[replan] = finite_horizon_q(transitions, rewards, self.horizon)
            self.episode_start[replan] = False
        t = np.minimum(self.t, self.horizon - 1)
        q = self.q[np.arange(self.n_envs), t, states]
        actions = argmax_random_ties(q, self.rng)
        eps = self.learner.exploration
        if eps > 0.0:
            explore = self.rng.random(self.n_envs) < eps
            actions[explore] = self.rng.integers(q.shape[1], size=int(explore.sum()))
        self._state = states
        return actions.astype(np.int64)

    def _record(self, actions: np.ndarray, rewards: np.ndarray, done: np.ndarray, index: np.ndarray) -> None:
        """Record rewards now and each transition at the next call, when its next state is seen.

        The transition of an episode's last step is never recorded: the vector env has already
        reset, and the next state is only in ``infos["final_obs"]``, which policies do not see.
        (An RL² policy gets exactly the same information.)
        """
        s, a = self._state[index], actions[index]
        self.visits[index, s, a] += 1.0
        self.reward_sums[index, s, a] += rewards[index]
        going_on = ~done[index]
        self._pending = (index[going_on], s[going_on], a[going_on])

    def start_episodes(self) -> None:
        super().start_episodes()
        self._pending = None


class _MDPLearner:
    """Shared ``MetaLearner`` plumbing of the MDP agents; subclasses define :meth:`model`."""

    name: ClassVar[str] = "mdp"
    adaptation_unit: AdaptationUnit = "episode"
    exploration: float = 0.0

    def model(self, policy: _MDPPolicy, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The MDP ``(transitions (M, S, A, S), rewards (M, S, A))`` the sub-envs in ``index`` plan
        in for their next episode."""
        raise NotImplementedError

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _TrialAdaptation:
        fam = vec_env.family.id
        n_states = _discrete_n(vec_env.single_observation_space, "the observation space", fam)
        n_actions = _discrete_n(vec_env.single_action_space, "the action space", fam)
        horizon = int(vec_env.family.max_episode_steps)
        rng = np.random.default_rng(seed)
        return _TrialAdaptation(_MDPPolicy(self, vec_env.num_envs, n_states, n_actions, horizon, rng))


@dataclass
class RandomMDP(_MDPLearner):
    """Uniformly random actions (the floor)."""

    name: ClassVar[str] = "random"

    def model(self, policy: _MDPPolicy, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, s, a, _ = policy.counts[index].shape
        return np.full((m, s, a, s), 1.0 / s), np.zeros((m, s, a))


@dataclass
class GreedyMDP(_MDPLearner):
    """Acts optimally in the posterior-mean MDP, replanned at the start of each episode."""

    name: ClassVar[str] = "greedy"

    def model(self, policy: _MDPPolicy, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return policy.posterior_mean_model(index)


@dataclass
class EpsilonGreedyMDP(GreedyMDP):
    """Greedy, except that each step takes a uniformly random action with probability ``epsilon``.

    Args:
        epsilon: exploration probability; the default 0.0 was chosen on the validation split at
            ``n = 10`` episodes (``benchmarks/classical/tuned.json``; also at every other ``n``),
            which makes the default identical to :class:`GreedyMDP`.
    """

    name: ClassVar[str] = "epsilon-greedy"
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        self.exploration = _check_unit("epsilon", self.epsilon)


@dataclass
class PSRL(_MDPLearner):
    """Posterior sampling for RL (Strens 2000; Osband, Russo & Van Roy 2013).

    At the start of each episode it samples, per sub-env, transitions from the ``Dirichlet(1 +
    N[s, a, :])`` posterior (normalised Gamma draws) and mean rewards from their Gaussian
    posterior ``N((1 + sum r) / (1 + N[s, a]), 1 / (1 + N[s, a]))`` (prior ``N(1, 1)``, unit
    noise), then follows that MDP's finite-horizon optimal policy for the episode.
    """

    name: ClassVar[str] = "PSRL"

    def model(self, policy: _MDPPolicy, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gammas = policy.rng.standard_gamma(1.0 + policy.counts[index])
        transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        n = policy.visits[index]
        mean = (1.0 + policy.reward_sums[index]) / (1.0 + n)
        rewards = mean + policy.rng.standard_normal(mean.shape) / np.sqrt(1.0 + n)
        return transitions, rewards


@dataclass
class BEB(_MDPLearner):
    """Bayesian exploration bonus (Kolter & Ng 2009): the posterior-mean MDP with rewards
    ``mean[s, a] + beta / (1 + N[s, a])``, replanned at the start of each episode.

    Args:
        beta: bonus scale; the default 0.4 was chosen on the validation split at ``n = 10``
            episodes (``benchmarks/classical/tuned.json``; 0.9 at ``n = 25``, 1.0, the top of
            the grid, from ``n = 50``).
    """

    name: ClassVar[str] = "BEB"
    beta: float = 0.4

    def __post_init__(self) -> None:
        _check_nonnegative("beta", self.beta)

    def model(self, policy: _MDPPolicy, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        transitions, rewards = policy.posterior_mean_model(index)
        return transitions, rewards + self.beta / (1.0 + policy.visits[index])


#: The MDP learners of the RL² comparison, with default constants.
MDP_LEARNERS: tuple[type[_MDPLearner], ...] = (RandomMDP, GreedyMDP, EpsilonGreedyMDP, PSRL, BEB)
