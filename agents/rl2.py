"""RL² (Duan et al. 2016): a GRU policy trained with PPO over whole multi-episode trials.

The policy is a GRU over the RL² inputs ``[obs, a_{t-1}, r_{t-1}, done_{t-1}]`` (see
:mod:`metarl.agents.rl2_trials`) with a policy head and a value head on the shared hidden state.
Its hidden state persists across the episodes of a trial, so it can learn to explore in early
episodes and exploit in later ones; it is reset only between trials.

Training reads top to bottom in :meth:`RL2.train_step`:

1. :func:`collect_trials` runs ``trials_per_update`` trials side by side (one sub-env each);
2. :func:`trial_gae` computes advantages over each whole trial. Episode boundaries inside a trial
   do not cut the bootstrap: to the meta-learner the trial is one long episode whose return is
   what it maximises (Duan et al. 2016, section 2.2). The value after a trial's last step is 0;
3. PPO (Schulman et al. 2017): a few epochs over minibatches of *whole trials*, re-running the
   GRU from a zero state over each trial (backpropagation through the whole trial), minimising
   :func:`ppo_loss` (clipped surrogate + value error - entropy bonus).

The paper trained with TRPO; PPO is what later reproductions use. Why this is hand-written rather
than sb3-contrib's ``RecurrentPPO`` is recorded, with numbers, in ``benchmarks/rl2/README.md``.

:class:`RL2Learner` implements :class:`metarl.MetaLearner` with ``adaptation_unit = "episode"``;
training, checkpoints and logs are in :mod:`metarl.agents.rl2_train`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarl.agents.config_checks import (
    SAMPLERS,
    check_bool,
    check_int,
    check_real,
    check_sampler_options,
    check_str,
)
from metarl.agents.rl2_trials import TaskSampler, TrialInputs, TrialVecEnv
from metarl.evaluation import AdaptationUnit
from metarl.family import TaskFamily
from metarl.rollout import EpisodeBatch
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv

if TYPE_CHECKING:
    from metarl.agents.rl2_sampling import TrialSampler

__all__ = [
    "RL2",
    "SAMPLERS",
    "RL2ActorCritic",
    "RL2Config",
    "RL2Learner",
    "RL2Policy",
    "TrialBatch",
    "aux_reward_loss",
    "cli_train",
    "collect_trials",
    "load_learner",
    "ppo_loss",
    "trial_gae",
]

VecEnv = BatchedTaskVectorEnv | SyncTaskVectorEnv


@dataclass(frozen=True)
class RL2Config:
    """Everything that defines an RL² run; saved as ``config.json`` beside the checkpoints."""

    #: Registered family id, e.g. ``"BernoulliBandit-v0"``.
    family: str = "Navigation2D-v0"
    #: Keyword arguments for ``make_family`` (number of arms, horizon, split sizes, ...).
    family_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``N``: episodes of the same task per trial (pulls, for a one-pull-per-episode bandit);
    #: ``None`` takes the family's ``episodes_per_trial`` (bandit ``n_pulls``, MDP ``n_episodes``).
    episodes_per_trial: int | None = None
    #: Trials run side by side per update (one vector-env sub-env each).
    trials_per_update: int = 128
    #: ``"sample"``: fresh tasks from the distribution (held-out splits excluded); ``"train"``: the train split.
    task_source: Literal["sample", "train"] = "sample"
    #: GRU hidden units (Duan et al. used 256 for bandits and MDPs).
    hidden_size: int = 256
    #: Adam learning rate (at the start of training, when ``learning_rate_final`` is set).
    learning_rate: float = 3e-4
    #: Learning rate reached (linearly in environment steps) at ``total_env_steps``; ``None`` keeps
    #: ``learning_rate`` throughout. Annealing it, as the PPO papers' Atari and MuJoCo runs did,
    #: lets a long run settle instead of moving at full step size to the end.
    learning_rate_final: float | None = None
    #: Discount over the whole trial.
    gamma: float = 0.99
    #: GAE lambda (Duan et al. used 0.3 on bandits and MDPs).
    gae_lambda: float = 0.3
    #: PPO clipping range epsilon.
    clip_coef: float = 0.2
    #: PPO epochs over each batch of trials.
    ppo_epochs: int = 4
    #: Minibatches (of whole trials) per epoch.
    num_minibatches: int = 4
    #: Value-loss coefficient.
    vf_coef: float = 0.5
    #: Entropy-bonus coefficient at the start of training.
    ent_coef: float = 0.01
    #: Entropy coefficient reached (linearly) at the end of training; ``None`` keeps ``ent_coef``.
    ent_coef_final: float | None = None
    #: Gradient-norm clipping.
    max_grad_norm: float = 0.5
    #: Early stop of an update's PPO epochs (as in Stable-Baselines3): a minibatch whose approximate
    #: KL from the collecting policy exceeds ``1.5 * target_kl`` is not applied, and the update ends
    #: there. ``None``: always run all ``ppo_epochs``.
    target_kl: float | None = None
    #: Rewards are multiplied by this in the PPO targets (not in the policy inputs).
    reward_scale: float = 1.0
    #: Initial log standard deviation of Gaussian policies (in normalised action units).
    init_log_std: float = -0.5
    #: Learn the value in normalised units (PopArt, van Hasselt et al. 2016): the value head
    #: predicts ``(R - mu) / sigma`` with running statistics of the PPO returns, the value loss is
    #: measured in those units, and each statistics update rescales the head so that the value in
    #: return units is unchanged. Keeps the value loss, and its share of the clipped gradient norm
    #: of the shared GRU, of order one whatever the scale of a trial's return.
    value_norm: bool = False
    #: Give the value function its own GRU (same size, same inputs) instead of a head on the
    #: policy's. The policy's recurrent state is then shaped by the policy loss alone; the value
    #: loss cannot pull it (Andrychowicz et al. 2021, "What matters in on-policy RL", found separate
    #: networks better). Doubles the recurrent compute.
    separate_value: bool = False
    #: Weight of an auxiliary reward-prediction loss (0: off, the RL² of Duan et al.). A linear head
    #: on the policy GRU's state predicts, for each action, the reward that action would get now;
    #: the loss is the squared error of the taken action's prediction against the reward received
    #: (raw, not ``reward_scale``-d), back-propagated through the GRU over the whole trial. It asks
    #: the recurrent state to remember which actions paid what, which the policy gradient alone
    #: teaches slowly on the tabular MDP (``benchmarks/rl2/diagnose_mdp_policy.py``'s readout).
    #: Discrete action spaces only.
    aux_reward_coef: float = 0.0
    #: Tell the value function how much of the trial is left (``False``: the RL² of Duan et al.).
    #: With ``r = 1 - t / T`` at step ``t`` of a trial of at most ``T`` steps, the value is
    #: ``v(h) + r * u(h)``: a second linear head ``u`` on the value's GRU state, initialised to
    #: zero, so a warm start from a run without it begins with that run's values. The policy's
    #: inputs are unchanged (it still has no clock); only the critic learns that the reward still
    #: to come scales with the steps left, which a GRU has to count otherwise (Pardo et al. 2018,
    #: "Time limits in reinforcement learning"). Its errors would bias GAE's advantages.
    value_time: bool = False
    #: Give the policy a clock (``False``: the RL² of Duan et al., whose inputs are the observation,
    #: previous action, reward and done flag only). The GRU's input gets one more entry,
    #: ``1 - t / T`` at step ``t`` of a trial, with ``T`` the bound on a trial's steps,
    #: ``episodes_per_trial * max_episode_steps`` (Pardo et al. 2018, "Time limits in reinforcement
    #: learning"). It is the fraction of the trial left where episodes run to their step limit (the
    #: tabular MDP); a bandit's one-pull episodes use one step of their limit of two, so there it runs
    #: from 1 to 1/2. In meta-testing ``T`` is that bound for the family being tested, so a model
    #: reads the same clock on longer trials. A warm start from a run without it adds the input with
    #: zero weights, so the run starts from that run's policy.
    policy_time: bool = False
    #: Tell the value function the task (``False``: the RL² of Duan et al.): a privileged critic
    #: (asymmetric actor-critic, Pinto et al. 2018) for training. The value head reads
    #: ``tanh(W [h, f] + b)`` instead of ``h``, with ``f`` the trial's :meth:`metarl.Task.vector` (a
    #: bandit's arm means; a tabular MDP's reward means and transitions). The policy never sees ``f``,
    #: so acting and meta-testing are unchanged, and the policy gradient stays unbiased: the value is
    #: a baseline that does not depend on the action, and ``E[r_t + V(h_{t+1}, f) | h_t, a_t]`` over
    #: the posterior of the task given ``h_t`` is ``Q(h_t, a_t)``, at every GAE lambda (a test checks
    #: it by enumerating every trial of a two-task bandit). Exact values give about the same variance
    #: either way; what changes is what the critic has to learn. ``V(h)`` must infer the task from the
    #: history, which the GRU does slowly and GAE's advantages inherit as bias; ``V(h, f)`` is told it
    #: (e.g. a bandit's best arm, so the value of a pull that found it shows in the TD error). Values
    #: are recomputed with ``f`` after each batch is collected (the collecting workers need not know the
    #: tasks). Trials must be of one family (one length of ``f``).
    value_task: bool = False
    #: Give the policy the previous observation too (``False``: the RL² of Duan et al., whose
    #: inputs are the observation, previous action, reward and done flag only). Each input row
    #: then ends with the observation the previous action was taken in (one-hot if discrete; zeros
    #: at a trial's first step), so it holds a whole transition ``(s, a, r, s')``. On a tabular MDP a
    #: reward belongs to a state-action pair; without this input the GRU can file it only by
    #: recalling the previous state from its own memory, which ``diagnose_mdp_policy.py``'s readout
    #: found weak. Inference networks of later context-based methods (PEARL, VariBAD) read whole
    #: transitions too. A bandit's observation is constant, so there it adds nothing.
    prev_obs: bool = False
    #: Give the policy the previous reward filed under its state-action pair (``False``: the RL² of
    #: Duan et al.). Needs ``prev_obs`` and ``Discrete`` observation and action spaces (``S`` states,
    #: ``A`` actions). The GRUs then read ``2 S A`` more entries, computed in the network from the
    #: row's previous observation ``s``, previous action ``a`` and previous reward ``r``: the one-hot
    #: of the pair ``(s, a)``, then that one-hot times ``r``. They hold nothing the row does not
    #: (the same three entries, multiplied), but the GRU's input layer is linear, so without them a
    #: reward reaches a per-pair memory only through gates that must learn to combine ``s`` and
    #: ``a``. On the tabular MDP a known task's best policy gains little from planning over
    #: transitions (21.9 per episode against 21.7 for acting on the true mean rewards alone, on the
    #: test tasks: ``benchmarks/rl2/known_mdp_values.py``), so what a policy must remember is which
    #: action paid what in each state; session 14's readout found the trained GRUs hold little of
    #: that (``benchmarks/rl2/README.md``). With :attr:`obs_head` they made the MDP policies learn
    #: several times faster (session 34); alone they did not. A warm start from a run without these
    #: entries gives them zero weights.
    pair_inputs: bool = False
    #: Give the policy one output layer per observation (``False``: the RL² of Duan et al., one
    #: linear head on the GRU state). ``Discrete`` observation and action spaces only: the logits
    #: are ``W h + b + W_s h + b_s`` with ``s`` the current observation, and ``W_s, b_s`` start at
    #: zero, so a warm start from a run without them begins with that run's policy. A linear head
    #: cannot pick out of the GRU state what concerns the current state alone (which is what a
    #: tabular MDP's actions depend on: which action paid what *here*); ``W_s`` can, for ``S`` times
    #: the head's parameters. The value head is unchanged. Alone it did not change how fast the MDP
    #: policies learn; with :attr:`pair_inputs` it did (session 34, ``benchmarks/rl2/README.md``).
    obs_head: bool = False
    #: The reward the PPO targets are computed from. ``"sampled"``: the reward received (the RL² of
    #: Duan et al.). ``"expected"``: the env's ``info["expected_reward"]``, the mean of that reward
    #: given the task, state and action (the pulled arm's ``p``, the MDP's ``mu[s, a]``). The policy
    #: still sees, and acts on, the sampled rewards; only the returns, advantages and value targets
    #: change. The policy gradient stays unbiased: for ``s >= t`` the expectation of
    #: ``grad log pi(a_t | h_t) * r_s`` equals that of ``grad log pi(a_t | h_t) * E[r_s | task, h_s, a_s]``
    #: (condition on ``(task, h_s, a_s)``, which fixes the score term), while the reward noise (a
    #: Bernoulli's ``p (1 - p)``, the MDP's unit-variance Gaussian) leaves the return. This uses the
    #: task's parameters in training (as a privileged critic does); evaluation is unchanged. The
    #: family must report ``expected_reward`` in its step info (bandits and tabular MDPs do).
    reward_signal: Literal["sampled", "expected"] = "sampled"
    #: Training length in environment steps (padding steps not counted).
    total_env_steps: int = 1_000_000
    #: Seed of every random stream of the run.
    seed: int = 0
    #: Vector env backend.
    backend: str = "auto"
    #: Where trials are collected. ``"local"``: one vector env in this process, one
    #: ``torch.Generator`` for the actions of all trials (the original behaviour; runs and
    #: checkpoints are unchanged). ``"ray"``: a ``metarl.samplers.RaySampler`` splits the trials over
    #: ``ray_workers`` Ray actors, each running the GRU policy on its share from the weights broadcast
    #: every update; a dead worker is replaced and its share re-collected. ``"local-per-task"``: the
    #: same collection in this process. Both seed trial ``k``'s resets and actions from the update's
    #: seed and ``k`` only, so ``"ray"`` and ``"local-per-task"`` train to bit-identical parameters
    #: for any number of workers (``metarl.agents.rl2_sampling``); they draw other trials than
    #: ``"local"`` (same distribution).
    sampler: str = "local"
    #: With ``sampler="ray"``: the cluster to connect to (``"auto"``, ``"ray://host:10001"``,
    #: ``"host:6379"``); ``None`` starts a local Ray instance unless Ray is already initialised.
    ray_address: str | None = None
    #: With ``sampler="ray"``: rollout actors; the trials of an update are split into this many shares.
    ray_workers: int = 2
    #: With ``sampler="ray"``: CPUs each rollout actor reserves (its scheduling weight).
    ray_cpus_per_worker: float = 1.0
    #: Checkpoint every this many updates.
    checkpoint_every: int = 10
    #: Checkpoints kept on disk.
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        # types first, so the range checks below compare numbers (JSON and TOML give any type)
        own = "RL2Config"
        for name in ("family", "task_source", "backend", "reward_signal"):
            check_str(own, name, getattr(self, name))
        check_bool(own, "value_norm", self.value_norm)
        check_bool(own, "separate_value", self.separate_value)
        check_bool(own, "value_time", self.value_time)
        check_bool(own, "policy_time", self.policy_time)
        check_bool(own, "value_task", self.value_task)
        check_bool(own, "prev_obs", self.prev_obs)
        check_bool(own, "pair_inputs", self.pair_inputs)
        check_bool(own, "obs_head", self.obs_head)
        if self.pair_inputs and not self.prev_obs:
            raise ValueError(
                "RL2Config.pair_inputs=True needs prev_obs=True (the pair is the previous observation "
                "and the previous action)"
            )
        check_sampler_options(own, self)
        if not isinstance(self.family_kwargs, dict) or not all(
            isinstance(k, str) for k in self.family_kwargs
        ):
            raise ValueError(
                f"{own}.family_kwargs must be a table of keyword arguments, got {self.family_kwargs!r}"
            )
        for name in ("learning_rate", "gamma", "gae_lambda", "clip_coef", "vf_coef", "ent_coef", "max_grad_norm",
                     "reward_scale", "init_log_std", "aux_reward_coef"):  # fmt: skip
            check_real(own, name, getattr(self, name))
        if not self.aux_reward_coef >= 0:
            raise ValueError(f"RL2Config.aux_reward_coef must be >= 0, got {self.aux_reward_coef!r}")
        check_real(own, "ent_coef_final", self.ent_coef_final, optional=True)
        check_real(own, "learning_rate_final", self.learning_rate_final, optional=True)
        if self.learning_rate_final is not None and not self.learning_rate_final >= 0:
            raise ValueError(
                f"RL2Config.learning_rate_final must be >= 0 or None, got {self.learning_rate_final!r}"
            )
        check_real(own, "target_kl", self.target_kl, optional=True)
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"RL2Config.target_kl must be positive or None, got {self.target_kl!r}")
        check_int(own, "seed", self.seed, minimum=0)
        ints = ("trials_per_update", "hidden_size", "ppo_epochs", "num_minibatches")
        for name in (*ints, "total_env_steps", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RL2Config.{name} must be a positive int, got {value!r}")
        n = self.episodes_per_trial
        if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
            raise ValueError(f"RL2Config.episodes_per_trial must be a positive int or None, got {n!r}")
        if self.num_minibatches > self.trials_per_update:
            raise ValueError(
                f"RL2Config.num_minibatches={self.num_minibatches} exceeds "
                f"trials_per_update={self.trials_per_update}"
            )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"RL2Config.{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("learning_rate", "clip_coef", "max_grad_norm", "reward_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RL2Config.{name} must be positive, got {getattr(self, name)!r}")
        if self.reward_signal not in ("sampled", "expected"):
            raise ValueError(
                f"RL2Config.reward_signal must be 'sampled' or 'expected', got {self.reward_signal!r}"
            )
        if self.task_source not in ("sample", "train"):
            raise ValueError(f"RL2Config.task_source must be 'sample' or 'train', got {self.task_source!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"RL2Config.seed must be a non-negative int, got {self.seed!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> RL2Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown RL2 config keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> RL2Config:
        return RL2Config.from_dict({**asdict(self), **changes}, source="RL2Config.replace")

    def make_family(self) -> TaskFamily:
        from metarl.registry import make_family

        return make_family(self.family, **self.family_kwargs)

    def resolve_episodes_per_trial(self, family: TaskFamily) -> int:
        """``N`` for ``family``: the config's value, else the family's ``episodes_per_trial``."""
        own = getattr(family, "episodes_per_trial", None)
        if self.episodes_per_trial is None:
            if own is None:
                raise ValueError(
                    f"{family.id} defines no episodes_per_trial; set RL2Config.episodes_per_trial"
                )
            return int(own)
        if own is not None and int(own) != self.episodes_per_trial:
            raise ValueError(
                f"RL2Config.episodes_per_trial={self.episodes_per_trial} disagrees with {family.id}'s "
                f"episodes_per_trial={own}; set it through family_kwargs instead"
            )
        return int(self.episodes_per_trial)


# --------------------------------------------------------------------------------- network
#: Per-update decay of the value normalisation's moving averages (a time constant of 100 updates).
VALUE_NORM_DECAY = 0.99
#: Floor of the returns' variance in the value normalisation (sigma >= 1e-4, PopArt's lower bound).
VALUE_NORM_MIN_VAR = 1e-8


class RL2ActorCritic(nn.Module):
    """A GRU over RL² inputs with a policy head and a value head on its hidden state (or, with
    ``separate_value``, a second GRU of its own under the value head).

    The recurrent state is ``(1, B, hidden_size)``, or ``(1, B, 2 * hidden_size)`` with
    ``separate_value``: the policy GRU's state, then the value GRU's.

    With ``value_horizon=T`` the value at trial step ``t`` is ``v(h) + (1 - t / T) * u(h)``
    (:attr:`RL2Config.value_time`); ``u`` starts at zero. With ``time_horizon=T`` the GRUs read
    ``1 - t / T`` after the ``input_dim`` entries of ``x`` (:attr:`RL2Config.policy_time`), so their
    input size is ``input_dim + 1``.

    Discrete actions: categorical logits. Box actions: a diagonal Gaussian in normalised units with
    a state-independent log standard deviation. Parameters are initialised from ``generator`` only.
    """

    # buffers of the value normalisation (registered only with ``value_norm=True``)
    return_m1: torch.Tensor
    return_m2: torch.Tensor
    return_weight: torch.Tensor

    def __init__(
        self,
        input_dim: int,
        act_dim: int,
        *,
        discrete: bool,
        hidden_size: int,
        init_log_std: float = -0.5,
        value_norm: bool = False,
        separate_value: bool = False,
        aux_reward: bool = False,
        value_horizon: int | None = None,
        time_horizon: int | None = None,
        task_dim: int = 0,
        pair_dims: tuple[int, int] | None = None,
        obs_head: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if aux_reward and not discrete:
            raise ValueError("the auxiliary reward head (aux_reward) needs a discrete action space")
        for name, horizon in (("value_horizon", value_horizon), ("time_horizon", time_horizon)):
            if horizon is not None and not (isinstance(horizon, int) and horizon >= 1):
                raise ValueError(f"{name} must be a positive int (a trial's steps) or None, got {horizon!r}")
        if not (isinstance(task_dim, int) and task_dim >= 0):
            raise ValueError(f"task_dim must be a non-negative int (0: no task input), got {task_dim!r}")
        self.discrete = discrete
        self.hidden_size = hidden_size
        self.value_norm = value_norm
        self.separate_value = separate_value
        if value_norm:
            # debiased exponential moving averages of the returns' first and second moments, and
            # the total weight of the averages (0: no statistics yet, the head is in return units)
            self.register_buffer("return_m1", torch.zeros((), dtype=torch.float64))
            self.register_buffer("return_m2", torch.zeros((), dtype=torch.float64))
            self.register_buffer("return_weight", torch.zeros((), dtype=torch.float64))
        #: Size of the RL² inputs ``x`` (the GRUs read one more entry with ``time_horizon``).
        self.input_dim = input_dim
        #: With :attr:`RL2Config.policy_time`: the trial length ``T`` of the clock input ``1 - t / T``.
        self.time_horizon = time_horizon
        #: With :attr:`RL2Config.pair_inputs`: ``(S, A)``, the sizes of the discrete observation and
        #: action of rows laid out ``[obs (S) | prev action (A) | reward | done | prev obs (S)]``.
        self.pair_dims = pair_dims
        n_pair = 0
        if pair_dims is not None:
            n_states, n_actions = pair_dims
            if (
                not all(isinstance(n, int) and n >= 1 for n in pair_dims)
                or input_dim != 2 * n_states + n_actions + 2
            ):
                raise ValueError(
                    f"pair_dims must be (n_states, n_actions) of rows [obs | prev action | reward | done | "
                    f"prev obs] ({input_dim} entries here), got {pair_dims!r}"
                )
            n_pair = 2 * n_states * n_actions
        gru_in = input_dim + n_pair + (1 if time_horizon is not None else 0)
        self.gru = nn.GRU(gru_in, hidden_size, batch_first=True)
        self.v_gru = nn.GRU(gru_in, hidden_size, batch_first=True) if separate_value else None
        self.pi = nn.Linear(hidden_size, act_dim)
        self.v = nn.Linear(hidden_size, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)), requires_grad=not discrete)
        bound = hidden_size**-0.5  # PyTorch's own GRU initialisation, drawn from our generator
        for gru in [g for g in (self.gru, self.v_gru) if g is not None]:
            for name, p in gru.named_parameters():
                if "weight" in name:
                    nn.init.uniform_(p, -bound, bound, generator=generator)
                else:
                    nn.init.zeros_(p)
        # Small policy-head gain so the first policy is near uniform (Andrychowicz et al. 2021, "What
        # matters in on-policy RL", C57).
        nn.init.orthogonal_(self.pi.weight, gain=0.01, generator=generator)
        nn.init.orthogonal_(self.v.weight, gain=1.0, generator=generator)
        nn.init.zeros_(self.pi.bias)
        nn.init.zeros_(self.v.bias)
        #: With ``aux_reward``: predicts each action's reward from the policy GRU's state (made last,
        #: so the other parameters draw the same numbers from ``generator`` with or without it).
        self.aux = nn.Linear(hidden_size, act_dim) if aux_reward else None
        if self.aux is not None:
            nn.init.orthogonal_(self.aux.weight, gain=1.0, generator=generator)
            nn.init.zeros_(self.aux.bias)
        #: With ``obs_head=S`` (:attr:`RL2Config.obs_head`): one more policy head per observation,
        #: selected by the one-hot observation in the first ``S`` input entries (zero at first: no draws).
        self.obs_head = obs_head
        self.pi_obs = nn.Linear(hidden_size, obs_head * act_dim) if obs_head is not None else None
        if self.pi_obs is not None:
            if not (discrete and isinstance(obs_head, int) and 1 <= obs_head <= input_dim):
                raise ValueError(
                    f"obs_head must be the number of a discrete observation's values, with discrete "
                    f"actions, got {obs_head!r} (discrete actions: {discrete})"
                )
            nn.init.zeros_(self.pi_obs.weight)
            nn.init.zeros_(self.pi_obs.bias)
        #: With ``value_horizon``: the value's time-left head ``u`` (zero at first: no draws).
        self.value_horizon = value_horizon
        self.v_time = nn.Linear(hidden_size, 1) if value_horizon is not None else None
        if self.v_time is not None:
            nn.init.zeros_(self.v_time.weight)
            nn.init.zeros_(self.v_time.bias)
        #: With ``task_dim > 0`` (:attr:`RL2Config.value_task`): the layer that mixes the task's
        #: features into the value's input (made last: the other parameters draw as without it).
        self.task_dim = task_dim
        self.v_task = nn.Linear(hidden_size + task_dim, hidden_size) if task_dim else None
        if self.v_task is not None:
            nn.init.orthogonal_(self.v_task.weight, gain=1.0, generator=generator)
            nn.init.zeros_(self.v_task.bias)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(1, batch, self.hidden_size * (2 if self.separate_value else 1))

    def forward(
        self,
        x: torch.Tensor,
        h0: torch.Tensor | None = None,
        t0: int | torch.Tensor = 0,
        horizon: int | None = None,
        task: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x``: ``(B, T, input_dim)`` -> (policy params ``(B, T, act_dim)``, values ``(B, T)``, ``h_T``).

        Values are in return units, also with ``value_norm`` (the head's output de-normalised).
        ``t0``: the trial step of ``x[:, 0]``, one for all rows or a ``(B,)`` integer tensor (used
        with ``value_horizon`` and ``time_horizon`` only). ``horizon``: the step bound the clock
        input counts down over, when it differs from ``time_horizon`` (trials longer than in training).
        ``task``: ``(B, task_dim)``, each row's task features, for a model with ``task_dim > 0``;
        without them such a model's values are NaN (acting needs only the policy).
        """
        params, values, h, _ = self.forward_with_aux(x, h0, t0, horizon, task)
        return params, values, h

    @staticmethod
    def _steps(t0: int | torch.Tensor, batch: int, length: int, dtype: torch.dtype) -> torch.Tensor:
        """``(B, T)`` trial steps of the rows of a ``(B, T, ...)`` input starting at ``t0``."""
        start = torch.as_tensor(t0, dtype=dtype).reshape(-1, 1)
        return (start + torch.arange(length, dtype=dtype)).expand(batch, length)

    def forward_with_aux(
        self,
        x: torch.Tensor,
        h0: torch.Tensor | None = None,
        t0: int | torch.Tensor = 0,
        horizon: int | None = None,
        task: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As :meth:`forward`, plus the auxiliary head's reward predictions ``(B, T, act_dim)``
        (``None`` without one), from the same pass of the GRU."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"RL² inputs have {x.shape[-1]} entries per step, the model expects {self.input_dim}"
            )
        obs = x[..., : self.obs_head] if self.obs_head is not None else None
        if self.pair_dims is not None:
            x = torch.cat([x, self.pair_features(x)], dim=-1)
        if self.time_horizon is not None:
            T = int(horizon if horizon is not None else self.time_horizon)
            left = 1.0 - self._steps(t0, x.shape[0], x.shape[1], x.dtype) / T
            x = torch.cat([x, left.unsqueeze(-1)], dim=-1)
        if self.v_gru is None:
            out, h = self.gru(x, h0)
            v_out = out
        else:
            hp, hv = (None, None) if h0 is None else h0.split(self.hidden_size, dim=-1)
            out, hp = self.gru(x, None if hp is None else hp.contiguous())
            v_out, hv = self.v_gru(x, None if hv is None else hv.contiguous())
            h = torch.cat([hp, hv], dim=-1)
        if self.v_task is not None:
            if task is None:  # acting only: there is no value without the task
                v_out = torch.full_like(v_out, float("nan"))
            else:
                if task.shape != (x.shape[0], self.task_dim):
                    raise ValueError(
                        f"task features must have shape {(x.shape[0], self.task_dim)} (batch, task_dim), "
                        f"got {tuple(task.shape)}"
                    )
                f = task.to(v_out.dtype)[:, None].expand(-1, x.shape[1], -1)
                v_out = torch.tanh(self.v_task(torch.cat([v_out, f], dim=-1)))
        elif task is not None:
            raise ValueError("task features given to a model without a task input (task_dim=0)")
        values = self.v(v_out).squeeze(-1)
        if self.v_time is not None and self.value_horizon is not None:
            left = 1.0 - self._steps(t0, x.shape[0], x.shape[1], values.dtype) / self.value_horizon
            values = values + left * self.v_time(v_out).squeeze(-1)
        if self.value_norm:
            mean, std = self.return_stats()
            values = values * std + mean
        params = self.pi(out)
        if self.pi_obs is not None and obs is not None:  # the current observation's own head
            per_obs = self.pi_obs(out).unflatten(-1, (obs.shape[-1], params.shape[-1]))
            params = params + (obs.unsqueeze(-1) * per_obs).sum(-2)
        return params, values, h, None if self.aux is None else self.aux(out)

    def pair_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., 2 S A)`` entries :attr:`RL2Config.pair_inputs` adds to rows ``x``: the one-hot of
        (previous observation, previous action), index ``s * A + a``, then that one-hot times the
        previous reward (all zero at a trial's first step, where both one-hots are zero)."""
        if self.pair_dims is None:
            raise RuntimeError("pair_features needs a model built with pair_dims")
        n_states, n_actions = self.pair_dims
        action = x[..., n_states : n_states + n_actions]
        reward = x[..., n_states + n_actions : n_states + n_actions + 1]
        prev = x[..., -n_states:]
        pair = (prev.unsqueeze(-1) * action.unsqueeze(-2)).flatten(-2)
        return torch.cat([pair, pair * reward], dim=-1)

    def return_stats(self) -> tuple[float, float]:
        """``(mu, sigma)`` of the value normalisation; ``(0, 1)`` without ``value_norm`` or statistics."""
        if not self.value_norm or float(self.return_weight) == 0.0:
            return 0.0, 1.0
        w = float(self.return_weight)
        mean = float(self.return_m1) / w
        var = max(float(self.return_m2) / w - mean * mean, VALUE_NORM_MIN_VAR)
        return mean, var**0.5

    @torch.no_grad()
    def update_return_stats(self, returns: torch.Tensor, mask: torch.Tensor) -> None:
        """Fold the masked ``returns`` of a batch into the value normalisation's statistics and
        rescale the value head so its output in return units is unchanged (PopArt's "preserve
        outputs": ``w' = w sigma / sigma'``, ``b' = (sigma b + mu - mu') / sigma'``)."""
        if not self.value_norm:
            raise RuntimeError("update_return_stats needs a model built with value_norm=True")
        m = mask.to(torch.float64)
        n = float(m.sum())
        if n == 0.0:
            return
        r = returns.to(torch.float64) * m
        old_mean, old_std = self.return_stats()
        d = VALUE_NORM_DECAY
        self.return_m1.mul_(d).add_((1 - d) * r.sum() / n)
        self.return_m2.mul_(d).add_((1 - d) * (r * r).sum() / n)
        self.return_weight.mul_(d).add_(1 - d)
        new_mean, new_std = self.return_stats()
        self.v.weight.mul_(old_std / new_std)
        self.v.bias.mul_(old_std).add_(old_mean - new_mean).div_(new_std)
        if self.v_time is not None:  # the time-left term is a scale: no shift
            self.v_time.weight.mul_(old_std / new_std)
            self.v_time.bias.mul_(old_std / new_std)

    def distribution(self, params: torch.Tensor) -> torch.distributions.Distribution:
        if self.discrete:
            return torch.distributions.Categorical(logits=params)
        return torch.distributions.Independent(torch.distributions.Normal(params, self.log_std.exp()), 1)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator, deterministic: bool = False
    ) -> torch.Tensor:
        """Draw actions from ``generator`` only (``torch.distributions`` would use the global RNG)."""
        if self.discrete:
            if deterministic:
                return params.argmax(-1)
            probs = torch.softmax(params, -1).reshape(-1, params.shape[-1])
            return torch.multinomial(probs, 1, generator=generator).reshape(params.shape[:-1])
        if deterministic:
            return params
        noise = torch.randn(params.shape, generator=generator)
        return params + self.log_std.exp() * noise


