"""Stochastic MLP policies usable functionally, and a numpy sampling wrapper for :func:`metarl.collect`.

Gradient-based meta-learners (MAML, Finn et al. 2017) evaluate one network architecture under many
parameter sets: the meta-learned initialisation and one adapted copy per task. The policies here
are therefore ordinary :class:`torch.nn.Module` s whose forward pass returns the *parameters of the
action distribution* (a tuple of tensors), to be called with an explicit parameter dict through
:func:`torch.func.functional_call`; log-probabilities, KL divergences and sampling are methods that
take those distribution parameters, so they also work inside :func:`torch.func.vmap`.

* :class:`GaussianMLPPolicy`: diagonal Gaussian for ``Box`` actions, mean from an MLP and a learnable,
  state-independent log standard deviation (as in TRPO, Schulman et al. 2015, and MAML).
* :class:`CategoricalMLPPolicy`: softmax over the logits of an MLP for ``Discrete`` actions.
* :class:`PolicySampler`: numpy observations in, numpy actions out; one batched forward per step for
  all sub-envs, with a seeded :class:`torch.Generator`; optionally with one parameter set per task.
* :class:`TaskPolicyFactory` / :class:`TaskPolicySampler`: the same for :mod:`metarl.samplers`
  (local or on Ray): the policy is rebuilt from broadcast weights, and task ``k``'s actions depend
  only on task ``k``'s parameters, observations and generator (seeded from
  :meth:`~metarl.samplers.PolicyContext.task_seeds`), so the split of tasks over workers cannot
  change the episodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "NONLINEARITIES",
    "CategoricalMLPPolicy",
    "DistParams",
    "GaussianMLPPolicy",
    "MLPPolicy",
    "Params",
    "PolicySampler",
    "TaskPolicyFactory",
    "TaskPolicySampler",
    "batched_forward",
    "make_policy",
]

#: The parameters of an action distribution, as returned by a policy's forward pass.
DistParams = tuple[Tensor, ...]
#: A parameter dict as used by :func:`torch.func.functional_call` (name -> tensor).
Params = dict[str, Tensor]

NONLINEARITIES: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(in_dim: int, out_dim: int, hidden_sizes: Sequence[int], nonlinearity: str) -> nn.Sequential:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}")
    for h in hidden_sizes:
        if not isinstance(h, (int, np.integer)) or isinstance(h, bool) or h < 1:
            raise ValueError(f"hidden sizes must be positive ints, got {h!r} in {list(hidden_sizes)}")
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"input and output sizes must be positive, got {in_dim} and {out_dim}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *[int(h) for h in hidden_sizes]]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), NONLINEARITIES[nonlinearity]()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    return nn.Sequential(*layers)


class MLPPolicy(nn.Module):
    """Common interface: ``forward(obs) -> DistParams`` plus distribution methods on DistParams."""

    discrete: bool = False
    mlp: nn.Sequential

    def forward(self, obs: Tensor) -> DistParams:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def kl(self, p: DistParams, q: DistParams) -> Tensor:  # pragma: no cover
        """``KL(p || q)`` per sample (summed over action dimensions)."""
        raise NotImplementedError

    def entropy(self, dist: DistParams) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(self, dist: DistParams, generator: torch.Generator | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def mode(self, dist: DistParams) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Re-initialise every linear layer from ``generator`` (Xavier-uniform weights, zero biases,
        as in the MAML reference port); the global torch RNG is not used."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                    module.bias.zero_()

    def params(self) -> Params:
        """The module's parameters as a dict of leaf tensors (shared storage)."""
        return dict(self.named_parameters())


