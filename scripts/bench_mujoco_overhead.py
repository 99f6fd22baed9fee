"""Per-step overhead of metarl's MuJoCo families against their bare Gymnasium envs.

For each family, ``family.make_env(task)`` (TaskWrapper + TimeLimit + OrderEnforcing around the
family's env) and ``gymnasium.make(<bare id>, max_episode_steps=<same horizon>)`` (TimeLimit +
OrderEnforcing + PassiveEnvChecker around Gymnasium's env, same observation options) run the same
fixed random actions from the same reset seed, in alternating short repetitions in one process;
the table reports medians. Reward families follow the bare env's trajectory exactly; dynamics
families use the all-ones task (the pristine model), so both sides also reset at the same steps.
Target: at most 5% overhead.

    python scripts/bench_mujoco_overhead.py [--reps 15] [--steps 1000] [--out benchmarks/mujoco_overhead]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import metarl
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata

#: family id -> (bare Gymnasium id, extra keywords for gymnasium.make matching the family's env).
PAIRS: dict[str, tuple[str, dict[str, Any]]] = {
    "HalfCheetahVel-v0": ("HalfCheetah-v5", {"ctrl_cost_weight": 0.05}),
    "HalfCheetahDir-v0": ("HalfCheetah-v5", {"ctrl_cost_weight": 0.05}),
    "AntVel-v0": ("Ant-v5", {}),
    "AntDir-v0": ("Ant-v5", {}),
    "AntDir2D-v0": ("Ant-v5", {}),
    "AntGoal-v0": ("Ant-v5", {}),
    "HumanoidDir-v0": ("Humanoid-v5", {}),
    "HopperRandParams-v0": ("Hopper-v5", {}),
    "Walker2dRandParams-v0": ("Walker2d-v5", {}),
    "HalfCheetahRandParams-v0": ("HalfCheetah-v5", {}),
}


def seconds_per_step(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Mean CPU and wall time per ``env.step`` over ``actions``, resets included when episodes end.

    CPU time (this process's) is the primary figure: on a shared, loaded machine wall time also
    counts the time other processes held the core.
    """
    env.reset(seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return (time.process_time() - cpu) / len(actions), (time.perf_counter() - wall) / len(actions)


def task_for(family: metarl.TaskFamily) -> metarl.Task:
    if family.varies == "dynamics":
        return family.task(**{p.name: np.ones(p.shape) for p in family.param_space})
    return family.test[0]


def measure(family_id: str, reps: int, steps: int, seed: int) -> dict[str, Any]:
    bare_id, bare_kwargs = PAIRS[family_id]
    family = metarl.make_family(family_id)
    env = family.make_env(task_for(family))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = gym.make(bare_id, max_episode_steps=family.max_episode_steps, **bare_kwargs)
    space = env.action_space
    actions = np.random.default_rng(seed).uniform(space.low, space.high, (steps, *space.shape))
    actions = actions.astype(space.dtype)
    seconds_per_step(env, actions[:200], seed)  # warm-up (first-step checks, caches)
    seconds_per_step(bare, actions[:200], seed)
    cpu: dict[str, list[float]] = {"metarl": [], "gymnasium": []}
    wall: dict[str, list[float]] = {"metarl": [], "gymnasium": []}
    for rep in range(reps):
        order = (
            (("metarl", env), ("gymnasium", bare)) if rep % 2 == 0 else (("gymnasium", bare), ("metarl", env))
        )
        for name, which in order:
            c, w = seconds_per_step(which, actions, seed)
            cpu[name].append(c)
            wall[name].append(w)
    env.close()
    bare.close()
    ours, theirs = float(np.median(cpu["metarl"])), float(np.median(cpu["gymnasium"]))
    ours_wall, theirs_wall = float(np.median(wall["metarl"])), float(np.median(wall["gymnasium"]))
    ratios = np.asarray(cpu["metarl"]) / np.asarray(cpu["gymnasium"])
    q25, q75 = np.percentile(100.0 * (ratios - 1.0), [25, 75])
    return {
        "family": family_id,
        "paired_overhead_pct_iqr": [float(q25), float(q75)],
        "bare_env": bare_id,
        "metarl_steps_per_cpu_s": 1.0 / ours,
        "gymnasium_steps_per_cpu_s": 1.0 / theirs,
        "overhead_pct": 100.0 * (ours / theirs - 1.0),
        "overhead_us_per_step": 1e6 * (ours - theirs),
        "wall_overhead_pct": 100.0 * (ours_wall / theirs_wall - 1.0),
        "metarl_steps_per_wall_s": 1.0 / ours_wall,
        "gymnasium_steps_per_wall_s": 1.0 / theirs_wall,
        "metarl_cpu_us_per_step_reps": [1e6 * t for t in cpu["metarl"]],
        "gymnasium_cpu_us_per_step_reps": [1e6 * t for t in cpu["gymnasium"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/mujoco_overhead"))
    parser.add_argument("--reps", type=int, default=15, help="alternating repetitions per env")
    parser.add_argument("--steps", type=int, default=1000, help="steps per repetition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    args = parser.parse_args()
    meta = run_metadata(args.seed)
    rows = []
    for family_id in args.families:
        row = measure(family_id, args.reps, args.steps, args.seed)
        rows.append(row)
        print(
            f"{family_id:26s} {row['metarl_steps_per_cpu_s']:8.0f}/s vs {row['bare_env']:15s} "
            f"{row['gymnasium_steps_per_cpu_s']:8.0f}/s (CPU)  overhead {row['overhead_pct']:+5.1f}% "
            f"({row['overhead_us_per_step']:+.2f} us/step); wall {row['wall_overhead_pct']:+5.1f}%"
        )
    results = {
        "rows": rows,
        "reps": args.reps,
        "steps_per_rep": args.steps,
        "target_overhead_pct": 5.0,
        **meta,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1))
    machine = results["machine"]
    lines = [
        "# MuJoCo families: per-step overhead against the bare Gymnasium env",
        "",
        f"Command: `{results['command']}`  ",
        f"Seed {args.seed}; {args.reps} alternating repetitions of {args.steps} steps per env; medians.  ",
        f"Commit: `{results['commit']}`; date {results['date']}  ",
        f"Machine: {machine['cpu']}, `nproc` = {machine['cores']}, Python {machine['python']}, "
        f"{', '.join(f'{k} {v}' for k, v in machine['versions'].items())}; load average at start "
        f"{machine['load_average_1_5_15min']} (a shared machine: absolute rates vary with load, the "
        "ratios are measured side by side).",
        "",
        "metarl = `family.make_env(task)` (TaskWrapper + TimeLimit + OrderEnforcing); Gymnasium = "
        "`gymnasium.make(id, max_episode_steps=<family horizon>)` (TimeLimit + OrderEnforcing + "
        "PassiveEnvChecker). Same actions, same reset seed; dynamics families use the all-ones task.",
        "",
        "Steps per second of process CPU time (the primary figure: other processes' load does not",
        "enter it); the wall-clock overhead of the same runs is shown for completeness.",
        "",
        "| family | bare env | metarl steps/CPU-s | Gymnasium steps/CPU-s | overhead (CPU) | us/step | "
        "IQR of paired reps | overhead (wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['bare_env']} | {r['metarl_steps_per_cpu_s']:,.0f} | "
            f"{r['gymnasium_steps_per_cpu_s']:,.0f} | {r['overhead_pct']:+.1f}% | "
            f"{r['overhead_us_per_step']:+.2f} | {r['paired_overhead_pct_iqr'][0]:+.1f}% .. "
            f"{r['paired_overhead_pct_iqr'][1]:+.1f}% | {r['wall_overhead_pct']:+.1f}% |"
        )
    lines += [
        "",
        "Target: at most 5% overhead per family. Read the IQR column before the median: families that",
        "share one code path (AntVel, AntDir, AntGoal; HalfCheetahVel, HalfCheetahDir) show how large",
        "the run-to-run noise of this machine was; a difference inside it is not a measured overhead.",
    ]
    atomic_write_text(args.out / "README.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out}/results.json and README.md")


if __name__ == "__main__":
    main()