# --------------------------------------------------------------------------------- rollouts
class TrialBatch(NamedTuple):
    """A batch of ``B`` trials padded to ``T`` steps (``mask`` false on padding)."""

    inputs: torch.Tensor  # (B, T, input_dim)
    actions: torch.Tensor  # (B, T) long, or (B, T, act_dim)
    log_probs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T)
    rewards: torch.Tensor  # (B, T) float32, raw
    episode_done: torch.Tensor  # (B, T) bool
    mask: torch.Tensor  # (B, T) bool
    expected_rewards: torch.Tensor  # (B, T) float32, the env's info["expected_reward"]; NaN if not reported

    @property
    def trial_returns(self) -> torch.Tensor:
        """Undiscounted return of each trial, ``(B,)``."""
        return (self.rewards * self.mask).sum(1)

    @property
    def env_steps(self) -> int:
        return int(self.mask.sum())

    def episode_returns(self, episodes_per_trial: int) -> torch.Tensor:
        """``(B, N)``: the return of each episode of each trial."""
        index = (torch.cumsum(self.episode_done.long(), 1) - self.episode_done.long()).clamp(
            max=episodes_per_trial - 1
        )
        out = torch.zeros(self.rewards.shape[0], episodes_per_trial)
        return out.scatter_add_(1, index, self.rewards * self.mask)


