"""Per-step overhead of metarl's MuJoCo families against the bare Gymnasium env, paired on one simulation.

For each family, two stacks simulate the same ``MjModel`` and ``MjData`` (one memory placement,
one task):

* **metarl**: ``family.make_env(task)`` as users get it: the family env in one ``TaskWrapper`` (task,
  action and reset-before-step checks, ``info["task_id"]``, the horizon);
* **Gymnasium**: ``gymnasium.make(<v5 id>, max_episode_steps=<horizon>, <the family's env
  keywords>)``, Gymnasium's own env class in its default ``TimeLimit(OrderEnforcing(
  PassiveEnvChecker(env)))``, with its ``model`` and ``data`` replaced by the family env's.

So the difference is exactly what metarl adds per step (task reward and ``info``, TaskWrapper's
checks) against what Gymnasium's default wrappers cost. Before timing, the script asserts that the
two stacks follow one trajectory and, for reward families, that the Gymnasium stack's
observations equal a fresh ``gymnasium.make`` env's (dynamics families run their first test task).

Each repetition times the same pre-generated uniform random actions (``--steps``, resets at
termination and the horizon inside the timing, one reset seed per repetition) through metarl,
Gymnasium, and Gymnasium again (an A/A control: the noise floor), in an order cycling through all
six permutations, each timed run after ``--warmup`` untimed steps of the same stack (see
:func:`run`). The repetitions are spread over ``--processes`` worker processes run one after the
other (fresh envs, fresh interpreter), because a process's memory layout shifts its ratio by about
a percent. Reported per family: the median over all repetitions of the paired process-CPU-time
ratio metarl/Gymnasium with a hierarchical bootstrap 95% CI (processes, then repetitions), the
per-process medians, the median paired difference in us/step, the A/A control, and the wall-time
ratio. On a shared, loaded machine only paired ratios are read.

    python scripts/bench_mujoco_overhead.py [--seconds 16] [--min-reps 20] [--processes 3] [--steps 400] [--warmup 120]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

import metarl
from metarl.fileio import atomic_write_text
from metarl.provenance import machine_info, run_metadata

#: family id -> (bare Gymnasium id, keywords for gymnasium.make giving the family's env settings).
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
ARMS = ("metarl", "gymnasium", "gymnasium_again")
CLOCKS = ("cpu", "wall")


class Arms:
    """The two stacks: the family env, and ``gymnasium.make(bare id)`` simulating its model and data."""

    def __init__(
        self, family: metarl.TaskFamily, task: metarl.Task, bare_id: str, kwargs: dict[str, Any]
    ) -> None:
        self.metarl = family.make_env(task)
        base = self.metarl.unwrapped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PassiveEnvChecker's notes about the env's spaces
            self.gymnasium = gym.make(bare_id, max_episode_steps=family.max_episode_steps, **kwargs)
        bare = self.gymnasium.unwrapped
        if not isinstance(bare, MujocoEnv) or not isinstance(base, type(bare)):
            raise TypeError(f"{type(base).__name__} does not derive from {type(bare).__name__}")
        # One MjModel and MjData for both stacks: the family env's, with the task applied.
        bare.model, bare.data = base.model, base.data

    def stack(self, arm: str) -> gym.Env:
        return self.metarl if arm == "metarl" else self.gymnasium

    def close(self) -> None:
        self.metarl.close()
        self.gymnasium.close()


def run(env: gym.Env, actions: np.ndarray, seed: int, warmup: int) -> tuple[float, float]:
    """CPU and wall seconds per step over ``actions`` (resets at episode ends included), after
    ``warmup`` untimed steps of the same env.

    The warm-up matters because both stacks run Gymnasium's env code: Python's specialising
    interpreter tunes that code to the type of ``self`` last seen, and after a switch of stack
    it takes some 80 steps (counted with callgrind) to re-tune. Timed without a warm-up, an arm
    that follows the other stack pays for the switch and one that follows itself does not.
    """
    env.reset(seed=seed)
    for action in actions[:warmup]:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    env.reset(seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return cpu / len(actions), wall / len(actions)


def trajectory(env: gym.Env, actions: np.ndarray, seed: int) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        out.append(np.append(obs, [terminated, truncated]))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs)
    return out


def check_same_simulation(
    family_id: str, arms: Arms, actions: np.ndarray, seed: int, dynamics: bool, horizon: int
) -> None:
    """Both stacks follow one trajectory; for reward families it is a fresh ``gymnasium.make``'s."""
    ours = trajectory(arms.metarl, actions, seed)
    theirs = trajectory(arms.gymnasium, actions, seed)
    same = len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    if not same:
        raise RuntimeError(f"{family_id}: the metarl and Gymnasium stacks diverged")
    if not dynamics:
        bare_id, kwargs = PAIRS[family_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = gym.make(bare_id, max_episode_steps=horizon, **kwargs)
        reference = trajectory(fresh, actions, seed)
        fresh.close()
        if not all(np.array_equal(a, b) for a, b in zip(theirs, reference, strict=True)):
            raise RuntimeError(f"{family_id}: the Gymnasium stack differs from gymnasium.make({bare_id!r})")


def bootstrap_median_ci(groups: list[np.ndarray], rng: np.random.Generator, n: int = 2000) -> list[float]:
    """95% CI of the pooled median by a hierarchical bootstrap: resample the processes, then the
    repetitions within each drawn process."""
    medians = np.empty(n)
    for b in range(n):
        drawn = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        medians[b] = np.median(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in drawn]))
    return [float(q) for q in np.percentile(medians, [2.5, 97.5])]


