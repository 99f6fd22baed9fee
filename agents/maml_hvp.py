"""The MAML-TRPO outer step for batched tasks: meta-gradient and KL Hessian-vector products in
Gauss-Newton form through the inner steps, and a line-search objective that builds no graph.

For one inner step per task ``theta'_k = theta - alpha grad L_in,k(theta)`` and adapted action
distributions ``d_k = f(s; theta'_k)`` on the post-adaptation (validation) steps,

* the meta-gradient is ``g = mean_k A_k^T J_k^T dL_k/dd_k`` with ``A_k = d theta'_k / d theta =
  I - alpha H_in,k`` (``H_in,k`` the Hessian of the inner loss, symmetric) and ``J_k = df/d theta'_k``;
* the Hessian of the mean KL between the old and the new adapted policies, *at the old policy*
  (which is where TRPO evaluates it), is exactly ``mean_k A_k^T J_k^T M_k J_k A_k`` with ``M_k`` the
  Hessian of the KL w.r.t. the distribution parameters: the terms with second derivatives of
  ``f`` or of ``theta'`` multiply ``dKL/dd``, which is zero there. TRPO computes the KL Hessian in
  this form (Schulman et al. 2015, appendix C.1, ``A = J^T M J``; Martens 2010).

So each product costs two inner-loss Hessian-vector products (Pearlmutter 1994, through the inner
gradient's graph, built once and reused by every conjugate-gradient iteration), one forward-mode
product and one backward pass of the network on the validation steps. Differentiating the KL
gradient again (:func:`metarl.agents.trpo.hessian_vector_product`) computes the same product plus
third-order terms that multiply zero. Several inner steps chain: ``A = A_n ... A_1``; with
``first_order`` every ``A_i`` is the identity (Finn et al. 2017, section 5.2).

With Meta-SGD (Li et al. 2017) the step sizes ``alpha`` (one per parameter entry, shared by the
tasks) are meta-parameters too. Step ``i`` (size ``s_i alpha``, ``s_i`` the later-step scale) is
``theta_{i+1} = theta_i - s_i alpha * g_i(theta_i)``, so its Jacobian has a second block,
``d theta_{i+1} / d alpha = -s_i diag(g_i)``: a tangent ``(u, u_alpha)`` moves on as
``u - s_i alpha * (H_i u) - s_i g_i * u_alpha``, and a cotangent ``w`` adds ``-s_i g_i * w`` to the
step sizes' gradient. ``g_i`` is the full batch's inner gradient in both products.

Optionally (``hvp_subsample < 1``) the Gauss-Newton product uses a random subset of the
validation steps, as rllab's ``ConjugateGradientOptimizer(subsample_factor=...)`` does for TRPO
(Duan et al. 2016, "Benchmarking Deep RL for Continuous Control"), and ``A_k`` built from a random
subset of each inner batch's steps (``H_in,k`` estimated on fewer steps). The product stays a
positive semi-definite curvature matrix for any ``A_k``; the gradient, the adapted parameters and
the line search (which checks the exact KL bound) still use every step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.func import jvp

from metarl.agents.policies import DistParams, MLPPolicy, batched_forward
from metarl.agents.trpo import flatten, unflatten

if TYPE_CHECKING:
    from metarl.agents.maml_trpo import TaskTensors

__all__ = [
    "BatchedOuterStep",
    "InnerSteps",
    "batched_inner_losses",
    "batched_objective_no_graph",
    "batched_outer_losses",
    "detached_step_size",
    "subsample_steps",
]


def batched_inner_losses(policy: MLPPolicy, params: Mapping[str, Tensor], data: TaskTensors) -> Tensor:
    """Per-task REINFORCE losses ``(K,)`` with per-task parameters (leading axis ``K``)."""
    dist = batched_forward(policy, params, data.obs)
    return -(data.weights * policy.log_prob(dist, data.actions) * data.advantages).sum(-1)


def batched_outer_losses(
    policy: MLPPolicy, dist: DistParams, data: TaskTensors, old_dist: DistParams
) -> tuple[Tensor, Tensor]:
    """Mean over tasks of TRPO's surrogate and of the KL(old || new), from distribution parameters."""
    ratio = torch.exp(policy.log_prob(dist, data.actions) - policy.log_prob(old_dist, data.actions))
    surrogate = -(data.weights * ratio * data.advantages).sum(-1)
    kl = (data.weights * policy.kl(old_dist, dist)).sum(-1)
    return surrogate.mean(), kl.mean()


