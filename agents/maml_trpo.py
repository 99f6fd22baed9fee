"""MAML-TRPO: model-agnostic meta-learning with a TRPO outer loop (Finn et al. 2017, "Model-Agnostic
Meta-Learning for Fast Adaptation of Deep Networks", section 3.2 and 5.3).

Reads top to bottom:

1. :class:`MAMLTRPOConfig`, every hyperparameter with its meaning;
2. the data of one meta-batch as tensors with a leading task axis (:class:`TaskTensors`);
3. the losses: the inner REINFORCE loss and the outer surrogate and KL;
4. the inner loop, :func:`adapt`: ``theta'_k = theta - alpha * grad L_k(theta)`` for every task ``k``,
   optionally keeping the graph for second-order meta-gradients;
5. the outer loop, :meth:`MAMLTRPO.meta_step`: TRPO on the post-adaptation surrogate, with
   Hessian-vector products of the KL *through the inner step*, conjugate gradient, a step scaled to
   the KL bound and a backtracking line search;
6. :class:`MAMLLearner`, the :class:`metarl.MetaLearner` used for meta-testing.

Training (sampling, logging, checkpoints) lives in :mod:`metarl.agents.maml_train`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from metarl.agents.advantages import task_advantages
from metarl.agents.config_checks import (
    SAMPLERS,
    check_bool,
    check_int,
    check_real,
    check_sampler_options,
    check_str,
)
from metarl.agents.maml_hvp import (
    BatchedOuterStep,
    InnerSteps,
    batched_inner_losses,
    batched_objective_no_graph,
    batched_outer_losses,
    detached_step_size,
    subsample_steps,
)
from metarl.agents.policies import DistParams, MLPPolicy, Params, PolicySampler, batched_forward
from metarl.agents.trpo import (
    backtracking_line_search,
    conjugate_gradient_with_product,
    flat_grad,
    flatten,
    hessian_vector_product,
    trust_region_step,
    unflatten,
)
from metarl.evaluation import AdaptationUnit
from metarl.rollout import EpisodeBatch
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv

__all__ = [
    "MAMLTRPO",
    "SAMPLERS",
    "MAMLLearner",
    "MAMLTRPOConfig",
    "TaskTensors",
    "adapt",
    "cli_train",
    "inner_loss",
    "load_learner",
    "map_tasks",
    "outer_losses",
    "task_dists",
    "task_tensors",
]

TaskBatching = Literal["loop", "vmap", "batched"]
#: The values of :attr:`MAMLTRPOConfig.sampler`.


# ----------------------------------------------------------------------------------------- 1. config
#: Settings of saved configs (checkpoints, pretrained files) that predate a config key: its value then.
SAVED_DEFAULTS: dict[str, Any] = {"clip_actions": False}


@dataclass(frozen=True)
class MAMLTRPOConfig:
    """Hyperparameters of MAML-TRPO; defaults are the 2D-navigation settings of Finn et al. 2017."""

    family: str = "Navigation2D-v0"
    """Registered task-family id to meta-train on."""
    seed: int = 0
    """Seeds the policy initialisation, task sampling, episode resets and action noise."""
    meta_iterations: int = 500
    """Number of outer (meta) updates."""
    meta_batch_size: int = 20
    """Tasks per meta-batch (20 for 2D navigation, 40 for locomotion)."""
    episodes_per_task: int = 20
    """Episodes per task for each inner step and for the post-adaptation (validation) batch."""
    train_tasks: int | None = None
    """Size of the family's training split the meta-batches are drawn from (None: family default)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden-layer widths of the policy MLP ((100, 100) in the paper, (64, 64) in later ports)."""
    nonlinearity: str = "tanh"
    """Hidden nonlinearity, "tanh" or "relu" (the paper uses relu)."""
    init_std: float = 1.0
    """Initial standard deviation of the Gaussian policy (in normalised units with normalize_actions)."""
    normalize_actions: bool = False
    """Parametrise the Gaussian policy in units of the action box scaled to [-1, 1], as rllab's
    ``normalize(env)`` around the MAML reference code's environments does (see
    ``GaussianMLPPolicy(action_bounds=...)``). A no-op for boxes that are already [-1, 1] (the MuJoCo
    locomotion families); for Navigation2D's [-0.1, 0.1] it makes one inner step of size alpha move
    the action mean 100 times less than in raw units."""
    clip_actions: bool = True
    """Clip the sampled actions to the action box before the env steps them (the episodes keep the
    sampled actions, whose log-probabilities the losses use). The MAML reference environments
    clipped (rllab's ``normalize(env)``, and HalfCheetah's control cost is taken on the clipped
    action), as Stable-Baselines3 does; without it a Gaussian policy pays the control cost of its
    exploration noise beyond the box. Checkpoints saved before this option existed did not clip and
    load with ``False`` (:meth:`from_saved`)."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training (each on freshly sampled episodes)."""
    inner_lr: float = 0.1
    """Inner step size alpha (the initial value of the learned step sizes with Meta-SGD)."""
    later_step_scale: float = 1.0
    """Gradient steps after the first use ``inner_lr * later_step_scale`` (times the learned sizes
    with Meta-SGD), in meta-training (``inner_steps > 1``) and, unless the learner is given another
    scale, at meta-test. The MAML reference code's test script (``maml_examples/test_maml_point.py``)
    uses 0.5: its first step has the training step size, the later ones half of it. With one inner
    step in training it changes the meta-test only."""
    meta_sgd: bool = False
    """Learn one inner step size per parameter (Meta-SGD, Li et al. 2017)."""
    first_order: bool = False
    """Drop the second-order term: treat the inner gradient as a constant (first-order MAML)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda; 1.0 gives Monte-Carlo returns minus the baseline."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the per-task linear feature baseline."""
    normalize_advantages: bool = True
    """Standardise advantages per task (as the reference implementation does)."""
    max_kl: float = 0.01
    """TRPO's bound on the mean KL between the old and new adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Damping added to the KL Hessian."""
    ls_max_steps: int = 15
    """Backtracking line-search steps."""
    ls_backtrack_ratio: float = 0.8
    """Line-search shrink factor."""
    task_batching: TaskBatching = "batched"
    """How per-task computations are batched: "loop" (one graph per task), "vmap" (torch.func.vmap
    over the task axis) or "batched" (one torch.baddbmm per layer for all tasks, and the outer step of
    :mod:`metarl.agents.maml_hvp`: KL Hessian products in Gauss-Newton form, a line search without
    graphs). The same algorithm; see benchmarks/maml_iteration for speed."""
    hvp_subsample: float = 1.0
    """Fraction of the steps used by the KL Hessian-vector products (1.0: all, the paper's
    algorithm). Below 1 (e.g. 0.2; opt-in, needs task_batching="batched") the products use a random
    subset of the post-adaptation steps, as rllab's TRPO ``subsample_factor`` (Duan et al. 2016) and
    OpenAI Baselines' TRPO (every 5th step) do, and the same fraction of each inner batch's steps for
    the inner Hessian in the chain rule through the inner step; the gradient, the adapted policy and
    the line search (with its exact KL check) use all steps. See agents/maml_hvp.py."""
    optim_threads: int | None = None
    """torch CPU threads for the inner and outer updates (None: leave torch's setting). Sampling
    runs on the MuJoCo physics threads with one torch thread for the policy; the updates run
    alone, so on 2 cores 2 threads can serve them (see benchmarks/maml_iteration)."""
    time_budget_s: float | None = None
    """Stop early (with a final checkpoint) once training has run this many seconds (None: no limit)."""
    run_dir: str = "runs/maml_trpo"
    """Directory for logs, TensorBoard events and checkpoints."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many meta-iterations (and at the end)."""
    keep_checkpoints: int = 3
    """Keep only the most recent this many checkpoints."""
    eval_every: int = 0
    """Meta-test on the family's validation tasks every this many meta-iterations (0: never): the
    return after 0..inner_steps gradient steps (episodes_per_task episodes per step, the same seed
    every time) goes to ``validation.csv``, and the meta-parameters with the best return after
    inner_steps steps are kept in ``best.pt`` (Finn et al. 2017 evaluate "the model with the best
    average return during training"; selecting on validation tasks keeps the test tasks held out)."""
    backend: str = "auto"
    """Vector-env backend for sampling, see metarl.make_vec."""
    sampler: str = "local"
    """Where episodes are collected. "local": one vector env in this process with one torch.Generator
    for the action noise of all sub-envs (the original behaviour; runs and checkpoints are unchanged).
    "ray": metarl.samplers.RaySampler -- the tasks are split over ray_workers Ray actors, the
    pre-adaptation batch sampled with the meta-parameters and the post-adaptation batch with each
    task's adapted parameters, broadcast with ray.put; a dead worker is replaced and its share
    re-sampled. "local-per-task": the same sampling as "ray" in this process (metarl.samplers.
    LocalSampler), with the same seeding: task k's reset seeds and action noise are a function of
    (iteration seed, k) only, so "ray" and "local-per-task" train to bit-identical parameters, for
    any number of workers. These two draw different random numbers than "local" (same
    distribution, other episodes)."""
    ray_address: str | None = None
    """With sampler="ray": the cluster to connect to ("auto", "ray://host:10001", "host:6379"); None
    starts a local Ray instance unless Ray is already initialised in this process."""
    ray_workers: int = 2
    """With sampler="ray": rollout actors; the meta-batch is split into this many contiguous shares."""
    ray_cpus_per_worker: float = 1.0
    """With sampler="ray": CPUs each rollout actor reserves (its scheduling weight)."""

    def __post_init__(self) -> None:
        # types first, so the range checks below compare numbers (JSON and TOML give any type)
        own = "MAMLTRPOConfig"
        for name in ("family", "nonlinearity", "task_batching", "run_dir", "backend"):
            check_str(own, name, getattr(self, name))
        check_sampler_options(own, self)
        for name in ("meta_sgd", "first_order", "normalize_advantages", "normalize_actions", "clip_actions"):
            check_bool(own, name, getattr(self, name))
        check_int(own, "seed", self.seed, minimum=0)
        check_int(own, "inner_steps", self.inner_steps, minimum=0)
        check_int(own, "train_tasks", self.train_tasks, minimum=1, optional=True)
        check_int(own, "optim_threads", self.optim_threads, minimum=1, optional=True)
        for name in ("init_std", "inner_lr", "later_step_scale", "gamma", "gae_lambda", "baseline_reg", "max_kl", "cg_damping",
                     "ls_backtrack_ratio", "hvp_subsample"):  # fmt: skip
            check_real(own, name, getattr(self, name))
        check_real(own, "time_budget_s", self.time_budget_s, optional=True)
        if not isinstance(self.hidden_sizes, (tuple, list)):
            raise ValueError(f"{own}.hidden_sizes must be a list of positive ints, got {self.hidden_sizes!r}")
        positive = ("meta_iterations", "meta_batch_size", "episodes_per_task", "cg_iters", "ls_max_steps",
                    "checkpoint_every", "keep_checkpoints")  # fmt: skip
        check_int(own, "eval_every", self.eval_every, minimum=0)
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ValueError(f"inner_steps must be a non-negative int, got {self.inner_steps!r}")
        if self.train_tasks is not None and (not isinstance(self.train_tasks, int) or self.train_tasks < 1):
            raise ValueError(f"train_tasks must be a positive int or None, got {self.train_tasks!r}")
        if not self.hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive ints, got {self.hidden_sizes!r}")
        for name in ("inner_lr", "max_kl", "init_std", "later_step_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.cg_damping < 0 or self.baseline_reg < 0:
            raise ValueError(
                f"cg_damping and baseline_reg must be >= 0, got {self.cg_damping}, {self.baseline_reg}"
            )
        if not 0.0 < self.ls_backtrack_ratio < 1.0:
            raise ValueError(f"ls_backtrack_ratio must be in (0, 1), got {self.ls_backtrack_ratio!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive or None, got {self.time_budget_s!r}")
        if self.task_batching not in ("loop", "vmap", "batched"):
            raise ValueError(f"task_batching must be 'loop', 'vmap' or 'batched', got {self.task_batching!r}")
        if not 0.0 < self.hvp_subsample <= 1.0:
            raise ValueError(f"hvp_subsample must be in (0, 1], got {self.hvp_subsample!r}")
        if self.hvp_subsample < 1.0 and self.task_batching != "batched":
            raise ValueError("hvp_subsample < 1 needs task_batching='batched'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> MAMLTRPOConfig:
        """Build a config from a mapping; an unknown key or a bad value raises ``ValueError`` naming
        it, prefixed with ``source`` (where the mapping came from, e.g. a config file) if given."""
        prefix = "" if source is None else f"{source}: "
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{prefix}unknown MAML-TRPO config key(s) {unknown}; valid keys: {sorted(names)}"
            )
        values = dict(data)
        if isinstance(values.get("hidden_sizes"), list):
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        try:
            return cls(**values)
        except ValueError as exc:
            if source is None:
                raise
            raise ValueError(f"{prefix}{exc}") from exc

    @classmethod
    def from_saved(cls, data: Mapping[str, Any]) -> MAMLTRPOConfig:
        """The config a checkpoint or run directory recorded: as :meth:`from_dict`, except that the
        keys a config written before they existed lacks get :data:`SAVED_DEFAULTS`, the behaviour
        it was trained with."""
        return cls.from_dict({**SAVED_DEFAULTS, **data})

    def replace(self, **changes: Any) -> MAMLTRPOConfig:
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


# ------------------------------------------------------------------------------ 2. meta-batch data
class TaskTensors(NamedTuple):
    """One batch of episodes per task, flattened to steps: every field has a leading task axis ``K``.

    Steps are gathered so each task's real steps come first; ``weights`` is ``1 / n_k`` on the
    ``n_k`` real steps of task ``k`` and 0 on padding, so ``(weights * x).sum(-1)`` is a per-task mean.
    """

    obs: Tensor  # (K, N, obs_dim)
    actions: Tensor  # (K, N, act_dim) or (K, N)
    advantages: Tensor  # (K, N)
    weights: Tensor  # (K, N)

    def task(self, k: int) -> TaskTensors:
        return TaskTensors(*(x[k] for x in self))


def task_tensors(
    episodes: EpisodeBatch,
    advantages: np.ndarray,
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> TaskTensors:
    """Turn a task-major :class:`metarl.EpisodeBatch` and its ``(K, E, T)`` advantages into tensors."""
    ep = episodes.by_task()
    K = ep.rewards.shape[0]
    mask = ep.mask.reshape(K, -1)
    n_valid = mask.sum(1)
    order = np.argsort(~mask, axis=1, kind="stable")[:, : int(n_valid.max())]
    take = lambda x: np.take_along_axis(x.reshape(K, mask.shape[1], -1), order[..., None], 1)  # noqa: E731
    obs = take(ep.observations)
    actions = take(ep.actions)
    actions = (
        actions[..., 0]
        if ep.actions.ndim == 3
        else actions.reshape(*actions.shape[:2], *ep.actions.shape[3:])
    )
    valid = np.take_along_axis(mask, order, 1)
    weights = valid / n_valid[:, None]
    adv = np.take_along_axis(advantages.reshape(K, -1), order, 1)
    if normalize:
        mean = (weights * adv).sum(1, keepdims=True)
        std = np.sqrt((weights * (adv - mean) ** 2).sum(1, keepdims=True))
        adv = (adv - mean) / (std + 1e-8)
    adv = np.where(valid, adv, 0.0)
    act_dtype = torch.long if np.issubdtype(actions.dtype, np.integer) else dtype
    return TaskTensors(
        torch.as_tensor(obs, dtype=dtype),
        torch.as_tensor(actions, dtype=act_dtype),
        torch.as_tensor(adv, dtype=dtype),
        torch.as_tensor(weights, dtype=dtype),
    )


def map_tasks(fn: Callable[..., Any], params: Params, *per_task: Any, batching: TaskBatching = "loop") -> Any:
    """Apply ``fn(params_k, *per_task_k)`` to every task ``k`` and stack the results.

    ``params`` and every argument in ``per_task`` carry a leading task axis (tensors, or tuples of
    tensors). ``"vmap"`` runs one batched computation (:func:`torch.func.vmap`); ``"loop"`` builds one
    small graph per task and stacks them. Both are differentiable, also twice.
    """
    if batching == "vmap":
        return vmap(fn)(params, *per_task)
    K = next(iter(params.values())).shape[0]
    outs = [fn({n: p[k] for n, p in params.items()}, *_index(per_task, k)) for k in range(K)]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*outs, strict=True))
    return torch.stack(outs)