def measure(
    family_id: str, seconds: float, steps: int, warmup: int, seed: int, min_reps: int, max_reps: int
) -> dict[str, Any]:
    """Per-repetition seconds per step of each arm (one worker process's share)."""
    family = metarl.make_family(family_id)
    dynamics = family.varies == "dynamics"
    task = family.test[0]
    arms = Arms(family, task, *PAIRS[family_id])
    space = arms.metarl.action_space
    assert isinstance(space, gym.spaces.Box)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(space.low, space.high, (steps, *space.shape)).astype(space.dtype)
    check_same_simulation(
        family_id, arms, actions[: 2 * family.max_episode_steps], seed, dynamics, family.max_episode_steps
    )
    for arm in ARMS[:2]:  # Gymnasium's first-step checks, caches
        run(arms.stack(arm), actions, seed, warmup)
    times: dict[str, dict[str, list[float]]] = {clock: {arm: [] for arm in ARMS} for clock in CLOCKS}
    orders = list(itertools.permutations(ARMS))
    start = time.perf_counter()
    rep = 0
    while rep < max_reps and (rep < min_reps or time.perf_counter() - start < seconds):
        for arm in orders[rep % len(orders)]:
            cpu, wall = run(arms.stack(arm), actions, seed + rep, warmup)
            times["cpu"][arm].append(cpu)
            times["wall"][arm].append(wall)
        rep += 1
    arms.close()
    return {"task_id": task.task_id, "times": times}


