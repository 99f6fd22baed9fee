"""Seconds per MAML-TRPO meta-iteration with the paper's batch, old path ("loop") vs the batched one.

* ``iteration --family HalfCheetahVel-v0``: whole meta-iterations (sampling / inner updates / outer
  update), the task batchings interleaved in one process, median per batching;
* ``outer --size cheetah``: only :meth:`MAMLTRPO.meta_step` on a synthetic batch of the right
  shapes (random data, no sampling): loop vs batched vs batched with ``hvp_subsample=0.2``, and the
  batched step with 1 vs 2 torch threads, interleaved.

Results are merged into ``benchmarks/maml_iteration/results.json`` (one key per run).

    python scripts/bench_maml_iteration.py outer --size cheetah --reps 3
    python scripts/bench_maml_iteration.py iteration --family HalfCheetahVel-v0 --iterations 1
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import metarl
import metarl.memory
from metarl.agents.maml_train import build, make_train_family, meta_iteration
from metarl.agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig, TaskTensors
from metarl.provenance import run_metadata

app = typer.Typer(add_completion=False, help=__doc__)
OUT = Path("benchmarks/maml_iteration")


def _config(family: str) -> MAMLTRPOConfig:
    if family == "HalfCheetahVel-v0":
        from maml_cheetah_vel import CONFIG
    elif family == "Navigation2D-v0":
        from maml_nav2d import CONFIG
    else:
        raise typer.BadParameter(f"knows Navigation2D-v0 and HalfCheetahVel-v0, not {family!r}")
    return CONFIG


def _save(key: str, value: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(json.dumps(value, indent=1))


def _variant(base: MAMLTRPOConfig, spec: str) -> MAMLTRPOConfig:
    """``"batched"``, or ``"batched:hvp_subsample=0.1:optim_threads=2"``: a batching plus overrides."""
    batching, *overrides = spec.split(":")
    changes: dict[str, Any] = {"task_batching": batching}
    for item in overrides:
        key, _, value = item.partition("=")
        changes[key] = json.loads(value)
    return base.replace(**changes)


@app.command()
def iteration(family: str = "HalfCheetahVel-v0", iterations: int = 1, seed: int = 0, threads: int = 1,
              batchings: str = "loop,batched", keep_freed_memory: bool = True) -> None:  # fmt: skip
    """Whole meta-iterations, the variants interleaved (same tasks and seeds for each). ``batchings``
    is a comma-separated list of ``batching[:key=value...]`` (e.g. ``batched:hvp_subsample=0.1``).
    ``--no-keep-freed-memory``: glibc's default malloc instead of what training uses (metarl.memory)."""
    if keep_freed_memory:
        metarl.memory.keep_freed_memory()
    torch.set_num_threads(threads)
    names = batchings.split(",")
    base = dataclasses.replace(_config(family), seed=seed)
    fam = make_train_family(base)
    tasks = fam.train[: base.meta_batch_size]
    vec = metarl.make_vec(fam, tasks, envs_per_task=base.episodes_per_task, backend=base.backend)
    algos = {b: build(_variant(base, b), fam) for b in names}
    rows: dict[str, list[dict[str, float]]] = {b: [] for b in names}
    start_meta = run_metadata(seed)
    for i in range(iterations):
        for b in names:
            algo, gen = algos[b]
            t0 = time.perf_counter()
            stats = meta_iteration(algo, vec, np.random.default_rng([seed, i]), gen)
            stats["t_total"] = time.perf_counter() - t0
            stats["optimisation_share"] = (stats["t_inner"] + stats["t_outer"]) / stats["t_total"]
            rows[b].append(stats)
            print(
                b, {k: round(stats[k], 2) for k in ("t_sample", "t_inner", "t_outer", "t_total")}, flush=True
            )
    vec.close()
    summary = {
        b: {
            k: statistics.median(r[k] for r in rows[b])
            for k in ("t_sample", "t_inner", "t_outer", "t_total", "optimisation_share")
        }
        | {"ls_tries": [r["ls_tries"] for r in rows[b]], "iterations": len(rows[b])}
        for b in names
    }
    key = f"iteration/{family}/{batchings}" + ("" if keep_freed_memory else "/system-malloc")
    _save(key, {"seconds_median": summary, "per_iteration": rows, "keep_freed_memory": keep_freed_memory,
                "meta_start": start_meta, "meta_end": run_metadata(seed)})  # fmt: skip


def _synthetic(size: str, seed: int) -> tuple[MAMLTRPOConfig, list[TaskTensors], TaskTensors, int, int]:
    cfg = _config("HalfCheetahVel-v0" if size == "cheetah" else "Navigation2D-v0")
    obs_dim, act_dim, horizon = (20, 6, 200) if size == "cheetah" else (2, 2, 100)
    K, N = cfg.meta_batch_size, cfg.episodes_per_task * horizon
    g = torch.Generator().manual_seed(seed)

    def data() -> TaskTensors:
        rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        return TaskTensors(rnd(K, N, obs_dim), rnd(K, N, act_dim), rnd(K, N), torch.full((K, N), 1.0 / N))

    return cfg, [data()], data(), obs_dim, act_dim


@app.command()
def outer(size: str = "cheetah", reps: int = 3, seed: int = 0) -> None:
    """Only the outer step (meta_step) on random data of the paper's shapes, variants interleaved."""
    cfg, inner, valid, obs_dim, act_dim = _synthetic(size, seed)
    from metarl.agents.policies import GaussianMLPPolicy

    policy = GaussianMLPPolicy(obs_dim, act_dim, cfg.hidden_sizes, cfg.nonlinearity)
    policy.reset_parameters(torch.Generator().manual_seed(seed))
    variants: dict[str, tuple[MAMLTRPOConfig, int]] = {
        "loop, 1 thread": (dataclasses.replace(cfg, task_batching="loop"), 1),
        "batched, 1 thread": (dataclasses.replace(cfg, task_batching="batched"), 1),
        "batched, 2 threads": (dataclasses.replace(cfg, task_batching="batched"), 2),
        "batched + hvp_subsample=0.2, 1 thread": (
            dataclasses.replace(cfg, task_batching="batched", hvp_subsample=0.2), 1),
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in variants}
    start_meta = run_metadata(seed)
    for _ in range(reps):
        for name, (c, threads) in variants.items():
            torch.set_num_threads(threads)
            algo = MAMLTRPO(copy.deepcopy(policy), c)
            t0 = time.perf_counter()
            stats = algo.meta_step(inner, valid, torch.Generator().manual_seed(seed))
            times[name].append(time.perf_counter() - t0)
            print(name, round(times[name][-1], 2), "ls_tries", stats["ls_tries"], flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["loop, 1 thread"]
    _save(f"outer/{size}", {"seconds": times, "median": med, "speedup_vs_loop": {k: ref / v for k, v in med.items()},
                            "meta_start": start_meta, "meta_end": run_metadata(seed)})  # fmt: skip


if __name__ == "__main__":
    app()
