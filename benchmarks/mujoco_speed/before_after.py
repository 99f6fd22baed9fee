"""Before/after of ``BatchedPhysics`` in one process: the version at ``--before`` (git) against the
current one, in the same ``MujocoVectorEnv`` (HalfCheetahVel, 160 sub-envs, the benchmark's MLP
policy in the loop), interleaved repetitions, plus the CPU time of one policy step split into its
parts on one thread (CPU time is less disturbed by other jobs on a shared machine than wall time).

    python benchmarks/mujoco_speed/before_after.py [--before c84aee3] [--reps 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import metarl
import metarl.envs.mujoco_batched as mb
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from bench_mujoco_speed import act, make_policy, time_raw, time_vector


def load_before(commit: str) -> Any:
    source = subprocess.run(
        ["git", "show", f"{commit}:envs/mujoco_physics.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "mujoco_physics_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("mujoco_physics_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_split(vec: Any, policy: torch.nn.Module, steps: int, reps: int) -> dict[str, float]:
    """Median CPU microseconds per policy step (this thread) of the policy, the physics and the rest."""
    phys = vec._physics
    parts: dict[str, list[float]] = {"policy": [], "physics": [], "env_rest": []}
    for _ in range(reps):
        obs, _ = vec.reset(seed=0)
        acc = dict.fromkeys(parts, 0.0)
        inner = phys.step

        def timed(a: np.ndarray, inner: Any = inner, acc: dict[str, float] = acc) -> None:
            t = time.thread_time()
            inner(a)
            acc["physics"] += time.thread_time() - t

        phys.step = timed
        for _ in range(steps):
            t = time.thread_time()
            a = act(policy, obs)
            acc["policy"] += time.thread_time() - t
            t = time.thread_time()
            obs, *_ = vec.step(a)
            acc["env_rest"] += time.thread_time() - t
        del phys.step
        acc["env_rest"] -= acc["physics"]
        for k in parts:
            parts[k].append(acc[k] / steps * 1e6)
    return {k: float(np.median(v)) for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="c84aee3bf16331d35f701a18de859e21704c441d")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "before_after.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = run_metadata(0)
    before = load_before(args.before)
    fam = metarl.make_family("HalfCheetahVel-v0")
    tasks = list(fam.train[:40])
    policy = make_policy(17, 6, 0)
    after_cls = mb.BatchedPhysics
    envs: dict[str, Any] = {}
    for label, cls in (("before", before.BatchedPhysics), ("after", after_cls)):
        mb.BatchedPhysics = cls
        try:
            envs[f"{label}_{args.threads}threads"] = mb.MujocoVectorEnv(
                fam, tasks, 4, num_threads=args.threads
            )
            envs[f"{label}_1thread"] = mb.MujocoVectorEnv(fam, tasks, 4, num_threads=1)
        finally:
            mb.BatchedPhysics = after_cls
    model = envs["after_1thread"]._physics.models[0]
    modes = {k: (lambda v=v: time_vector(v, policy, args.steps)) for k, v in envs.items() if "threads" in k}
    modes["raw_ceiling"] = lambda: time_raw(model, 5, 160, args.steps, args.threads, 0)
    samples: dict[str, list[float]] = {k: [] for k in modes}
    for rep in range(args.reps):
        for key in list(modes) if rep % 2 == 0 else list(reversed(modes)):
            samples[key].append(modes[key]())
    s = {k: np.array(v) for k, v in samples.items()}
    b, a = f"before_{args.threads}threads", f"after_{args.threads}threads"
    results = {
        "metadata": meta,
        "before_commit": args.before,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "median_steps_per_s": {k: float(np.median(v)) for k, v in s.items()},
        "after_over_before": {
            "ratio_of_medians": float(np.median(s[a]) / np.median(s[b])),
            "median_paired": float(np.median(s[a] / s[b])),
        },
        "over_raw_ceiling": {
            k: {
                "ratio_of_medians": float(np.median(s[k]) / np.median(s["raw_ceiling"])),
                "median_paired": float(np.median(s[k] / s["raw_ceiling"])),
            }
            for k in (b, a)
        },
        "cpu_us_per_step_1thread": {
            label: cpu_split(envs[f"{label}_1thread"], policy, args.steps, 5) for label in ("before", "after")
        },
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "samples_steps_per_s": samples,
    }
    for v in envs.values():
        v.close()
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in results.items() if k not in ("samples_steps_per_s", "metadata")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