def task_dists(policy: MLPPolicy, params: Params, obs: Tensor, batching: TaskBatching = "loop") -> DistParams:
    """Distribution parameters ``(K, N, ...)`` of every task's policy (``params`` with a task axis)."""
    if batching == "batched":
        return batched_forward(policy, params, obs)
    fwd = lambda p, o: functional_call(policy, p, (o,))  # noqa: E731
    return map_tasks(fwd, params, obs, batching=batching)


def _index(tree: Any, k: int) -> Any:
    if isinstance(tree, tuple):
        return tuple(_index(x, k) for x in tree)
    return tree[k]


# ------------------------------------------------------------------------------------ 3. the losses
def inner_loss(policy: MLPPolicy, params: Params, data: TaskTensors) -> Tensor:
    """REINFORCE for one task: ``-mean_t log pi(a_t | s_t) A_t`` (Williams 1992), the inner loss of
    MAML for RL (Finn et al. 2017, eq. 4)."""
    dist = functional_call(policy, params, (data.obs,))
    return -(data.weights * policy.log_prob(dist, data.actions) * data.advantages).sum(-1)


def outer_losses(
    policy: MLPPolicy, params: Params, data: TaskTensors, old_dist: DistParams
) -> tuple[Tensor, Tensor]:
    """TRPO's surrogate ``-mean_t (pi / pi_old) A_t`` and ``mean_t KL(pi_old || pi)`` for one task."""
    dist = functional_call(policy, params, (data.obs,))
    ratio = torch.exp(policy.log_prob(dist, data.actions) - policy.log_prob(old_dist, data.actions))
    surrogate = -(data.weights * ratio * data.advantages).sum(-1)
    kl = (data.weights * policy.kl(old_dist, dist)).sum(-1)
    return surrogate, kl