class GaussianMLPPolicy(MLPPolicy):
    """Diagonal Gaussian policy: ``N(mlp(obs), diag(exp(log_std))^2)`` with a learnable ``log_std``.

    Args:
        obs_dim: observation size (observations are flattened).
        act_dim: action size.
        hidden_sizes: widths of the hidden layers.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        init_std: initial standard deviation (1.0 in the MAML reference configs), in the units of
            the normalised actions when ``action_bounds`` is given.
        action_bounds: ``(low, high)`` of a bounded action box to parametrise the Gaussian in units
            of ``[-1, 1]`` (rllab's ``normalize(env)``, which the MAML reference code wraps around its
            environments): the distribution over environment actions is
            ``N(center + half * mlp(obs), (half * exp(log_std))^2)`` with ``center = (high + low) / 2``
            and ``half = (high - low) / 2``. Actions, log-probabilities and KLs stay in environment
            units (the log-density differs from the normalised one by a constant); only the
            parametrisation, and so every gradient step's effect, changes. ``None``: no scaling.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        nonlinearity: str = "tanh",
        init_std: float = 1.0,
        action_bounds: tuple[Any, Any] | None = None,
    ) -> None:
        super().__init__()
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        self.mlp = _mlp(obs_dim, act_dim, hidden_sizes, nonlinearity)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        # plain CPU tensors, not buffers: checkpoints and functional calls see only the parameters
        self.action_center: Tensor | None = None
        self.action_half: Tensor | None = None
        self.log_action_half: Tensor | None = None
        if action_bounds is not None:
            low = np.broadcast_to(np.asarray(action_bounds[0], dtype=np.float64), (act_dim,))
            high = np.broadcast_to(np.asarray(action_bounds[1], dtype=np.float64), (act_dim,))
            if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
                raise ValueError(f"action_bounds must be finite with high > low, got {action_bounds!r}")
            self.action_center = torch.tensor((high + low) / 2, dtype=torch.float32, device="cpu")
            self.action_half = torch.tensor((high - low) / 2, dtype=torch.float32, device="cpu")
            self.log_action_half = torch.log(self.action_half)

    def scale_dist(self, h: Tensor, log_std: Tensor) -> DistParams:
        """Distribution parameters from the network output and ``log_std`` (see ``action_bounds``)."""
        if self.action_half is None:
            return h, log_std.expand_as(h)
        assert self.action_center is not None and self.log_action_half is not None
        return self.action_center + self.action_half * h, (log_std + self.log_action_half).expand_as(h)

    def forward(self, obs: Tensor) -> DistParams:
        return self.scale_dist(self.mlp(obs), self.log_std)

    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:
        mean, log_std = dist
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def kl(self, p: DistParams, q: DistParams) -> Tensor:
        (mp, lp), (mq, lq) = p, q
        var_p, var_q = torch.exp(2 * lp), torch.exp(2 * lq)
        return (lq - lp + (var_p + (mp - mq).pow(2)) / (2 * var_q) - 0.5).sum(-1)

    def entropy(self, dist: DistParams) -> Tensor:
        return (dist[1] + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def sample(self, dist: DistParams, generator: torch.Generator | None) -> Tensor:
        mean, log_std = dist
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + torch.exp(log_std) * noise

    def mode(self, dist: DistParams) -> Tensor:
        return dist[0]


class CategoricalMLPPolicy(MLPPolicy):
    """Softmax policy over ``n_actions`` discrete actions; ``forward`` returns ``(logits,)``."""

    discrete = True

    def __init__(
        self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int] = (64, 64), nonlinearity: str = "tanh"
    ) -> None:
        super().__init__()
        self.mlp = _mlp(obs_dim, n_actions, hidden_sizes, nonlinearity)

    def forward(self, obs: Tensor) -> DistParams:
        return (torch.log_softmax(self.mlp(obs), dim=-1),)

    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:
        return torch.gather(dist[0], -1, actions.long().unsqueeze(-1)).squeeze(-1)

    def kl(self, p: DistParams, q: DistParams) -> Tensor:
        return (torch.exp(p[0]) * (p[0] - q[0])).sum(-1)

    def entropy(self, dist: DistParams) -> Tensor:
        return -(torch.exp(dist[0]) * dist[0]).sum(-1)

    def sample(self, dist: DistParams, generator: torch.Generator | None) -> Tensor:
        probs = torch.exp(dist[0]).reshape(-1, dist[0].shape[-1])
        return torch.multinomial(probs, 1, generator=generator).reshape(dist[0].shape[:-1])

    def mode(self, dist: DistParams) -> Tensor:
        return dist[0].argmax(-1)


def make_policy(
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    hidden_sizes: Sequence[int] = (64, 64),
    nonlinearity: str = "tanh",
    init_std: float = 1.0,
    generator: torch.Generator | None = None,
    normalize_actions: bool = False,
) -> MLPPolicy:
    """A Gaussian policy for ``Box`` actions, a categorical one for ``Discrete`` actions, initialised
    from ``generator`` when given (see :meth:`MLPPolicy.reset_parameters`). ``normalize_actions``
    parametrises the Gaussian in units of the box scaled to ``[-1, 1]`` (``action_bounds`` of
    :class:`GaussianMLPPolicy`); it needs a bounded box and is ignored for discrete actions."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(f"MLP policies need a Box observation space, got {observation_space}")
    obs_dim = int(np.prod(observation_space.shape))
    policy: MLPPolicy
    if isinstance(action_space, gym.spaces.Box):
        bounds = None
        if normalize_actions:
            if not action_space.is_bounded("both"):
                raise ValueError(f"normalize_actions needs a bounded Box action space, got {action_space}")
            bounds = (action_space.low.reshape(-1), action_space.high.reshape(-1))
        policy = GaussianMLPPolicy(
            obs_dim, int(np.prod(action_space.shape)), hidden_sizes, nonlinearity, init_std, bounds
        )
    elif isinstance(action_space, gym.spaces.Discrete):
        policy = CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden_sizes, nonlinearity)
    else:
        raise TypeError(f"MLP policies support Box and Discrete action spaces, got {action_space}")
    if generator is not None:
        policy.reset_parameters(generator)
    return policy