def subsample_steps(data: TaskTensors, fraction: float, generator: torch.Generator) -> TaskTensors:
    """The same random ``ceil(fraction * N)`` step columns of every task, weights renormalised to a
    per-task mean over the real steps kept (a task whose kept steps are all padding gets weight 0)."""
    from metarl.agents.maml_trpo import TaskTensors

    N = data.obs.shape[1]
    keep = torch.randperm(N, generator=generator)[: max(1, math.ceil(fraction * N))].sort().values
    w = data.weights[:, keep]
    total = w.sum(-1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w))
    return TaskTensors(data.obs[:, keep], data.actions[:, keep], data.advantages[:, keep], w)


class InnerSteps:
    """The inner gradient steps of one meta-iteration, taken at the current meta-parameters.

    :meth:`step` adapts every task's parameters on one batch (what the sampler runs next); with
    ``second_order`` it keeps each step's input leaves and gradient graph, so that
    :class:`BatchedOuterStep` differentiates through the very steps the episodes were sampled with
    instead of recomputing them (one forward and backward pass of the network over every inner
    batch saved per meta-iteration).

    Args:
        policy: the policy; its current parameters are the meta-parameters.
        step_sizes: the inner step size per parameter name: a number, or a tensor of the parameter's
            shape (Meta-SGD; read at each step, so in-place updates of it are seen).
        n_tasks: ``K``, the tasks of the meta-batch.
        second_order: keep the gradients' graphs (False: first-order MAML, nothing kept).
        theta: the parameters to start from, by name (default: the policy's own).
        later_step_scale: every step after the first uses ``step_sizes`` times this.
    """

    def __init__(
        self,
        policy: MLPPolicy,
        step_sizes: Mapping[str, float | Tensor],
        n_tasks: int,
        *,
        second_order: bool,
        theta: Mapping[str, Tensor] | None = None,
        later_step_scale: float = 1.0,
    ) -> None:
        self.policy = policy
        self.names = [n for n, _ in policy.named_parameters()]
        self.alphas = [detached_step_size(step_sizes[n]) for n in self.names]
        self.later_step_scale = later_step_scale
        #: The step sizes each step took, in parameter order (``alphas``, then scaled ones).
        self.step_alphas: list[list[float | Tensor]] = []
        #: Each step's scale of ``alphas`` (1, then ``later_step_scale``) and its inner gradients,
        #: detached (the step sizes' Jacobian ``-s_i diag(g_i)`` under Meta-SGD).
        self.step_scales: list[float] = []
        self.step_grads: list[list[Tensor]] = []
        self.second_order = second_order
        start = dict(policy.named_parameters()) if theta is None else theta
        #: The parameters after the steps so far, ``(K, ...)`` each, without graphs.
        self.params = [start[n].detach().expand(n_tasks, *start[n].shape) for n in self.names]
        #: One ``(input leaves, gradient with its graph)`` pair per step (only with ``second_order``).
        self.graphs: list[tuple[list[Tensor], tuple[Tensor, ...]]] = []
        #: Each step's input parameters (for the subsampled inner Hessians of ``hvp_subsample``).
        self.inputs: list[list[Tensor]] = []
        self.steps_taken = 0

    def step(self, data: TaskTensors) -> dict[str, Tensor]:
        """Take one inner step on ``data`` and return the adapted per-task parameters (detached)."""
        leaves = [p.detach().requires_grad_(True) for p in self.params]
        with torch.enable_grad():
            named = dict(zip(self.names, leaves, strict=True))
            loss = batched_inner_losses(self.policy, named, data).sum()
            grads = torch.autograd.grad(loss, leaves, create_graph=self.second_order)
        if self.second_order:
            self.graphs.append((leaves, grads))
        self.inputs.append(leaves)
        scale = 1.0 if self.steps_taken == 0 else self.later_step_scale
        alphas = [a * scale for a in self.alphas]
        self.step_alphas.append(alphas)
        self.step_scales.append(scale)
        self.step_grads.append([g.detach() for g in grads])
        self.params = [(p - a * g).detach() for p, a, g in zip(leaves, alphas, grads, strict=True)]
        self.steps_taken += 1
        return dict(zip(self.names, self.params, strict=True))


