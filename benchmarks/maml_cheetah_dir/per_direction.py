"""Split a HalfCheetahDir meta-test (``results.json`` of ``bench_maml.py evaluate``) by direction.

HalfCheetahDir has two tasks, forward and backward; its 40 test tasks are copies of them (19 forward,
21 backward), so the table's mean over tasks mixes two quite different numbers. This prints, for
every learner, the mean return after each gradient step on each direction, as a Markdown table.
Run from the repository root:

    .venv/bin/python benchmarks/maml_cheetah_dir/per_direction.py benchmarks/maml_cheetah_dir/metasgd_seed1/results.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

import metarl


def main(path: str) -> None:
    with open(path) as f:
        results = json.load(f)["results"]
    directions: dict[str, float] = {}
    for result in results.values():
        family = metarl.make_family(result["family_id"])
        directions |= {t.task_id: float(t.vector()[0]) for t in getattr(family, result["split"])}
    print("| learner | direction | tasks | 0 steps | 1 step | 2 steps | 3 steps |")
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        returns = np.asarray(result["returns"])  # (tasks, rounds)
        d = np.array([directions[i] for i in result["task_ids"]])
        for label, mask in (("forward", d > 0), ("backward", d < 0)):
            cells = " | ".join(f"{v:.1f}" for v in returns[mask].mean(axis=0))
            print(f"| {name} | {label} | {int(mask.sum())} | {cells} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RESULTS_JSON")
    main(sys.argv[1])