def batched_forward(policy: MLPPolicy, params: Mapping[str, Tensor], obs: Tensor) -> DistParams:
    """Distribution parameters for ``K`` tasks at once: ``params`` has a leading task axis ``K`` and
    ``obs`` is ``(K, N, obs_dim)``; one :func:`torch.baddbmm` per layer (``(K, N, in) @ (K, in, out)``),
    no loop and no :func:`torch.func.vmap` (half the time per call at the sampling loop's sizes).

    Plain autograd ops only, so first, second and forward-mode derivatives cost what the matrix
    products cost, with no vmap batching rules in between. Supports the two policies of this module.
    """
    h = obs
    for i, module in enumerate(policy.mlp):
        if isinstance(module, nn.Linear):
            weight, bias = params[f"mlp.{i}.weight"], params[f"mlp.{i}.bias"]
            h = torch.baddbmm(bias.unsqueeze(-2), h, weight.transpose(-1, -2))
        else:
            h = module(h)
    if isinstance(policy, GaussianMLPPolicy):
        return policy.scale_dist(h, params["log_std"].unsqueeze(-2))
    if isinstance(policy, CategoricalMLPPolicy):
        return (torch.log_softmax(h, dim=-1),)
    raise TypeError(
        f"batched_forward supports GaussianMLPPolicy and CategoricalMLPPolicy, not {type(policy)}"
    )


class PolicySampler:
    """A :class:`metarl.Policy`: numpy observations ``(num_envs, *obs_shape)`` -> numpy actions.

    Args:
        policy: the policy module.
        params: a parameter dict; with ``envs_per_task`` set, every tensor has a leading task axis
            (one parameter set per task; sub-env ``i`` uses set ``i // envs_per_task``, the order of
            :func:`metarl.make_vec`).
        generator: the source of the action noise.
        envs_per_task: ``None`` for one parameter set shared by all sub-envs.
        deterministic: act with the distribution's mode instead of sampling.
        clip_actions: ask :func:`metarl.collect` to clip the actions to the action box before
            stepping (the recorded actions stay as sampled; see :class:`metarl.Policy`).
    """

    def __init__(
        self,
        policy: MLPPolicy,
        params: Mapping[str, Tensor],
        generator: torch.Generator,
        *,
        envs_per_task: int | None = None,
        deterministic: bool = False,
        action_dtype: Any = np.float32,
        clip_actions: bool = False,
    ) -> None:
        if envs_per_task is not None and envs_per_task < 1:
            raise ValueError(f"envs_per_task must be a positive int or None, got {envs_per_task!r}")
        self.policy = policy
        self.params = {k: v.detach() for k, v in params.items()}
        self.generator = generator
        self.envs_per_task = envs_per_task
        self.deterministic = deterministic
        self.action_dtype = np.int64 if policy.discrete else action_dtype
        self.clip_actions = bool(clip_actions) and not policy.discrete
        self._dtype = next(iter(self.params.values())).dtype

    @torch.no_grad()
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(observations), dtype=self._dtype)
        obs = obs.reshape(obs.shape[0], -1)
        if self.envs_per_task is None:
            dist = functional_call(self.policy, self.params, (obs,))
        else:
            n_tasks = obs.shape[0] // self.envs_per_task
            grouped = obs.reshape(n_tasks, self.envs_per_task, -1)
            dist = tuple(
                d.reshape(obs.shape[0], *d.shape[2:])
                for d in batched_forward(self.policy, self.params, grouped)
            )
        actions = self.policy.mode(dist) if self.deterministic else self.policy.sample(dist, self.generator)
        return actions.numpy().astype(self.action_dtype, copy=False)


