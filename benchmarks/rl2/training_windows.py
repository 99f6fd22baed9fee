"""Mean training return per window of environment steps, for RL² runs side by side.

    python benchmarks/rl2/training_windows.py --window 1000000 \\
        session14=benchmarks/rl2/logs/bandit_n100_k5_vn_h256_seed0_progress.csv \\
        value_task=benchmarks/rl2/runs/bandit_n100_k5_vn_h256_vtask_seed0/progress.csv

Prints a Markdown table: one row per run, one column per window (the mean of ``trial_return``
over the updates whose ``env_steps`` fall in it; a window only partly filled is marked ``*``).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def windows(path: Path, width: int) -> dict[int, tuple[float, int]]:
    """``{window index: (mean trial return, updates)}`` of a ``progress.csv``."""
    sums: dict[int, list[float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            k = (int(row["env_steps"]) - 1) // width
            sums.setdefault(k, []).append(float(row["trial_return"]))
    return {k: (sum(v) / len(v), len(v)) for k, v in sorted(sums.items())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="NAME=PROGRESS_CSV")
    parser.add_argument("--window", type=int, default=1_000_000, help="window width in env steps")
    args = parser.parse_args()
    if args.window < 1:
        parser.error(f"--window must be a positive number of env steps, got {args.window}")
    table: dict[str, dict[int, tuple[float, int]]] = {}
    for spec in args.runs:
        name, sep, path = spec.rpartition("=")  # the name may hold "=" (e.g. "k=10")
        if not sep or not Path(path).is_file():
            parser.error(f"expected NAME=PROGRESS_CSV with an existing file, got {spec!r}")
        table[name] = windows(Path(path), args.window)
    full = max(max((n for _, n in w.values()), default=0) for w in table.values())
    last = max(max(w, default=0) for w in table.values())
    head = [f"{(k + 1) * args.window / 1e6:g} M" for k in range(last + 1)]
    print("| run | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for name, w in table.items():
        cells = []
        for k in range(last + 1):
            mean, n = w.get(k, (math.nan, 0))
            cells.append("" if n == 0 else f"{mean:.1f}" + ("*" if n < 0.9 * full else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
