"""Diagnostic: a MAML checkpoint's validation return after one step when its inner step is scaled.

If a model's one-step return were limited by the length of the inner step, a larger step at test
time would raise it. Run from the repository root:

    .venv/bin/python benchmarks/maml_cheetah_dir/step_scale.py <checkpoint.pt> 1 2 4
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

import metarl
from metarl.agents.maml_trpo import MAMLLearner

ROOT = Path(__file__).resolve().parents[2]


def main(checkpoint: str, scales: list[float]) -> None:
    spec = importlib.util.spec_from_file_location("bench_maml", ROOT / "scripts" / "bench_maml.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.set_num_threads(1)
    algo, info = bench._load(checkpoint)
    family = metarl.make_family(info["config"]["family"])
    for scale in scales:
        sizes = {name: size * scale for name, size in algo.inner_step_sizes().items()}
        learner = MAMLLearner(algo.policy, sizes, algo.config, f"step x{scale:g}", 0.5)
        # the benchmark's meta-test protocol (20 episodes per step, episodes seeded with 12345)
        res = metarl.evaluate(
            learner, family, split="validation", rounds=2, episodes_per_round=20, seed=12345
        )
        before, after = res.returns.mean(0)
        print(f"{Path(checkpoint).name} (iteration {info['iteration']}): inner step x{scale:g}: "
              f"validation return {before:.1f} before, {after:.1f} after one step", flush=True)  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} CHECKPOINT SCALE [SCALE ...]")
    main(sys.argv[1], [float(s) for s in sys.argv[2:]])
