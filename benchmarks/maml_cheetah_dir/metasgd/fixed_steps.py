"""Diagnostic: does a Meta-SGD model owe its return to its learned step sizes or to its initialisation?

Meta-tests one Meta-SGD checkpoint twice on the test tasks with the benchmark's protocol (20 episodes
per step, later steps halved, episodes seeded with 12345): once with its learned per-entry step sizes,
once with every step size replaced by the config's ``inner_lr`` (where Meta-SGD starts them; plain
MAML's step). Prints both curves, the summary of the learned sizes, and the paired difference per
step with a 95% bootstrap interval over tasks. Run from the repository root:

    .venv/bin/python benchmarks/maml_cheetah_dir/metasgd/fixed_steps.py <checkpoint.pt> [rounds]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import metarl
from metarl.agents.maml_train import load_algorithm
from metarl.agents.maml_trpo import MAMLLearner


def main(checkpoint: str, rounds: int) -> None:
    torch.set_num_threads(1)
    algo = load_algorithm(checkpoint)
    if not algo.config.meta_sgd:
        sys.exit(f"{checkpoint} is not a Meta-SGD model (meta_sgd is false in its config)")
    learned = algo.inner_step_sizes()
    for name, size in learned.items():
        s = torch.as_tensor(size).detach()
        print(f"{name:14s} learned step: mean {s.mean():.4f}, min {s.min():.4f}, max {s.max():.4f}")
    fixed = {name: algo.config.inner_lr for name in learned}
    family = metarl.make_family(algo.config.family)
    curves = {}
    for label, sizes in (("learned steps", learned), (f"all steps {algo.config.inner_lr:g}", fixed)):
        learner = MAMLLearner(algo.policy, sizes, algo.config, label, 0.5)
        res = metarl.evaluate(learner, family, rounds=rounds, episodes_per_round=20, seed=12345)
        curves[label] = res.returns  # (tasks, rounds)
        print(f"{label}: {np.round(curves[label].mean(0), 1)}", flush=True)
    a, b = curves.values()
    diff = a - b  # (tasks, rounds)
    boot = np.random.default_rng(0).integers(0, len(diff), size=(10_000, len(diff)))
    means = diff[boot].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    for k in range(diff.shape[1]):
        print(f"after {k} step(s): learned minus fixed {diff[:, k].mean():+.1f} [{lo[k]:+.1f}, {hi[k]:+.1f}]")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} CHECKPOINT [ROUNDS]")
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 4)