@torch.no_grad()
def collect_trials(
    model: RL2ActorCritic,
    env: TrialVecEnv,
    tasks: list[Any],
    *,
    seed: int,
    generator: torch.Generator,
    deterministic: bool = False,
) -> TrialBatch:
    """Run one trial per sub-env of ``env`` (sub-env ``i`` on ``tasks[i]``) until all have ended."""
    h = model.initial_state(env.num_trials)

    def act(t: int, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nonlocal h
        params, value, h = model(xt[:, None], h, t)
        params, value = params[:, 0], value[:, 0]
        action = model.sample(params, generator, deterministic)
        return action, model.distribution(params).log_prob(action), value

    return run_trials(env, env.reset(tasks, seed=seed), act)


#: ``act(t, inputs) -> (actions, log_probs, values)`` for the trials' step ``t``.
TrialActFn = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def run_trials(env: TrialVecEnv, x: np.ndarray, act: TrialActFn) -> TrialBatch:
    """Step ``env`` from its reset inputs ``x`` with ``act`` until every trial has ended, recording
    each step into a :class:`TrialBatch` (trial-major, one column per step)."""
    cols: dict[str, list[Any]] = {k: [] for k in TrialBatch._fields}
    for t in range(env.max_trial_steps):
        xt = torch.from_numpy(x)
        action, log_prob, value = act(t, xt)
        step = env.step(action.numpy())
        for key, val in (
            ("inputs", xt),
            ("actions", action),
            ("log_probs", log_prob),
            ("values", value),
            ("rewards", torch.from_numpy(step.rewards).float()),
            ("episode_done", torch.from_numpy(step.episode_done)),
            ("mask", torch.from_numpy(step.active)),
            ("expected_rewards", torch.from_numpy(step.expected_rewards).float()),
        ):
            cols[key].append(val)
        x = step.inputs
        if step.trial_done.all():
            break
    else:
        raise RuntimeError("trials did not end within episodes_per_trial * max_episode_steps steps")
    return TrialBatch(**{k: torch.stack(v, 1) for k, v in cols.items()})


# --------------------------------------------------------------------------------- mathematics
def trial_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over whole trials.

    ``rewards``, ``values``, ``mask``: ``(B, T)``; ``mask`` is true on each trial's steps (a
    prefix of every row). The recursion runs straight through episode boundaries inside a trial
    and stops at the trial's end, where the value is 0. Returns ``(advantages, returns)``, zero on
    padding, with ``returns = advantages + values``.
    """
    m = mask.to(values.dtype)
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    T = values.shape[1]
    for t in reversed(range(T)):
        m_next = m[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        v_next = values[:, t + 1] * m_next if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * v_next - values[:, t]
        last = (delta + gamma * lam * m_next * last) * m[:, t]
        adv[:, t] = last
    return adv, (adv + values) * m


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def ppo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) + value error - entropy bonus.

    ``loss = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + vf_coef * 0.5 E[(V - R)^2] - ent_coef * E[H]``
    with ``r = exp(new_log_prob - old_log_prob)``; every expectation is a mean over ``mask``.
    """
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages)
    pg_loss = -_masked_mean(surrogate, mask)
    v_loss = 0.5 * _masked_mean((new_values - returns) ** 2, mask)
    ent = _masked_mean(entropy, mask)
    loss = pg_loss + vf_coef * v_loss - ent_coef * ent
    with torch.no_grad():
        stats = {
            "pg_loss": float(pg_loss),
            "v_loss": float(v_loss),
            "entropy": float(ent),
            "approx_kl": float(_masked_mean((ratio - 1.0) - log_ratio, mask)),
            "clip_frac": float(_masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask)),
        }
    return loss, stats


