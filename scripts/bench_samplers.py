"""Local sampler vs Ray sampler on one machine: what Ray's scheduling and transfer cost.

Both samplers collect the same batch (bit-identical, checked) with the numpy reference policy
:class:`metarl.samplers.LinearGaussianPolicy`; repetitions are interleaved (local, Ray, local, ...)
so that load from other processes hits both alike, and medians are reported. The Ray sampler's
start-up (``ray.init`` and the actors' first import) is timed separately and excluded from the
per-iteration times, as a training run pays it once.

Usage::

    python scripts/bench_samplers.py [--reps 5] [--workers 2] [--seed 0] [--out benchmarks/samplers]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import metarl
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata
from metarl.samplers import LinearGaussianPolicy, LocalSampler, RaySampler


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    family_id: str
    n_tasks: int
    episodes_per_task: int
    envs_per_task: int


CASES = (
    Case("Navigation2D-v0", 20, 20, 20),
    Case("HalfCheetahVel-v0", 4, 4, 4),
)


def _same(a: metarl.EpisodeBatch, b: metarl.EpisodeBatch) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True) for f in fields(a))


def run_case(case: Case, reps: int, workers: int, seed: int) -> dict[str, Any]:
    """Interleaved timings of both samplers on ``case``; medians and the raw samples."""
    family = metarl.make_family(case.family_id)
    tasks = family.train[: case.n_tasks]
    probe = family.make_env()
    obs_space, act_space = probe.observation_space, probe.action_space
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
    obs_dim = int(np.prod(obs_space.shape))
    act_dim = int(np.prod(act_space.shape))
    probe.close()
    state = LinearGaussianPolicy.init_state(obs_dim, act_dim, np.random.default_rng(seed))
    factory = LinearGaussianPolicy()
    local = LocalSampler(family, case.envs_per_task)
    t0 = time.perf_counter()
    ray_sampler = RaySampler(family, case.envs_per_task, num_workers=workers)
    first = ray_sampler.sample(factory, state, tasks, case.episodes_per_task, seed)
    startup = time.perf_counter() - t0
    reference = local.sample(factory, state, tasks, case.episodes_per_task, seed)
    identical = _same(first, reference)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for rep in range(reps):
        for name, sampler in (("local", local), ("ray", ray_sampler)):
            t0 = time.perf_counter()
            batch = sampler.sample(factory, state, tasks, case.episodes_per_task, seed + 1 + rep)
            times[name].append(time.perf_counter() - t0)
        steps = batch.env_steps
    local.close()
    ray_sampler.close()
    med = {name: statistics.median(t) for name, t in times.items()}
    return {
        "family_id": case.family_id,
        "n_tasks": case.n_tasks,
        "episodes_per_task": case.episodes_per_task,
        "envs_per_task": case.envs_per_task,
        "env_steps_per_batch": steps,
        "ray_workers": workers,
        "identical_batches": identical,
        "ray_startup_seconds": startup,
        "median_seconds": med,
        "median_steps_per_second": {name: steps / t for name, t in med.items()},
        "ray_over_local": med["ray"] / med["local"],
        "seconds": times,
    }


def _markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Local sampler vs Ray sampler (one machine)",
        "",
        "Same batch from both samplers (bit-identical: checked on every case), numpy linear-Gaussian",
        "policy, repetitions interleaved, medians. Ray runs a local instance with "
        f"{results[0]['ray_workers']} rollout actors; its start-up is excluded from the per-batch time.",
        "",
        "| family | tasks x episodes | env steps | local s | Ray s | Ray / local | Ray start-up s | identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['family_id']} | {r['n_tasks']} x {r['episodes_per_task']} | {r['env_steps_per_batch']} "
            f"| {r['median_seconds']['local']:.3f} | {r['median_seconds']['ray']:.3f} "
            f"| {r['ray_over_local']:.2f} | {r['ray_startup_seconds']:.1f} | {r['identical_batches']} |"
        )
    machine = meta["machine"]
    lines += [
        "",
        f"- command: `{meta['command']}`",
        f"- seed: {meta['seed']}; commit: `{meta['commit']}`; date: {meta['date']}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}, "
        f"Python {machine['python']}, {machine['versions']}",
        f"- load average at the start: {meta['load_average']} (the cores are shared with other jobs)",
        "",
        "On one machine Ray cannot be faster than the local sampler when the local vector env is",
        "already batched: the Ray time is the local work split over the actors plus the weight",
        "broadcast, task submission and the return of the episodes through the object store. Ray pays",
        "off when the actors run on other nodes (see the README's 'Distributed sampling on Ray').",
        "Each actor runs one MuJoCo physics thread per CPU it reserves (`METARL_MUJOCO_THREADS`), the",
        "local sampler one per core; the cores are shared with other jobs, so single repetitions vary",
        "widely (raw times in `results.json`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/samplers"))
    parser.add_argument("--families", nargs="*", default=None, help="family ids to run (default: all)")
    args = parser.parse_args(argv)
    meta = run_metadata(seed=args.seed)
    meta["load_average"] = [round(x, 2) for x in os.getloadavg()]
    registered = set(metarl.list_families())
    results = []
    for case in CASES:
        if case.family_id not in registered or (args.families and case.family_id not in args.families):
            continue
        print(f"{case.family_id}: {case.n_tasks} tasks x {case.episodes_per_task} episodes", file=sys.stderr)
        results.append(run_case(case, args.reps, args.workers, args.seed))
        print(f"  median s: {results[-1]['median_seconds']}", file=sys.stderr)
    atomic_write_text(
        args.out / "results.json", json.dumps({"metadata": meta, "results": results}, indent=1) + "\n"
    )
    atomic_write_text(args.out / "README.md", _markdown(results, meta))


if __name__ == "__main__":
    main()