class TaskPolicySampler:
    """A :class:`metarl.Policy` for the tasks of one vector env built by a :mod:`metarl.samplers` worker.

    Sub-env ``i`` runs local task ``j = i // envs_per_task``, whose global index (position in the
    sampler's task list) is ``context.task_indices[j]``. Each task's actions come from its own
    forward pass (on its own ``envs_per_task`` observations, so matrix shapes do not depend on how
    many tasks share the vector env) and its own :class:`torch.Generator`, seeded with
    ``context.task_seeds()[j]``: the actions are a function of ``(seed, task index)`` and the task's
    parameters only.

    Args:
        policy: the policy module; only its structure is used (it may live on the ``meta`` device).
        policy_state: parameter name -> tensor (or array), either shared (the module's shapes) or per
            task (a leading axis indexed by the *global* task index).
        context: the worker's :class:`metarl.samplers.PolicyContext`.
        deterministic: act with the distribution's mode (no noise).
        action_dtype: dtype of continuous actions (discrete ones are ``int64``).
        clip_actions: see :class:`PolicySampler`.
    """

    def __init__(
        self,
        policy: MLPPolicy,
        policy_state: Mapping[str, Any],
        context: Any,
        *,
        deterministic: bool = False,
        action_dtype: Any = np.float32,
        clip_actions: bool = False,
    ) -> None:
        base = dict(policy.named_parameters())
        if set(policy_state) != set(base):
            raise ValueError(f"policy state has parameters {sorted(policy_state)}, the policy {sorted(base)}")
        self.policy = policy
        self.context = context
        self.envs_per_task = int(context.envs_per_task)
        self.deterministic = deterministic
        self.action_dtype = np.int64 if policy.discrete else action_dtype
        self.clip_actions = bool(clip_actions) and not policy.discrete
        state = {n: torch.as_tensor(v).detach() for n, v in policy_state.items()}
        self.params: list[Params] = []
        for k in context.task_indices:
            task_params: Params = {}
            for n, v in state.items():
                if v.dim() == base[n].dim():
                    task_params[n] = v
                elif v.dim() == base[n].dim() + 1 and 0 <= k < v.shape[0]:
                    task_params[n] = v[k]
                else:
                    raise ValueError(
                        f"parameter {n!r} of shape {tuple(v.shape)} is neither shared "
                        f"{tuple(base[n].shape)} nor per task with an entry for task {k}"
                    )
            self.params.append(task_params)
        self.generators = [torch.Generator().manual_seed(s) for s in context.task_seeds()]
        self._dtype = next(iter(state.values())).dtype

    @torch.no_grad()
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(observations), dtype=self._dtype)
        obs = obs.reshape(obs.shape[0], -1)
        ept = self.envs_per_task
        if obs.shape[0] != ept * len(self.params):
            raise ValueError(
                f"expected {ept * len(self.params)} observations ({len(self.params)} tasks x "
                f"{ept} sub-envs), got {obs.shape[0]}"
            )
        actions = []
        for j, (params, generator) in enumerate(zip(self.params, self.generators, strict=True)):
            dist = functional_call(self.policy, params, (obs[j * ept : (j + 1) * ept],))
            actions.append(
                self.policy.mode(dist) if self.deterministic else self.policy.sample(dist, generator)
            )
        return torch.cat(actions).numpy().astype(self.action_dtype, copy=False)


@dataclass(frozen=True)
class TaskPolicyFactory:
    """A picklable :class:`metarl.samplers.PolicyFactory` for the MLP policies of this module.

    Called on a sampler worker with the broadcast weights (see :class:`TaskPolicySampler` for their
    layout) and the worker's context; it rebuilds the architecture on the ``meta`` device (no
    memory, no random initialisation) and acts through :func:`torch.func.functional_call`.

    Attributes:
        hidden_sizes: widths of the hidden layers.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        deterministic: act with the distribution's mode.
        normalize_actions: see :func:`make_policy`.
        clip_actions: see :class:`PolicySampler`.
    """

    hidden_sizes: tuple[int, ...]
    nonlinearity: str = "tanh"
    deterministic: bool = False
    normalize_actions: bool = False
    clip_actions: bool = False

    def __call__(self, policy_state: Mapping[str, Any], context: Any) -> TaskPolicySampler:
        with torch.device("meta"):
            policy = make_policy(context.observation_space, context.action_space, self.hidden_sizes,
                                 self.nonlinearity, normalize_actions=self.normalize_actions)  # fmt: skip
        return TaskPolicySampler(
            policy, policy_state, context, deterministic=self.deterministic, clip_actions=self.clip_actions
        )