def aux_reward_loss(
    predictions: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over ``mask`` of ``(predictions[..., a_t] - r_t)^2``: the squared error of the taken
    action's predicted reward (``predictions``: ``(B, T, n_actions)``; ``actions``, ``rewards``: ``(B, T)``)."""
    taken = predictions.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return _masked_mean((taken - rewards) ** 2, mask)


# --------------------------------------------------------------------------------- the agent
def build_model(
    config: RL2Config,
    inputs: TrialInputs,
    generator: torch.Generator,
    max_trial_steps: int,
    task_dim: int = 0,
) -> RL2ActorCritic:
    return RL2ActorCritic(
        inputs.input_dim,
        inputs.act_dim,
        discrete=inputs.act_discrete,
        hidden_size=config.hidden_size,
        init_log_std=config.init_log_std,
        value_norm=config.value_norm,
        separate_value=config.separate_value,
        aux_reward=config.aux_reward_coef > 0,
        value_horizon=int(max_trial_steps) if config.value_time else None,
        time_horizon=int(max_trial_steps) if config.policy_time else None,
        task_dim=task_dim if config.value_task else 0,
        pair_dims=_discrete_sizes("pair_inputs", inputs) if config.pair_inputs else None,
        obs_head=_discrete_sizes("obs_head", inputs)[0] if config.obs_head else None,
        generator=generator,
    )


def _discrete_sizes(option: str, inputs: TrialInputs) -> tuple[int, int]:
    """``(S, A)``, the sizes of ``inputs``' discrete observation and action, for the config option
    ``option`` that needs them; a ``ValueError`` naming it when a space is not ``Discrete``."""
    if not (inputs.obs_discrete and inputs.act_discrete):
        raise ValueError(
            f"RL2Config.{option}=True needs Discrete observation and action spaces, got "
            f"{inputs.observation_space} and {inputs.action_space}"
        )
    return inputs.obs_dim, inputs.act_dim


class RL2:
    """An RL² training run: model, optimiser, trial env, task sampler and every RNG stream.

    Args:
        config: the run's :class:`RL2Config`.
        family: the task family; built from ``config`` when omitted.
        trial_sampler: collect trials with this :class:`~metarl.agents.rl2_sampling.TrialSampler`
            (e.g. on a Ray cluster set up by the caller, who closes it) instead of the one
            ``config.sampler`` names; ``None``: with ``sampler="local"`` a vector env of this
            process (:attr:`env`), otherwise a sampler made on the first :meth:`train_step`
            (loading a run for evaluation starts no Ray workers) and stopped by :meth:`close_sampler`.
    """

    def __init__(
        self,
        config: RL2Config,
        family: TaskFamily | None = None,
        *,
        trial_sampler: TrialSampler | None = None,
    ) -> None:
        self.config = config
        self.family = family if family is not None else config.make_family()
        self.episodes_per_trial = config.resolve_episodes_per_trial(self.family)
        #: The in-process trial env of ``sampler="local"`` (``None`` with a trial sampler).
        self.env: TrialVecEnv | None = None
        self.trial_sampler = trial_sampler
        self._owns_trial_sampler = False
        if trial_sampler is not None and trial_sampler.prev_obs != config.prev_obs:
            raise ValueError(
                f"the trial sampler was made with prev_obs={trial_sampler.prev_obs}, the config has "
                f"prev_obs={config.prev_obs}; make it with TrialSampler(..., prev_obs={config.prev_obs})"
            )
        if config.sampler == "local" and trial_sampler is None:
            self.env = TrialVecEnv(
                self.family, config.trials_per_update, self.episodes_per_trial, backend=config.backend,
                prev_obs=config.prev_obs,
            )  # fmt: skip
            self.inputs = self.env.inputs
        else:
            probe = self.family.make_env()
            self.inputs = TrialInputs(probe.observation_space, probe.action_space, prev_obs=config.prev_obs)
            probe.close()
        #: Upper bound on a trial's length in steps.
        self.max_trial_steps = self.episodes_per_trial * self.family.max_episode_steps
        self.sampler = TaskSampler(self.family, config.task_source)
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        self.np_rng = np.random.default_rng(seeds[0])
        self.torch_gen = torch.Generator().manual_seed(int(seeds[1].generate_state(1, np.uint64)[0] >> 1))
        if config.aux_reward_coef > 0 and not self.inputs.act_discrete:
            raise ValueError(
                f"RL2Config.aux_reward_coef={config.aux_reward_coef} needs a discrete action space; "
                f"{self.family.id} acts in {self.inputs.action_space}"
            )
        # the length of a task's features, from a task drawn on a generator of its own (the run's
        # streams are not touched)
        task_dim = (
            len(self.family.sample(1, np.random.default_rng(0))[0].vector()) if config.value_task else 0
        )
        self.model = build_model(config, self.inputs, self.torch_gen, self.max_trial_steps, task_dim)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, eps=1e-5)
        self.updates = 0
        self.env_steps = 0
        self.train_seconds = 0.0
        #: Where the weights came from when the run was warm-started (:func:`~metarl.agents.rl2_train.train`'s
        #: ``init_from``): the source checkpoint's path, updates, env steps and training seconds.
        self.init_from: dict[str, Any] | None = None

    @property
    def steps_per_update_bound(self) -> int:
        """Most env steps one update can take: every trial of the batch at its full length."""
        return self.config.trials_per_update * self.max_trial_steps

    def _scheduled(self, start: float, final: float | None) -> float:
        """``start`` moved linearly towards ``final`` by the fraction of ``total_env_steps`` done
        (``start`` when ``final`` is ``None``)."""
        if final is None:
            return start
        frac = min(1.0, self.env_steps / self.config.total_env_steps)
        return start + frac * (final - start)

    def _ent_coef(self) -> float:
        return self._scheduled(self.config.ent_coef, self.config.ent_coef_final)

    def _learning_rate(self) -> float:
        return self._scheduled(self.config.learning_rate, self.config.learning_rate_final)

    def _signal_rewards(self, batch: TrialBatch) -> torch.Tensor:
        """The rewards the PPO targets use (``RL2Config.reward_signal``), zero on padding."""
        if self.config.reward_signal == "sampled":
            return batch.rewards
        expected = batch.expected_rewards
        if torch.isnan(expected[batch.mask]).any():
            raise ValueError(
                f"RL2Config.reward_signal='expected' needs info['expected_reward'] at every step; "
                f"{self.config.family} does not report it (use reward_signal='sampled')"
            )
        return torch.where(batch.mask, expected, torch.zeros((), dtype=expected.dtype))

    def train_step(self) -> dict[str, float]:
        """Collect one batch of trials and run the PPO epochs on it; return statistics."""
        c = self.config
        tasks = self.sampler(c.trials_per_update, self.np_rng)
        seed = int(self.np_rng.integers(2**31 - 1))
        if self.env is not None:
            batch = collect_trials(self.model, self.env, tasks, seed=seed, generator=self.torch_gen)
        else:
            batch = self._trial_sampler().collect(self.model, tasks, seed)
        task_x: torch.Tensor | None = None
        values = batch.values
        if c.value_task:  # the privileged critic's values, from the trials' tasks
            task_x = torch.as_tensor(np.stack([task.vector() for task in tasks]), dtype=torch.float32)
            with torch.no_grad():
                _, values, _, _ = self.model.forward_with_aux(batch.inputs, task=task_x)
        adv, returns = trial_gae(
            self._signal_rewards(batch) * c.reward_scale, values, batch.mask, c.gamma, c.gae_lambda
        )
        m = batch.mask
        if c.value_norm:
            self.model.update_return_stats(returns, m)
        v_mean, v_std = self.model.return_stats()  # the value loss is measured in these units
        returns_n = (returns - v_mean) / v_std if c.value_norm else returns
        mean = _masked_mean(adv, m)
        std = _masked_mean((adv - mean) ** 2, m).sqrt()
        adv_n = (adv - mean) / (std + 1e-8)
        ent_coef = self._ent_coef()
        lr = self._learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        B = c.trials_per_update
        stats: dict[str, float] = {}
        n_mb = 0
        stopped = False
        for _ in range(c.ppo_epochs):
            if stopped:
                break
            perm = torch.randperm(B, generator=self.torch_gen)
            for idx in perm.chunk(c.num_minibatches):
                params, values, _, predicted = self.model.forward_with_aux(
                    batch.inputs[idx], task=None if task_x is None else task_x[idx]
                )
                dist = self.model.distribution(params)
                loss, s = ppo_loss(
                    dist.log_prob(batch.actions[idx]),
                    batch.log_probs[idx],
                    adv_n[idx],
                    (values - v_mean) / v_std if c.value_norm else values,
                    returns_n[idx],
                    dist.entropy(),
                    m[idx],
                    clip_coef=c.clip_coef,
                    vf_coef=c.vf_coef,
                    ent_coef=ent_coef,
                )
                if n_mb and c.target_kl is not None and s["approx_kl"] > 1.5 * c.target_kl:
                    stopped = True
                    break
                if predicted is not None:
                    aux = aux_reward_loss(predicted, batch.actions[idx], batch.rewards[idx], m[idx])
                    loss = loss + c.aux_reward_coef * aux
                    s["aux_loss"] = float(aux.detach())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                s["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm))
                self.optimizer.step()
                for k, v in s.items():
                    stats[k] = stats.get(k, 0.0) + v
                n_mb += 1
        stats = {k: v / n_mb for k, v in stats.items()}
        self.updates += 1
        self.env_steps += batch.env_steps
        ep_returns = batch.episode_returns(self.episodes_per_trial).mean(0)
        stats.update(
            trial_return=float(batch.trial_returns.mean()),
            first_episode_return=float(ep_returns[0]),
            last_episode_return=float(ep_returns[-1]),
            ent_coef=ent_coef,
            learning_rate=lr,
        )
        return stats

    def _trial_sampler(self) -> TrialSampler:
        if self.trial_sampler is None:
            from metarl.agents.rl2_sampling import TrialSampler

            self.trial_sampler = TrialSampler.from_config(self.config, self.family, self.episodes_per_trial)
            self._owns_trial_sampler = True
        return self.trial_sampler

    def close_sampler(self) -> None:
        """Stop the trial sampler (its Ray workers) if this run made it; a later :meth:`train_step`
        makes a new one."""
        if self._owns_trial_sampler and self.trial_sampler is not None:
            self.trial_sampler.close()
            self.trial_sampler = None
            self._owns_trial_sampler = False

    def learner(self, *, deterministic: bool = False) -> RL2Learner:
        """The current policy as a :class:`metarl.MetaLearner`."""
        return RL2Learner(self.model, self.config, deterministic=deterministic)


# --------------------------------------------------------------------------------- meta-testing
class RL2Policy:
    """A :class:`metarl.StatefulPolicy`: keeps each sub-env's hidden state, previous action,
    reward and done flag and trial step, and leaves the state of inactive sub-envs untouched.

    ``horizon``: the bound on a trial's steps that the clock input of a model with
    ``time_horizon`` counts down over (``None``: the model's own).
    """

    def __init__(
        self,
        model: RL2ActorCritic,
        inputs: TrialInputs,
        num_envs: int,
        generator: torch.Generator,
        deterministic: bool,
        horizon: int | None = None,
    ) -> None:
        self.model, self.inputs, self.n = model, inputs, num_envs
        self.generator, self.deterministic = generator, deterministic
        self.horizon = horizon
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.hidden = model.initial_state(num_envs)
        self.prev_actions = np.zeros((num_envs, inputs.act_dim), dtype=np.float32)
        self.prev_rewards = np.zeros(num_envs)
        self.prev_dones = np.zeros(num_envs)
        #: With :attr:`TrialInputs.prev_obs`: the encoded observations the last actions were taken in.
        self.prev_obs = np.zeros((num_envs, inputs.obs_dim), dtype=np.float32) if inputs.prev_obs else None
        self._pending: tuple[torch.Tensor, np.ndarray, np.ndarray | None] | None = None

    @torch.no_grad()
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        x = self.inputs.build(
            observations, self.prev_actions, self.prev_rewards, self.prev_dones, self.prev_obs
        )
        params, _, h = self.model(
            torch.from_numpy(x)[:, None], self.hidden, torch.from_numpy(self.steps), self.horizon
        )
        action = self.model.sample(params[:, 0], self.generator, self.deterministic).numpy()
        acted_in = x[:, : self.inputs.obs_dim] if self.prev_obs is not None else None  # the encoded obs
        self._pending = (h, action, acted_in)
        return self.inputs.to_env(action)

    def observe(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        active: np.ndarray,
    ) -> None:
        if self._pending is None:
            raise RuntimeError("RL2Policy.observe() called before the policy acted")
        h, action, acted_in = self._pending
        self._pending = None
        a = np.asarray(active, dtype=bool)
        if self.prev_obs is not None and acted_in is not None:
            self.prev_obs[a] = acted_in[a]
        self.hidden[:, torch.from_numpy(a)] = h[:, torch.from_numpy(a)]
        self.steps[a] += 1
        self.prev_actions[a] = self.inputs.encode_action(action)[a]
        self.prev_rewards[a] = np.asarray(rewards, dtype=np.float64)[a]
        self.prev_dones[a] = (np.asarray(terminations, dtype=bool) | np.asarray(truncations, dtype=bool))[a]


class _RL2Adaptation:
    def __init__(self, policy: RL2Policy) -> None:
        self._policy = policy

    def policy(self) -> RL2Policy:
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:
        """Nothing to do: RL² adapts through its hidden state."""


class RL2Learner:
    """A trained RL² policy as a :class:`metarl.MetaLearner` (adapts through its hidden state).

    Every sub-env of the meta-test vector env is one trial: its hidden state starts at zero in
    :meth:`begin_adaptation` and persists across the evaluation rounds (episodes).
    """

    name = "RL2"
    adaptation_unit: AdaptationUnit = "episode"

    def __init__(self, model: RL2ActorCritic, config: RL2Config, *, deterministic: bool = False) -> None:
        self.model = model
        self.config = config
        self.deterministic = deterministic

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> _RL2Adaptation:
        inputs = TrialInputs(
            vec_env.single_observation_space, vec_env.single_action_space, prev_obs=self.config.prev_obs
        )
        expected = self.model.input_dim
        if inputs.input_dim != expected or isinstance(vec_env.single_action_space, gym.spaces.Discrete) != (
            self.model.discrete
        ):
            raise ValueError(
                f"this RL² policy was trained on {self.config.family} with input size {expected}; "
                f"{vec_env.family.id}'s spaces give input size {inputs.input_dim}"
            )
        gen = torch.Generator().manual_seed(int(seed))
        horizon = self.trial_steps(vec_env.family) if self.model.time_horizon is not None else None
        return _RL2Adaptation(
            RL2Policy(self.model, inputs, vec_env.num_envs, gen, self.deterministic, horizon)
        )

    def trial_steps(self, family: TaskFamily) -> int:
        """The bound on a trial's steps on ``family``: its episodes per trial
        (:meth:`RL2Config.resolve_episodes_per_trial`) times its ``max_episode_steps``. The clock
        input of a :attr:`RL2Config.policy_time` model counts down over it."""
        return self.config.resolve_episodes_per_trial(family) * int(family.max_episode_steps)

    @classmethod
    def load(cls, run_dir: str | Path, *, deterministic: bool = False) -> RL2Learner:
        """The policy of the latest valid checkpoint in ``run_dir`` (or of a checkpoint file)."""
        from metarl.agents.rl2_train import load_run

        agent = load_run(run_dir)
        return cls(agent.model, agent.config, deterministic=deterministic)


def cli_train(
    family: str,
    config_path: str | Path | None = None,
    resume: bool = False,
    run_dir: str | Path | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> Path:
    """``metarl train rl2 --family <id>``; see :func:`metarl.agents.rl2_train.cli_train`."""
    from metarl.agents.rl2_train import cli_train as _cli_train

    return _cli_train(family, config_path, resume, run_dir, seed, **kwargs)


def load_learner(checkpoint: str | Path) -> RL2Learner:
    """``metarl evaluate --learner rl2 --checkpoint PATH``: a run directory or one checkpoint file."""
    return RL2Learner.load(checkpoint)