def detached_step_size(alpha: float | Tensor) -> float | Tensor:
    """A fixed number as it is, a (learned) tensor detached from the graph; it shares storage."""
    return alpha.detach() if isinstance(alpha, Tensor) else alpha


def batched_objective_no_graph(
    policy: MLPPolicy,
    theta: Mapping[str, Tensor],
    step_sizes: Mapping[str, float | Tensor],
    inner_data: Sequence[TaskTensors],
    valid: TaskTensors,
    old_dist: DistParams,
    later_step_scale: float = 1.0,
) -> tuple[float, float]:
    """Post-adaptation surrogate and KL at ``theta`` for the line search: each inner gradient by plain
    backpropagation (no ``create_graph``), the validation losses under ``torch.no_grad``."""
    inner = InnerSteps(policy, step_sizes, valid.obs.shape[0], second_order=False, theta=theta,
                       later_step_scale=later_step_scale)  # fmt: skip
    params = dict(zip(inner.names, inner.params, strict=True))
    for data in inner_data:
        params = inner.step(data)
    with torch.no_grad():
        loss, kl = batched_outer_losses(policy, batched_forward(policy, params, valid.obs), valid, old_dist)
    return loss.item(), kl.item()


class BatchedOuterStep:
    """Meta-gradient and KL Hessian-vector products at the current meta-parameters (see module doc).

    Args:
        policy: the policy; its parameters (in ``named_parameters`` order) are the meta-parameters,
            followed by the step sizes when they are learned.
        step_sizes: the inner step size per parameter name: numbers (fixed), or tensors of the
            parameters' shapes, which are then meta-parameters too (Meta-SGD; all or none).
        inner_data: one batch per inner step, each with a leading task axis ``K``.
        valid: the post-adaptation batch.
        second_order: differentiate through the inner gradients (False: first-order MAML).
        hvp_data: the validation steps used by the KL Hessian products (default: ``valid``).
        hvp_inner_data: per inner step, the steps whose inner Hessian ``H_in`` the KL Hessian
            products use in ``A = I - alpha H_in`` (default: ``inner_data``); each at the same input
            parameters as the full batch's step.
        inner: the inner steps already taken on ``inner_data`` at the current parameters (by the
            meta-iteration, to sample the post-adaptation episodes); default: take them here.
        later_step_scale: inner steps after the first use ``step_sizes`` times this (when ``inner``
            is given, its own scale must be the same).
    """

    def __init__(
        self,
        policy: MLPPolicy,
        step_sizes: Mapping[str, float | Tensor],
        inner_data: Sequence[TaskTensors],
        valid: TaskTensors,
        *,
        second_order: bool,
        hvp_data: TaskTensors | None = None,
        hvp_inner_data: Sequence[TaskTensors] | None = None,
        inner: InnerSteps | None = None,
        later_step_scale: float = 1.0,
    ) -> None:
        self.policy = policy
        self.names = [n for n, _ in policy.named_parameters()]
        learned = [isinstance(step_sizes[n], Tensor) for n in self.names]
        if any(learned) and not all(learned):
            raise ValueError("step_sizes must be all numbers or all tensors (Meta-SGD)")
        #: Whether the step sizes are meta-parameters (Meta-SGD).
        self.learned_step_sizes = all(learned)
        self.shapes = [p for _, p in policy.named_parameters()]
        # the flat meta-parameter vector: the policy's parameters, then (Meta-SGD) the step sizes
        self.flat_shapes = self.shapes * 2 if self.learned_step_sizes else self.shapes
        self.K = valid.obs.shape[0]
        # One (leaves, inner gradient with its graph) pair per inner step, each at its own input.
        self.steps: list[tuple[list[Tensor], tuple[Tensor, ...]]] = []
        # The same for the Hessian products, on a subset of each inner batch (hvp_inner_data).
        self.hvp_steps = self.steps
        if hvp_inner_data is not None and second_order:
            if len(hvp_inner_data) != len(inner_data):
                raise ValueError(
                    f"hvp_inner_data has {len(hvp_inner_data)} batches, inner_data {len(inner_data)}"
                )
            self.hvp_steps = []
        if inner is None:
            inner = InnerSteps(policy, step_sizes, self.K, second_order=second_order,
                               later_step_scale=later_step_scale)  # fmt: skip
            for data in inner_data:
                inner.step(data)
        elif (
            inner.steps_taken != len(inner_data)
            or inner.second_order != second_order
            or inner.later_step_scale != later_step_scale
        ):
            raise ValueError(
                f"inner has {inner.steps_taken} steps (second_order={inner.second_order}, "
                f"later_step_scale={inner.later_step_scale}), expected {len(inner_data)} "
                f"(second_order={second_order}, later_step_scale={later_step_scale})"
            )
        self.steps.extend(inner.graphs)
        #: Each inner step's step sizes, aligned with ``steps`` and ``hvp_steps`` when second order.
        self.step_alphas = inner.step_alphas
        self.step_scales = inner.step_scales
        self.step_grads = inner.step_grads
        if self.hvp_steps is not self.steps:
            assert hvp_inner_data is not None
            for inputs, data in zip(inner.inputs, hvp_inner_data, strict=True):
                sub_leaves = [p.detach().requires_grad_(True) for p in inputs]
                with torch.enable_grad():
                    sub = batched_inner_losses(policy, self._named(sub_leaves), data).sum()
                    self.hvp_steps.append(
                        (sub_leaves, torch.autograd.grad(sub, sub_leaves, create_graph=True))
                    )
        params = inner.params
        # without inner steps (the pretrained baseline) these are still broadcast views, which
        # forward-mode AD cannot take as primals
        params = [p.contiguous() for p in params]
        self.adapted = params
        with torch.enable_grad():
            self.adapted_leaves = [p.requires_grad_(True) for p in [q.clone() for q in params]]
            self.dist = batched_forward(policy, self._named(self.adapted_leaves), valid.obs)
        self.old_dist: DistParams = tuple(d.detach() for d in self.dist)
        self.valid = valid
        self.hvp_data = valid if hvp_data is None else hvp_data
        hvp_old = (
            self.old_dist
            if hvp_data is None
            else tuple(d.detach() for d in self._forward(self.adapted, self.hvp_data.obs))
        )
        self.hvp_dist = self.dist if hvp_data is None else None
        with torch.enable_grad():
            if self.hvp_dist is None:
                self.hvp_dist = batched_forward(policy, self._named(self.adapted_leaves), self.hvp_data.obs)
            # dKL/dd with its graph, so M u is one cheap elementwise double-backward.
            self._kl_dist = tuple(d.detach().requires_grad_(True) for d in hvp_old)
            kl = (self.hvp_data.weights * policy.kl(hvp_old, self._kl_dist)).sum(-1).mean()
            self._kl_grad = torch.autograd.grad(kl, self._kl_dist, create_graph=True)

    def _named(self, tensors: Sequence[Tensor]) -> dict[str, Tensor]:
        return dict(zip(self.names, tensors, strict=True))

    def _forward(self, params: Sequence[Tensor], obs: Tensor) -> DistParams:
        with torch.no_grad():
            return batched_forward(self.policy, self._named(params), obs)

    def _through_inner(
        self,
        v: list[Tensor],
        steps: list[tuple[list[Tensor], tuple[Tensor, ...]]],
        v_alpha: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """``A (v, v_alpha)``: a tangent of the meta-parameters carried through the inner steps to the
        adapted parameters, ``u <- u - s_i alpha * (H_i u) - s_i g_i * v_alpha`` per task (no
        ``H_i`` term without second order, no ``g_i`` term without learned step sizes); ``steps``
        holds the inner gradients' graphs that give ``H_i``."""
        for i, (alphas, scale, grads) in enumerate(
            zip(self.step_alphas, self.step_scales, self.step_grads, strict=True)
        ):
            if steps:  # A_i u = u - alpha_i (H_i u)
                leaves, graph = steps[i]
                hv = torch.autograd.grad(graph, leaves, v, retain_graph=True)
                v = [x - a * h for x, a, h in zip(v, alphas, hv, strict=True)]
            if v_alpha is not None:
                v = [x - scale * g * va for x, g, va in zip(v, grads, v_alpha, strict=True)]
        return v

    def _through_inner_transposed(
        self, w: list[Tensor], steps: list[tuple[list[Tensor], tuple[Tensor, ...]]]
    ) -> tuple[list[Tensor], list[Tensor] | None]:
        """``A^T w``, summed over tasks: the cotangents of the parameters and (with learned step
        sizes, else ``None``) of the step sizes, ``-sum_i s_i g_i * w_{i+1}``."""
        grad_alpha = [torch.zeros_like(p) for p in self.shapes] if self.learned_step_sizes else None
        for i in reversed(range(len(self.step_alphas))):
            if grad_alpha is not None:
                scale, grads = self.step_scales[i], self.step_grads[i]
                grad_alpha = [
                    ga - scale * (g * x).sum(0) for ga, g, x in zip(grad_alpha, grads, w, strict=True)
                ]
            if steps:  # A_i^T w = w - H_i (alpha_i w), H_i symmetric
                leaves, graph = steps[i]
                alphas = self.step_alphas[i]
                hv = torch.autograd.grad(graph, leaves, [a * x for a, x in zip(alphas, w, strict=True)],
                                         retain_graph=True)  # fmt: skip
                w = [x - h for x, h in zip(w, hv, strict=True)]
        return [x.sum(0) for x in w], grad_alpha

    def _pull_back(
        self,
        dist: DistParams,
        cotangent: Sequence[Tensor],
        steps: list[tuple[list[Tensor], tuple[Tensor, ...]]],
    ) -> Tensor:
        """``A^T J^T u`` summed over tasks, as one flat vector of the meta-parameters."""
        w = list(torch.autograd.grad(dist, self.adapted_leaves, list(cotangent), retain_graph=True))
        grad_theta, grad_alpha = self._through_inner_transposed(w, steps)
        return flatten(grad_theta + (grad_alpha or []))

    def loss_and_gradient(self) -> tuple[float, Tensor]:
        """The surrogate at the current parameters (ratio 1) and its meta-gradient."""
        dd = tuple(d.detach().requires_grad_(True) for d in self.dist)
        with torch.enable_grad():
            loss, _ = batched_outer_losses(self.policy, dd, self.valid, self.old_dist)
            cotangent = torch.autograd.grad(loss, dd)
        return loss.item(), self._pull_back(self.dist, cotangent, self.steps)

    def kl_hvp(self, v: Tensor, damping: float = 0.0) -> Tensor:
        """``(H_KL + damping I) v`` at the current parameters, in Gauss-Newton form."""
        parts = unflatten(v, self.flat_shapes)
        n = len(self.shapes)
        v_alpha = parts[n:] if self.learned_step_sizes else None
        u = self._through_inner([x.expand(self.K, *x.shape) for x in parts[:n]], self.hvp_steps, v_alpha)
        u = [x.contiguous() for x in u]  # still broadcast views without inner steps
        ju = jvp(lambda *q: batched_forward(self.policy, self._named(q), self.hvp_data.obs),
                    tuple(self.adapted), tuple(u))[1]  # fmt: skip
        mu = torch.autograd.grad(self._kl_grad, self._kl_dist, list(ju), retain_graph=True)
        assert self.hvp_dist is not None
        return self._pull_back(self.hvp_dist, mu, self.hvp_steps) + damping * v
