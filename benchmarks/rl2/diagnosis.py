"""Shared by ``diagnose_bandit_policy.py`` and ``diagnose_mdp_policy.py``: their command line, and
linear readouts of trial statistics from an RL² GRU's hidden state (does it remember what it saw?).

A ridge regression from the
hidden state the policy acts on at step ``t`` (it has seen steps ``< t``) to statistics of the trial
so far is fitted on the first half of the trials and scored (R²) on the second half, per window of
steps. A high R² says the statistic is linearly available to the policy and value heads, which are
linear in the hidden state; a low one says the memory, not the policy, is the bottleneck.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agents.rl2 import RL2


def windows(n_steps: int) -> list[tuple[int, int]]:
    """Step windows: the first 10 steps, then growing spans to the end of the trial."""
    edges = sorted({0, min(10, n_steps), min(30, n_steps), n_steps // 2, n_steps})
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def ridge_r2(
    hidden: np.ndarray, targets: np.ndarray, groups: dict[str, slice], ridge: float = 1e-3
) -> dict[str, dict[str, float]]:
    """Held-out R² of a linear readout of ``targets`` (B, T, D) from ``hidden`` (B, T, H).

    ``groups`` names slices of the D targets; each gets one R², pooled over its targets, per window.
    """
    n_trials, n_steps = hidden.shape[:2]
    if targets.shape[:2] != (n_trials, n_steps):
        raise ValueError(f"targets {targets.shape} do not match hidden states {hidden.shape}")
    half = n_trials // 2
    if half < 1:
        raise ValueError(f"need at least 2 trials, got {n_trials}")
    x = np.concatenate([hidden, np.ones((n_trials, n_steps, 1))], -1)
    fit_x = x[:half].reshape(-1, x.shape[-1])
    fit_y = targets[:half].reshape(-1, targets.shape[-1])
    weights = np.linalg.solve(fit_x.T @ fit_x + ridge * np.eye(fit_x.shape[1]), fit_x.T @ fit_y)
    pred, truth = x[half:] @ weights, targets[half:]
    out: dict[str, dict[str, float]] = {}
    for lo, hi in windows(n_steps):
        row: dict[str, Any] = {}
        for name, cols in groups.items():
            t = truth[:, lo:hi, cols]
            err = ((pred[:, lo:hi, cols] - t) ** 2).sum()
            var = ((t - t.mean((0, 1))) ** 2).sum()
            row[name] = round(float(1.0 - err / max(var, 1e-12)), 4)
        out[f"{lo + 1}-{hi}"] = row
    return out


def trained_and_untrained_r2(
    agent: RL2, inputs: torch.Tensor, targets: np.ndarray, groups: dict[str, slice]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """:func:`ridge_r2` from ``agent``'s GRU states on ``inputs`` (``(B, T, input_dim)``), and from a
    freshly initialised network of the same config fed the same inputs (a random recurrent
    "reservoir"): the difference is the memory that training added."""
    out = []
    for model in (agent.model, RL2(agent.config, agent.family).model):
        with torch.no_grad():
            hidden, _ = model.gru(inputs)
        out.append(ridge_r2(hidden.numpy().astype(np.float64), targets, groups))
    return out[0], out[1]


def run_diagnosis(
    description: str,
    family: str,
    default_tasks: int,
    diagnose: Callable[[Path, int, int], list[dict[str, Any]]],
) -> None:
    """The diagnose scripts' command line: ``--run`` (repeatable), ``--tasks``, ``--seed``; prints
    each row ``diagnose(run, tasks, seed)`` returns as one JSON line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--run", type=Path, required=True, action="append", help=f"RL² {family} run directory (repeatable)"
    )
    parser.add_argument(
        "--tasks", type=int, default=default_tasks, help="the first N test tasks, one trial each"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.tasks < 1:
        raise SystemExit(f"--tasks must be a positive int, got {args.tasks}")
    for run in args.run:
        for row in diagnose(run, args.tasks, args.seed):
            print(json.dumps(row), flush=True)
