"""Benchmark of metarl's core (issue: foundation), all figures measured side by side in one run.

1. The task wrapper's per-step overhead: Navigation2D's bare env against ``family.make_env(task)``
   (one TaskWrapper: task checks, reset order, horizon, action checks), interleaved repetitions, medians.
2. The native batched Navigation2D vector env against Gymnasium's SyncVectorEnv of single envs at
   10, 100 and 1000 sub-envs (target: at least 20x at 1000).

    python scripts/bench_core.py [--out benchmarks/core] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import metarl
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata


def time_single(env, actions: np.ndarray, steps: int) -> float:
    """Seconds per step of ``env`` (resetting when an episode ends)."""
    env.reset(seed=0)
    t0 = time.perf_counter()
    for t in range(steps):
        _, _, term, trunc, _ = env.step(actions[t % len(actions)])
        if term or trunc:
            env.reset()
    return (time.perf_counter() - t0) / steps


def time_vector(vec, actions: np.ndarray, steps: int) -> float:
    """Sub-env steps per second of a vector env."""
    vec.reset(seed=0)
    t0 = time.perf_counter()
    for t in range(steps):
        vec.step(actions[t % len(actions)])
    return steps * vec.num_envs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/core"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    meta = run_metadata(args.seed)  # before the run, so the load average is the one we ran under
    rng = np.random.default_rng(args.seed)
    fam = metarl.make_family("Navigation2D-v0")
    task = fam.test[0]

    # 1. wrapper overhead
    actions = rng.uniform(-0.1, 0.1, size=(1000, 2)).astype(np.float32)
    bare = fam._make_base_env()
    assert isinstance(bare, metarl.TaskEnv)
    bare.set_task(task)
    wrapped = fam.make_env(task)
    per_step: dict[str, list[float]] = {"bare": [], "wrapped": []}
    for _ in range(args.reps):
        per_step["bare"].append(time_single(bare, actions, 20_000))
        per_step["wrapped"].append(time_single(wrapped, actions, 20_000))
    bare_us = float(np.median(per_step["bare"]) * 1e6)
    wrapped_us = float(np.median(per_step["wrapped"]) * 1e6)
    wrapper = {
        "bare_us_per_step": bare_us,
        "wrapped_us_per_step": wrapped_us,
        "overhead_us_per_step": wrapped_us - bare_us,
        "note": "wrapped = TaskWrapper(env): task checks, reset order, info['task_id'], action checks, horizon",
    }
    print(
        f"bare {bare_us:.2f} us/step, wrapped {wrapped_us:.2f} us/step, overhead {wrapped_us - bare_us:.2f} us"
    )

    # 2. batched vs SyncVectorEnv
    vector = []
    for n in (10, 100, 1000):
        tasks = fam.sample(n, np.random.default_rng(args.seed + n))
        native = metarl.make_vec(fam, tasks, backend="native")
        sync = metarl.make_vec(fam, tasks, backend="gymnasium")
        acts = rng.uniform(-0.1, 0.1, size=(50, n, 2)).astype(np.float32)
        steps_native = max(200, 200_000 // n)
        steps_sync = max(20, 20_000 // n)
        rates: dict[str, list[float]] = {"native": [], "sync": []}
        for _ in range(args.reps):
            rates["native"].append(time_vector(native, acts, steps_native))
            rates["sync"].append(time_vector(sync, acts, steps_sync))
        row = {
            "num_envs": n,
            "native_steps_per_s": float(np.median(rates["native"])),
            "sync_steps_per_s": float(np.median(rates["sync"])),
        }
        row["speedup"] = row["native_steps_per_s"] / row["sync_steps_per_s"]
        vector.append(row)
        print(
            f"{n:5d} envs: native {row['native_steps_per_s']:.3g}/s, sync {row['sync_steps_per_s']:.3g}/s, x{row['speedup']:.1f}"
        )

    results = {
        "wrapper_overhead": wrapper,
        "navigation2d_vector": vector,
        "reps": args.reps,
        **meta,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1))
    lines = [
        "# Core benchmark: task wrapper overhead and the batched Navigation2D vector env",
        "",
        f"Command: `{results['command']}` (seed {args.seed}, {args.reps} interleaved repetitions, medians)  ",
        f"Commit: `{results['commit']}`, date {results['date']}  ",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, Python {results['machine']['python']}, "
        f"load average at start {results['machine']['load_average_1_5_15min']} (shared machine: ratios are "
        "measured side by side in one run; absolute rates vary with load)",
        "",
        "## Task wrapper per-step overhead (Navigation2D, single env)",
        "",
        "| env | us per step |",
        "|---|---|",
        f"| bare Navigation2DEnv | {bare_us:.2f} |",
        f"| family.make_env(task) (TaskWrapper: task checks, reset order, action checks, horizon) | {wrapped_us:.2f} |",
        f"| overhead | {wrapped_us - bare_us:.2f} |",
        "",
        "## Batched Navigation2D vs Gymnasium SyncVectorEnv (sub-env steps per second)",
        "",
        "| sub-envs | metarl native batched | SyncVectorEnv of single envs | speed-up |",
        "|---|---|---|---|",
    ]
    for row in vector:
        lines.append(
            f"| {row['num_envs']} | {row['native_steps_per_s']:,.0f} | {row['sync_steps_per_s']:,.0f} | {row['speedup']:.1f}x |"
        )
    lines.append("")
    lines.append("Target: at least 20x SyncVectorEnv at 1000 sub-envs.")
    atomic_write_text(args.out / "README.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out}/results.json and README.md")


if __name__ == "__main__":
    main()