# --------------------------------------------------------------------------------- 4. the inner loop
def adapt(
    policy: MLPPolicy,
    params: Params,
    step_sizes: Mapping[str, Tensor | float],
    inner_data: list[TaskTensors],
    *,
    create_graph: bool,
    batching: TaskBatching = "loop",
    later_step_scale: float = 1.0,
) -> Params:
    """Inner gradient steps for ``K`` tasks at once: ``theta_k <- theta_k - alpha * grad L_k(theta_k)``,
    one per batch of ``inner_data``; the steps after the first use ``alpha * later_step_scale``.

    ``params`` may be shared (no task axis; it is broadcast to the ``K`` tasks of ``inner_data``) or
    per task (leading axis ``K``). Gradients of the summed per-task losses w.r.t. the broadcast
    parameters are exactly the per-task gradients, because ``L_k`` depends only on ``theta_k``.
    With ``create_graph`` the result stays differentiable w.r.t. ``params`` through the gradient
    (second-order MAML); without it the gradient is a constant (first-order MAML, Finn et al. 2017,
    section 5.2; Nichol et al. 2018).
    """
    base_dims = {n: p.dim() for n, p in policy.named_parameters()}
    for i, data in enumerate(inner_data):
        K = data.obs.shape[0]
        params = {n: p if p.dim() > base_dims[n] else p.expand(K, *p.shape) for n, p in params.items()}
        if batching == "batched":
            losses = batched_inner_losses(policy, params, data)
        else:
            losses = map_tasks(
                lambda p, d: inner_loss(policy, p, TaskTensors(*d)), params, tuple(data), batching=batching
            )
        grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=create_graph)
        if not create_graph:
            grads = tuple(g.detach() for g in grads)
        scale = 1.0 if i == 0 else later_step_scale
        params = {n: p - scale * step_sizes[n] * g for (n, p), g in zip(params.items(), grads, strict=True)}
    return params


