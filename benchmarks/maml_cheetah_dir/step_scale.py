"""Diagnostic: a MAML checkpoint's validation return after one step when its inner step is scaled.

If a model's one-step return were limited by the length of the inner step, a larger step at test
time would raise it. Run from the repository root:

    .venv/bin/python benchmarks/maml_cheetah_dir/step_scale.py <checkpoint.pt> 1 2 4
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import metarl
from metarl.agents.checkpoint import load_checkpoint
from metarl.agents.maml_train import load_algorithm
from metarl.agents.maml_trpo import MAMLLearner


def main(checkpoint: str, scales: list[float]) -> None:
    torch.set_num_threads(1)
    algo = load_algorithm(checkpoint)
    iteration = int(load_checkpoint(checkpoint)["iteration"])
    family = metarl.make_family(algo.config.family)
    for scale in scales:
        sizes = {name: size * scale for name, size in algo.inner_step_sizes().items()}
        learner = MAMLLearner(algo.policy, sizes, algo.config, f"step x{scale:g}", 0.5)
        # the benchmark's meta-test protocol (20 episodes per step, episodes seeded with 12345)
        res = metarl.evaluate(
            learner, family, split="validation", rounds=2, episodes_per_round=20, seed=12345
        )
        before, after = res.returns.mean(0)
        print(f"{Path(checkpoint).name} (iteration {iteration}): inner step x{scale:g}: "
              f"validation return {before:.1f} before, {after:.1f} after one step", flush=True)  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} CHECKPOINT SCALE [SCALE ...]")
    main(sys.argv[1], [float(s) for s in sys.argv[2:]])