def summarize(family_id: str, shares: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Pool the worker processes' repetitions of one family into the reported figures."""
    row: dict[str, Any] = {
        "family": family_id,
        "bare_env": PAIRS[family_id][0],
        "task_id": shares[0]["task_id"],
        "reps": sum(len(s["times"]["cpu"]["metarl"]) for s in shares),
        "reps_per_process": [len(s["times"]["cpu"]["metarl"]) for s in shares],
    }
    boot = np.random.default_rng(seed + 1)
    for clock in CLOCKS:
        per_process = [{arm: np.asarray(s["times"][clock][arm]) for arm in ARMS} for s in shares]
        ratio = [100.0 * (t["metarl"] / t["gymnasium"] - 1.0) for t in per_process]
        control = [100.0 * (t["gymnasium_again"] / t["gymnasium"] - 1.0) for t in per_process]
        diff = [1e6 * (t["metarl"] - t["gymnasium"]) for t in per_process]
        ours = np.concatenate([t["metarl"] for t in per_process])
        theirs = np.concatenate([t["gymnasium"] for t in per_process])
        row[clock] = {
            "metarl_steps_per_s": float(1.0 / np.median(ours)),
            "gymnasium_steps_per_s": float(1.0 / np.median(theirs)),
            "gymnasium_us_per_step": float(1e6 * np.median(theirs)),
            "overhead_pct": float(np.median(np.concatenate(ratio))),
            "overhead_pct_ci95": bootstrap_median_ci(ratio, boot),
            "overhead_pct_per_process": [float(np.median(r)) for r in ratio],
            "overhead_us_per_step": float(np.median(np.concatenate(diff))),
            "overhead_us_per_step_ci95": bootstrap_median_ci(diff, boot),
            "control_pct": float(np.median(np.concatenate(control))),
            "control_pct_ci95": bootstrap_median_ci(control, boot),
        }
        row[f"{clock}_us_per_step_reps"] = [
            {arm: [1e6 * x for x in s["times"][clock][arm]] for arm in ARMS} for s in shares
        ]
    return row


def ci(values: list[float], fmt: str = "+.1f") -> str:
    return f"[{values[0]:{fmt}}, {values[1]:{fmt}}]"


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    rows = results["rows"]
    lines = [
        "# MuJoCo families: per-step overhead against the bare Gymnasium env",
        "",
        f"Command: `{results['command']}`  ",
        f"Seed {results['seed']}; {results['processes']} worker processes one after another, about "
        f"{results['seconds_per_family']:g} s of repetitions per family in all, each repetition "
        f"{results['steps_per_rep']} timed steps per arm.  ",
        f"Commit: `{results['commit']}`; date {results['date']}  ",
        f"Machine: {machine['cpu']}, `nproc` = {machine['cores']}, Python {machine['python']}, "
        f"{', '.join(f'{k} {v}' for k, v in machine['versions'].items())}.  ",
        f"Load average (1, 5, 15 min) at start {machine['load_average_1_5_15min']}, after each worker "
        f"process {', '.join(str(x) for x in results['load_average_after_each_process'])}: a shared "
        "2-core machine with other jobs running, so absolute rates vary with the load; only paired "
        "ratios are read.",
        "",
        "## Method",
        "",
        "Both stacks simulate **one `MjModel` and one `MjData`** per family (same memory, same task),",
        "so instance placement and the task cannot differ between them:",
        "",
        "* **metarl**: `family.make_env(task)`: the family env in one `TaskWrapper` (task, action and",
        "  reset-before-step checks, `info['task_id']`, the 200-step horizon);",
        "* **Gymnasium** (the bare env): `gymnasium.make(<v5 id>, max_episode_steps=200, <the family's",
        "  env keywords>)`: Gymnasium's own env class (`HalfCheetahEnv`, `AntEnv`, ...) in its default",
        "  `TimeLimit(OrderEnforcing(PassiveEnvChecker(env)))`, with its `model` and `data` replaced by",
        "  the family env's.",
        "",
        "`gymnasium.make` with its default wrappers is the bare env as users get it, and metarl's one",
        "`TaskWrapper` takes the place of those three wrappers, so the comparison is stack to stack.",
        "The difference is thus exactly what metarl adds per step (the task reward and task `info` of",
        "reward families; `TaskWrapper`'s task, reset-before-step and action checks and",
        "`info['task_id']`) against what Gymnasium's default wrappers cost. Before timing, the script",
        "asserts that both stacks follow the same trajectory and, for the reward families, that the",
        "Gymnasium stack's observations equal a fresh `gymnasium.make` env's (dynamics families run",
        "their first test task on both sides, so the randomised model).",
        "",
        f"Each repetition runs the same {results['steps_per_rep']} pre-generated uniform random actions",
        "from one reset seed (resets at termination and at the 200-step horizon, inside the timing)",
        "through metarl, Gymnasium and Gymnasium again (an A/A control: its distance from 0% is the",
        "noise floor), in an order cycling through all six permutations. Every timed run follows",
        f"{results['warmup_steps']} untimed steps of the same stack: both stacks run Gymnasium's env",
        "code, and Python's specialising interpreter re-tunes that code to the type of `self` over",
        "some 80 steps after a switch (counted with callgrind), a cost only an arm following the other",
        "stack would otherwise pay. The repetitions are spread over worker processes run one after",
        "another (fresh interpreter and envs), because one process's memory layout shifts its ratio",
        "by about a percent; the per-process medians show it.",
        "",
        "Overhead = median over all repetitions of the paired ratio metarl/Gymnasium - 1 of process",
        "CPU time per step, with a 95% CI from a hierarchical bootstrap (processes, then repetitions",
        "within them); us/step = median paired difference, same CI.",
        "",
        "## Results (process CPU time)",
        "",
        "| family | bare env | reps | Gymnasium us/step | metarl steps/s | Gymnasium steps/s | "
        "overhead [95% CI] | per process | us/step [95% CI] | A/A control [95% CI] | wall-time overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, w = r["cpu"], r["wall"]
        per_process = ", ".join(f"{x:+.1f}" for x in c["overhead_pct_per_process"])
        lines.append(
            f"| {r['family']} | {r['bare_env']} | {r['reps']} | {c['gymnasium_us_per_step']:.1f} | "
            f"{c['metarl_steps_per_s']:,.0f} | {c['gymnasium_steps_per_s']:,.0f} | "
            f"**{c['overhead_pct']:+.2f}%** {ci(c['overhead_pct_ci95'], '+.2f')} | {per_process} | "
            f"{c['overhead_us_per_step']:+.2f} {ci(c['overhead_us_per_step_ci95'], '+.2f')} | "
            f"{c['control_pct']:+.2f}% {ci(c['control_pct_ci95'], '+.2f')} | {w['overhead_pct']:+.2f}% |"
        )
    largest = max(rows, key=lambda r: r["cpu"]["overhead_pct"])
    above = [r["family"] for r in rows if r["cpu"]["overhead_pct_ci95"][1] > 5.0]
    lines += [
        "",
        "Target: at most 5% overhead per family. Medians: "
        + ("all within" if largest["cpu"]["overhead_pct"] <= 5.0 else "not all within")
        + f" (largest {largest['cpu']['overhead_pct']:+.2f}%, {largest['family']}). Upper ends of the 95% CIs: "
        + (f"above 5% for {', '.join(above)}." if above else "all within 5%."),
        "",
        "Per-repetition times of every arm, per process, are in `results.json` (`cpu_us_per_step_reps`,",
        "`wall_us_per_step_reps`).",
    ]
    return "\n".join(lines) + "\n"


def worker(args: argparse.Namespace, out: Path) -> None:
    """One worker process: every family's share of the repetitions, written to ``out`` as JSON."""
    shares = {}
    for family_id in args.families:
        shares[family_id] = measure(
            family_id,
            args.seconds / args.processes,
            args.steps,
            args.warmup,
            args.seed,
            args.min_reps,
            args.max_reps,
        )
        cpu = shares[family_id]["times"]["cpu"]
        ratio = np.median(np.asarray(cpu["metarl"]) / np.asarray(cpu["gymnasium"])) - 1.0
        print(f"  {family_id:26s} reps {len(cpu['metarl']):4d}  overhead {100 * ratio:+6.2f}%", flush=True)
    out.write_text(json.dumps(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/mujoco_overhead"))
    parser.add_argument(
        "--seconds", type=float, default=16.0, help="timing budget per family (all processes)"
    )
    parser.add_argument("--processes", type=int, default=3, help="worker processes, run one after another")
    parser.add_argument("--steps", type=int, default=400, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=120, help="untimed steps before each timed run")
    parser.add_argument("--min-reps", type=int, default=20, help="per process")
    parser.add_argument("--max-reps", type=int, default=600, help="per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args, args.worker)
        return
    meta = run_metadata(args.seed)
    shares: dict[str, list[dict[str, Any]]] = {f: [] for f in args.families}
    loads = [meta["machine"]["load_average_1_5_15min"]]
    with tempfile.TemporaryDirectory() as tmp:
        for p in range(args.processes):
            out = Path(tmp) / f"worker{p}.json"
            families = args.families[p % len(args.families) :] + args.families[: p % len(args.families)]
            command = [sys.executable, __file__, "--worker", str(out), "--families", *families]
            for name in ("seconds", "processes", "steps", "warmup", "min_reps", "max_reps", "seed"):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            print(f"worker process {p + 1}/{args.processes}", flush=True)
            subprocess.run(command, check=True)
            for family_id, share in json.loads(out.read_text()).items():
                shares[family_id].append(share)
            loads.append(machine_info()["load_average_1_5_15min"])
    rows = [summarize(family_id, shares[family_id], args.seed) for family_id in args.families]
    for row in rows:
        c = row["cpu"]
        print(
            f"{row['family']:26s} reps {row['reps']:4d}  gym {c['gymnasium_us_per_step']:7.1f} us  "
            f"overhead {c['overhead_pct']:+6.2f}% {ci(c['overhead_pct_ci95'], '+.2f')}  "
            f"{c['overhead_us_per_step']:+6.2f} us  control {c['control_pct']:+6.2f}% "
            f"{ci(c['control_pct_ci95'], '+.2f')}  wall {row['wall']['overhead_pct']:+6.2f}%"
        )
    results = {
        "rows": rows,
        "steps_per_rep": args.steps,
        "warmup_steps": args.warmup,
        "seconds_per_family": args.seconds,
        "processes": args.processes,
        "target_overhead_pct": 5.0,
        **meta,
        "load_average_after_each_process": loads[1:],
    }
    if args.no_write:
        print(render(results))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(args.out / "README.md", render(results))
    print(f"wrote {args.out}/results.json and README.md")


if __name__ == "__main__":
    main()
