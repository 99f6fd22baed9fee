"""Gittins indices of Bernoulli arms with a Beta prior, by calibration and dynamic programming.

An arm whose success probability has posterior ``Beta(a, b)`` is compared with a *standard arm*
that pays a known ``lam`` per pull. The Gittins index of ``(a, b)`` is the ``lam`` at which a
gambler who discounts by ``gamma`` is indifferent between retiring to the standard arm for ever
(worth ``lam / (1 - gamma)``) and pulling the unknown arm at least once more with the option to
retire later (Gittins & Jones 1974; Gittins, Glazebrook & Weber 2011, *Multi-armed Bandit
Allocation Indices*, 2nd ed., ch. 8). The optimal value satisfies::

    V(a, b) = max(lam / (1 - gamma),
                  p (1 + gamma V(a + 1, b)) + (1 - p) gamma V(a, b + 1)),   p = a / (a + b)

solved backwards over the levels ``a + b``. The recursion is truncated ``depth`` pulls deeper
than the states of interest, where the arm is valued as if its mean were known,
``max(lam, p) / (1 - gamma)``; the truncation error shrinks like ``gamma ** depth``.

* :func:`gittins_index` finds one state's index to ``tol`` by repeated multisection on ``lam``
  (a reference, used in the tests).
* :func:`gittins_table` computes every state with ``a + b <= max_level`` at once: it solves the
  recursion for a grid of ``lam`` values in one vectorised pass and locates each state's
  indifference point by linear interpolation between grid values (the continuation-minus-
  retirement value is convex and strictly decreasing in ``lam``). Tables are cached per
  arguments.

Published values for a ``Beta(1, 1)`` prior (Gittins, Glazebrook & Weber 2011, the Bernoulli
tables, also reproduced in Christian & Griffiths 2016): ``gamma = 0.9``: ``(1, 1)`` 0.7029,
``(2, 2)`` 0.6346, ``(3, 3)`` 0.6010; ``gamma = 0.99``: ``(1, 1)`` 0.8699.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["default_depth", "gittins_index", "gittins_table"]


def _check(gamma: float, name: str = "gamma") -> float:
    if not isinstance(gamma, (int, float, np.floating)) or not 0.0 < float(gamma) < 1.0:
        raise ValueError(f"{name} must be a discount in (0, 1), got {gamma!r}")
    return float(gamma)


def default_depth(gamma: float, tol: float = 1e-5) -> int:
    """Pulls of look-ahead beyond a state after which ``gamma ** depth < tol`` (at least 50)."""
    gamma = _check(gamma)
    return max(50, math.ceil(math.log(tol) / math.log(gamma)))


def _continuation_minus_retire(a: float, b: float, gamma: float, lams: np.ndarray, depth: int) -> np.ndarray:
    """For each ``lam``: value of pulling ``Beta(a, b)`` once then acting optimally, minus
    ``lam / (1 - gamma)``. Positive below the index, non-positive at and above it."""
    lam = lams[:, None]
    retire = lam / (1.0 - gamma)
    i = np.arange(depth + 1, dtype=np.float64)
    value = np.maximum(lam, (a + i) / (a + b + depth)) / (1.0 - gamma)  # truncation: mean known
    for d in range(depth - 1, -1, -1):
        p = (a + i[: d + 1]) / (a + b + d)
        cont = p * (1.0 + gamma * value[:, 1 : d + 2]) + (1.0 - p) * gamma * value[:, : d + 1]
        if d == 0:
            return (cont - retire)[:, 0]
        value = np.maximum(retire, cont)
    raise AssertionError("unreachable")


def gittins_index(a: float, b: float, gamma: float, *, depth: int | None = None, tol: float = 1e-7) -> float:
    """The Gittins index of an arm with posterior ``Beta(a, b)`` under discount ``gamma``.

    Args:
        a, b: the Beta posterior's parameters (``1 + successes``, ``1 + failures`` under a
            uniform prior); positive.
        gamma: the discount factor in ``(0, 1)``.
        depth: look-ahead before truncation; default :func:`default_depth`.
        tol: width of the final bracket around the index.
    """
    gamma = _check(gamma)
    if not (a > 0 and b > 0):
        raise ValueError(f"Beta parameters must be positive, got a={a!r}, b={b!r}")
    depth = default_depth(gamma) if depth is None else int(depth)
    if depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    low, high = a / (a + b), 1.0  # the index is at least the mean and at most the best reward
    while high - low > tol:
        lams = np.linspace(low, high, 33)
        positive = _continuation_minus_retire(a, b, gamma, lams, depth) > 0.0
        j = int(np.count_nonzero(positive))  # decreasing: the first j grid points are positive
        low, high = lams[max(j - 1, 0)], lams[min(j, len(lams) - 1)]
    return 0.5 * (low + high)


@functools.lru_cache(maxsize=16)
def gittins_table(gamma: float, max_level: int, *, depth: int | None = None, grid: int = 401) -> np.ndarray:
    """Gittins indices of every ``Beta(a, b)`` with integer ``a, b >= 1`` and ``a + b <= max_level``.

    Args:
        gamma: the discount factor in ``(0, 1)``.
        max_level: the largest ``a + b`` needed (``n_pulls + 2`` covers a trial of ``n_pulls``
            under a ``Beta(1, 1)`` prior).
        depth: look-ahead beyond ``max_level``; default :func:`default_depth`.
        grid: number of ``lam`` values in ``[0, 1]`` (the index is interpolated between them;
            accuracy about ``1e-4`` at the default).

    Returns:
        A read-only ``(max_level, max_level)`` float64 array ``G`` with ``G[a, b]`` the index of
        ``Beta(a, b)`` for ``a + b <= max_level`` (other entries are NaN).
    """
    gamma = _check(gamma)
    if not isinstance(max_level, (int, np.integer)) or max_level < 2:
        raise ValueError(f"max_level must be an int >= 2, got {max_level!r}")
    if not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an int >= 3, got {grid!r}")
    depth = default_depth(gamma) if depth is None else int(depth)
    top = int(max_level) + depth
    lam = np.linspace(0.0, 1.0, grid)[:, None]
    retire = lam / (1.0 - gamma)
    table = np.full((max_level, max_level), np.nan)
    a = np.arange(1, top, dtype=np.float64)  # states of level l: a = 1 .. l - 1, b = l - a
    value = np.maximum(lam, a / top) / (1.0 - gamma)  # truncation level: mean known
    for level in range(top - 1, 1, -1):
        p = a[: level - 1] / level
        cont = p * (1.0 + gamma * value[:, 1:level]) + (1.0 - p) * gamma * value[:, : level - 1]
        if level <= max_level:
            diff = cont - retire  # (grid, level - 1), strictly decreasing down the grid
            j = np.clip(np.count_nonzero(diff > 0.0, axis=0), 1, grid - 1)
            cols = np.arange(level - 1)
            d0, d1 = diff[j - 1, cols], diff[j, cols]
            frac = d0 / np.where(d0 > d1, d0 - d1, 1.0)
            index = lam[j - 1, 0] + np.clip(frac, 0.0, 1.0) * (lam[j, 0] - lam[j - 1, 0])
            ai = np.arange(1, level)
            table[ai, level - ai] = index
        value = np.maximum(retire, cont)
    table.setflags(write=False)
    return table