# --------------------------------------------------------------------------------- 5. the outer loop
class MAMLTRPO:
    """The meta-parameters (policy initialisation, and with Meta-SGD the step sizes) and their update.

    Args:
        policy: the policy module; its parameters are the meta-learned initialisation.
        config: the hyperparameters.
    """

    def __init__(self, policy: MLPPolicy, config: MAMLTRPOConfig) -> None:
        self.policy = policy
        self.config = config
        self.step_sizes: dict[str, Tensor] = {}
        if config.meta_sgd:
            # Meta-SGD (Li et al. 2017): a learned step size per parameter entry, part of theta.
            self.step_sizes = {
                n: torch.full_like(p, config.inner_lr, requires_grad=True)
                for n, p in policy.named_parameters()
            }

    def meta_parameters(self) -> list[Tensor]:
        """Everything the outer loop updates, in a fixed order."""
        return list(self.policy.parameters()) + list(self.step_sizes.values())

    def inner_step_sizes(self) -> Mapping[str, Tensor | float]:
        if self.step_sizes:
            return self.step_sizes
        return {n: self.config.inner_lr for n, _ in self.policy.named_parameters()}

    def adapted_params(self, inner_data: list[TaskTensors], n_tasks: int, *, create_graph: bool) -> Params:
        """Per-task parameters (leading axis ``n_tasks``) after the inner steps on ``inner_data``."""
        params = {n: p.expand(n_tasks, *p.shape) for n, p in self.policy.named_parameters()}
        return adapt(
            self.policy, params, self.inner_step_sizes(), inner_data, create_graph=create_graph,
            batching=self.config.task_batching, later_step_scale=self.config.later_step_scale,
        )  # fmt: skip

    def inner_steps(self, n_tasks: int) -> InnerSteps | None:
        """A fresh :class:`metarl.agents.maml_hvp.InnerSteps` at the current meta-parameters for a
        meta-iteration to adapt with and pass on to :meth:`meta_step`, on the batched path
        (``task_batching="batched"``); ``None`` on the others (use :meth:`adapted_params`)."""
        if self.config.task_batching != "batched":
            return None
        return InnerSteps(
            self.policy, self._batched_step_sizes(), n_tasks, second_order=not self.config.first_order,
            later_step_scale=self.config.later_step_scale,
        )  # fmt: skip

    def _batched_step_sizes(self) -> dict[str, float | Tensor]:
        """The inner step sizes for the batched path: numbers, or with Meta-SGD the learned tensors
        (which :class:`metarl.agents.maml_hvp.BatchedOuterStep` then treats as meta-parameters)."""
        if self.step_sizes:
            return dict(self.step_sizes)
        return {n: float(a) for n, a in self.inner_step_sizes().items()}

    def objective(
        self,
        inner_data: list[TaskTensors],
        valid: TaskTensors,
        old_dist: DistParams | None,
        *,
        create_graph: bool,
    ) -> tuple[Tensor, Tensor, DistParams]:
        """Mean over tasks of the post-adaptation surrogate and KL, and the adapted distributions.

        With ``old_dist=None`` the current adapted policy is its own old policy (ratio 1, KL 0; the
        gradient and the KL Hessian are still correct)."""
        adapted = self.adapted_params(inner_data, valid.obs.shape[0], create_graph=create_graph)
        if old_dist is None:
            with torch.no_grad():
                old_dist = task_dists(self.policy, adapted, valid.obs, self.config.task_batching)
        if self.config.task_batching == "batched":
            dist = batched_forward(self.policy, adapted, valid.obs)
            surrogate, kl = batched_outer_losses(self.policy, dist, valid, old_dist)
            return surrogate, kl, old_dist
        surrogate, kl = map_tasks(
            lambda p, d, od: outer_losses(self.policy, p, TaskTensors(*d), od),
            adapted, tuple(valid), old_dist, batching=self.config.task_batching,
        )  # fmt: skip
        return surrogate.mean(), kl.mean(), old_dist

    def meta_step(
        self,
        inner_data: list[TaskTensors],
        valid: TaskTensors,
        generator: torch.Generator | None = None,
        inner: InnerSteps | None = None,
    ) -> dict[str, float]:
        """One TRPO update of the meta-parameters on the post-adaptation surrogate.

        The KL between the old and new *adapted* policies is computed through the inner step, so its
        Hessian-vector products differentiate through the inner gradient (double backprop; with
        ``first_order`` the inner gradient is held constant). Solve ``H x = g`` by conjugate gradient,
        scale to the KL bound, and backtrack until the KL bound holds and the surrogate improves.
        With ``task_batching="batched"`` the same quantities come from
        :class:`metarl.agents.maml_hvp.BatchedOuterStep` (Gauss-Newton form, Meta-SGD included).
        ``generator`` draws the ``hvp_subsample`` steps (default: one seeded with ``config.seed``). ``inner``: the inner steps the
        meta-iteration already took on ``inner_data`` from :meth:`inner_steps` (batched path only;
        default: recompute them).
        """
        cfg = self.config
        if cfg.task_batching == "batched":
            return self._batched_meta_step(inner_data, valid, generator, inner)
        if inner is not None:
            raise ValueError("inner steps can be reused only with task_batching='batched'")
        theta = self.meta_parameters()
        second_order = not cfg.first_order
        loss, kl, old_dist = self.objective(inner_data, valid, None, create_graph=second_order)
        grad = flat_grad(loss, theta, retain_graph=True)
        hvp = hessian_vector_product(kl, theta, cfg.cg_damping)
        direction, h_direction = conjugate_gradient_with_product(hvp, grad, cfg.cg_iters)
        step = trust_region_step(direction, h_direction, cfg.max_kl)
        old = flatten([p.detach() for p in theta]).clone()
        loss_before = loss.item()
        del hvp, kl, loss

        def evaluate(fraction: float) -> tuple[float, float]:
            self._set(theta, old - fraction * step)
            new_loss, new_kl, _ = self.objective(inner_data, valid, old_dist, create_graph=False)
            return new_loss.item(), new_kl.item()

        return self._line_search(theta, old, step, evaluate, loss_before, grad)

    def _batched_meta_step(
        self,
        inner_data: list[TaskTensors],
        valid: TaskTensors,
        generator: torch.Generator | None,
        inner: InnerSteps | None,
    ) -> dict[str, float]:
        cfg = self.config
        theta = self.meta_parameters()
        hvp_data = hvp_inner = None
        if cfg.hvp_subsample < 1.0:
            generator = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
            hvp_data = subsample_steps(valid, cfg.hvp_subsample, generator)
            hvp_inner = [subsample_steps(d, cfg.hvp_subsample, generator) for d in inner_data]
        sizes = self._batched_step_sizes()
        outer = BatchedOuterStep(self.policy, sizes, inner_data, valid, second_order=not cfg.first_order,
                                 hvp_data=hvp_data, hvp_inner_data=hvp_inner, inner=inner,
                                 later_step_scale=cfg.later_step_scale)  # fmt: skip
        loss_before, grad = outer.loss_and_gradient()
        hvp = functools.partial(outer.kl_hvp, damping=cfg.cg_damping)
        direction, h_direction = conjugate_gradient_with_product(hvp, grad, cfg.cg_iters)
        step = trust_region_step(direction, h_direction, cfg.max_kl)
        old = flatten([p.detach() for p in theta]).clone()
        old_dist = outer.old_dist
        del outer, hvp

        def evaluate(fraction: float) -> tuple[float, float]:
            self._set(theta, old - fraction * step)
            return batched_objective_no_graph(
                self.policy, self.policy.params(), sizes, inner_data, valid, old_dist, cfg.later_step_scale
            )

        return self._line_search(theta, old, step, evaluate, loss_before, grad)

    def _line_search(
        self,
        theta: list[Tensor],
        old: Tensor,
        step: Tensor,
        evaluate: Callable[[float], tuple[float, float]],
        loss_before: float,
        grad: Tensor,
    ) -> dict[str, float]:
        """Backtrack along ``step`` from ``old`` (KL bound and improvement), apply the accepted
        fraction to ``theta`` and return the step's statistics."""
        cfg = self.config
        result = backtracking_line_search(
            evaluate, loss_before, cfg.max_kl, max_steps=cfg.ls_max_steps, ratio=cfg.ls_backtrack_ratio
        )
        self._set(theta, old - result.fraction * step)
        return {
            "loss_before": loss_before,
            "loss_after": result.loss,
            "kl": result.kl,
            "ls_tries": float(result.tries),
            "accepted": float(result.accepted),
            "grad_norm": grad.norm().item(),
        }

    @staticmethod
    def _set(theta: Sequence[Tensor], flat: Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(theta, unflatten(flat, theta), strict=True):
                p.copy_(v)

    def learner(self, name: str = "maml-trpo", later_step_scale: float | None = None) -> MAMLLearner:
        """A :class:`metarl.MetaLearner` starting from the current meta-parameters (see
        :class:`MAMLLearner` for ``later_step_scale``)."""
        return MAMLLearner(self.policy, self.inner_step_sizes(), self.config, name, later_step_scale)


# ---------------------------------------------------------------------------------- 6. meta-testing
class MAMLAdaptation:
    """Per-task parameters for the tasks of one vector env, updated by one gradient step per round."""

    def __init__(
        self, learner: MAMLLearner, vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv, seed: int
    ) -> None:
        self.learner = learner
        self.envs_per_task = vec_env.envs_per_task
        K = len(vec_env.tasks)
        self.params = {
            n: p.detach().expand(K, *p.shape).clone() for n, p in learner.policy.named_parameters()
        }
        self.generator = torch.Generator().manual_seed(int(seed))
        self.steps_taken = 0

    def policy(self) -> PolicySampler:
        return PolicySampler(
            self.learner.policy,
            self.params,
            self.generator,
            envs_per_task=self.envs_per_task,
            clip_actions=self.learner.config.clip_actions,
        )

    def update(self, episodes: EpisodeBatch) -> None:
        cfg = self.learner.config
        adv = task_advantages(episodes, cfg.gamma, cfg.gae_lambda, cfg.baseline_reg)
        data = task_tensors(episodes, adv, normalize=cfg.normalize_advantages)
        params = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        sizes = self.learner.step_sizes
        if self.steps_taken > 0 and self.learner.later_step_scale != 1.0:
            sizes = {n: a * self.learner.later_step_scale for n, a in sizes.items()}
        with torch.enable_grad():
            new = adapt(self.learner.policy, params, sizes, [data], create_graph=False,
                        batching=cfg.task_batching)  # fmt: skip
        self.params = {n: p.detach() for n, p in new.items()}
        self.steps_taken += 1


class MAMLLearner:
    """Meta-test a policy initialisation with gradient steps (the :class:`metarl.MetaLearner` protocol).

    Round ``r`` of :func:`metarl.evaluate` runs the policy after ``r`` REINFORCE steps on the previous
    rounds' episodes, each with a per-task linear baseline, exactly as in the inner loop. Steps after
    the first are scaled by ``later_step_scale`` (default: the config's).
    """

    adaptation_unit: AdaptationUnit = "gradient step"

    def __init__(
        self,
        policy: MLPPolicy,
        step_sizes: Mapping[str, Tensor | float],
        config: MAMLTRPOConfig,
        name: str = "maml-trpo",
        later_step_scale: float | None = None,
    ) -> None:
        self.policy = policy
        self.later_step_scale = config.later_step_scale if later_step_scale is None else later_step_scale
        if not (isinstance(self.later_step_scale, (int, float)) and self.later_step_scale > 0):
            raise ValueError(f"later_step_scale must be a positive number, got {self.later_step_scale!r}")
        self.step_sizes = {n: detached_step_size(v) for n, v in step_sizes.items()}
        self.config = config
        self.name = name

    def begin_adaptation(
        self, vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv, seed: int
    ) -> MAMLAdaptation:
        return MAMLAdaptation(self, vec_env, seed)


# ------------------------------------------------------------------- entry points for the metarl CLI
def cli_train(
    family: str,
    config_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    run_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> Path:
    """``metarl train maml-trpo``: see :func:`metarl.agents.maml_train.cli_train`."""
    from metarl.agents.maml_train import cli_train as _cli_train

    return _cli_train(family, config_path, resume, run_dir, seed)


def load_learner(checkpoint: str | os.PathLike[str]) -> MAMLLearner:
    """``metarl evaluate --learner maml-trpo --checkpoint PATH`` (a checkpoint file or run dir)."""
    from metarl.agents.maml_train import load_algorithm

    return load_algorithm(checkpoint).learner()
