"""Trust-region machinery (Schulman et al. 2015, "Trust Region Policy Optimization", appendix C).

* :func:`conjugate_gradient` solves ``A x = b`` for a symmetric positive-definite ``A`` given only
  the product ``v -> A v``;
* :func:`hessian_vector_product` builds ``v -> (H + damping I) v`` for the Hessian ``H`` of a scalar
  (the mean KL) by double backpropagation (Pearlmutter 1994), never forming ``H``;
* :func:`trust_region_step` scales the natural-gradient direction to the KL bound;
* :func:`backtracking_line_search` shrinks the step until the KL bound holds *and* the objective
  improves.

Parameters are handled as lists of tensors; :func:`flatten` and :func:`unflatten` convert to and
from one flat vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LineSearchResult",
    "backtracking_line_search",
    "conjugate_gradient",
    "conjugate_gradient_with_product",
    "flat_grad",
    "flatten",
    "hessian_vector_product",
    "trust_region_step",
    "unflatten",
]


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split ``flat`` into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(flat[i : i + t.numel()].view_as(t))
        i += t.numel()
    if i != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, the tensors need {i}")
    return out


def flat_grad(
    output: Tensor, inputs: Sequence[Tensor], *, create_graph: bool = False, retain_graph: bool | None = None
) -> Tensor:
    """The gradient of scalar ``output`` w.r.t. ``inputs`` as one flat vector (zeros where unused)."""
    grads = torch.autograd.grad(
        output, list(inputs), create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return flatten([torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)])


def hessian_vector_product(
    scalar: Tensor, inputs: Sequence[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping I) v`` with ``H`` the Hessian of ``scalar`` w.r.t. ``inputs``.

    The first derivative is taken once with ``create_graph=True``; each product then costs one more
    backward pass through ``g . v`` (double backpropagation). When ``scalar`` is computed through an
    inner gradient step (MAML), this differentiates through that step too.
    """
    if damping < 0:
        raise ValueError(f"damping must be non-negative, got {damping!r}")
    grad = flat_grad(scalar, inputs, create_graph=True)

    def product(v: Tensor) -> Tensor:
        hv = flat_grad(torch.dot(grad, v.detach()), inputs, retain_graph=True)
        return hv + damping * v

    return product


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Approximately solve ``A x = b``; see :func:`conjugate_gradient_with_product`."""
    return conjugate_gradient_with_product(matvec, b, iters, residual_tol)[0]


def conjugate_gradient_with_product(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Approximately solve ``A x = b`` by conjugate gradient (Hestenes & Stiefel 1952), from ``x = 0``.

    Args:
        matvec: ``v -> A v`` for a symmetric positive-definite ``A``.
        b: the right-hand side.
        iters: at most this many iterations (TRPO and MAML use 10).
        residual_tol: stop early once ``|r|^2`` is below this.

    Returns:
        ``x`` and ``A x``, accumulated from the products already computed (``A x = sum alpha_i A p_i``),
        so scaling the step to the trust region costs no further product.
    """
    if iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    x = torch.zeros_like(b)
    ax = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr.item() < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x = x + alpha * p
        ax = ax + alpha * ap
        r = r - alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, ax


def trust_region_step(direction: Tensor, h_direction: Tensor, max_kl: float) -> Tensor:
    """Scale ``direction`` (the solution of ``H x = g``) so the quadratic KL model equals ``max_kl``.

    With ``KL(step) ~ 0.5 step^T H step``, the step ``direction / sqrt(0.5 d^T H d / max_kl)`` lies on
    the trust-region boundary. ``h_direction`` is ``H d``.
    """
    if not max_kl > 0:
        raise ValueError(f"max_kl must be positive, got {max_kl!r}")
    shs = 0.5 * torch.dot(direction, h_direction)
    if not shs.item() > 0:
        return torch.zeros_like(direction)
    return direction * math.sqrt(max_kl / shs.item())


class LineSearchResult(NamedTuple):
    """Outcome of :func:`backtracking_line_search`.

    ``fraction`` is the accepted step fraction (``ratio ** k``), or 0.0 if no step was accepted;
    ``loss`` and ``kl`` are those at the accepted step (the initial loss and 0.0 otherwise).
    """

    accepted: bool
    fraction: float
    loss: float
    kl: float
    tries: int


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    loss_before: float,
    max_kl: float,
    *,
    max_steps: int = 15,
    ratio: float = 0.8,
) -> LineSearchResult:
    """Try step fractions ``1, ratio, ratio^2, ...`` and accept the first with ``kl <= max_kl`` and
    ``loss < loss_before`` (TRPO accepts only steps that keep the constraint and improve the
    surrogate, Schulman et al. 2015, section 6).

    Args:
        evaluate: ``fraction -> (loss, kl)`` at the parameters ``old - fraction * step``.
        loss_before: the loss at the old parameters (to be minimised).
        max_kl: the KL bound.
        max_steps: number of fractions tried (15 in MAML).
        ratio: shrink factor (0.8 in MAML).
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio!r}")
    fraction = 1.0
    for k in range(max_steps):
        loss, kl = evaluate(fraction)
        if math.isfinite(loss) and math.isfinite(kl) and kl <= max_kl and loss < loss_before:
            return LineSearchResult(True, fraction, loss, kl, k + 1)
        fraction *= ratio
    return LineSearchResult(False, 0.0, loss_before, 0.0, max_steps)
