"""Diagnostic: does a Meta-SGD model owe its return to its learned step sizes or to its initialisation?

Meta-tests one Meta-SGD checkpoint twice on the test tasks with the benchmark's protocol (20 episodes
per step, later steps halved, episodes seeded with 12345): once with its learned per-entry step sizes,
once with every step size replaced by the config's ``inner_lr`` (where Meta-SGD starts them; plain
MAML's step). Prints both curves, the summary of the learned sizes, and the paired difference per
step with a 95% bootstrap interval over tasks (``EvalResult.paired_difference``). Run from the repository root:

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
    results = []
    for label, sizes in (("learned steps", learned), (f"all steps {algo.config.inner_lr:g}", fixed)):
        learner = MAMLLearner(algo.policy, sizes, algo.config, label, 0.5)
        results.append(metarl.evaluate(learner, family, rounds=rounds, episodes_per_round=20, seed=12345))
        print(f"{label}: {np.round(results[-1].returns.mean(0), 1)}", flush=True)
    for row in results[0].paired_difference(results[1]):
        print(f"after {row['round']} step(s): learned minus fixed {row['mean']:+.1f} "
              f"[{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} CHECKPOINT [ROUNDS]")
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 4)
