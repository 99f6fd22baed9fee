"""Benchmark MAML-TRPO on Navigation2D-v0 against the baselines of Finn et al. 2017 (figure 2).

Steps (each a sub-command; ``all`` runs them in order):

* ``maml``: meta-train MAML-TRPO with ``scripts/maml_nav2d.py``'s config;
* ``pretrain``: the "pretrained" baseline, one policy trained with TRPO on all training tasks
  jointly (the same trainer with ``inner_steps=0``: no adaptation inside the objective);
* ``timing``: one meta-iteration split into sampling / inner updates / outer update, for both
  task batchings ("loop" and "vmap");
* ``evaluate``: meta-test on the held-out test tasks after 0, 1, 2, 3 gradient steps (20 episodes
  per step) for MAML, the pretrained policy and a random initialisation (each adapted with the
  same REINFORCE steps of size 0.1), and the exact oracle; writes ``results.json``, ``README.md``
  and ``adaptation.png`` to ``benchmarks/maml_nav2d/``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from maml_nav2d import CONFIG

import metarl
from metarl.agents.checkpoint import load_latest_checkpoint
from metarl.agents.maml_train import build, meta_iteration, restore, train
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.scripted import Navigation2DOracle

app = typer.Typer(add_completion=False, help=__doc__)
OUT = Path("benchmarks/maml_nav2d")
PAPER = {"maml-trpo": [-40.4, -11.7, -3.3, None], "oracle": [-2.3] * 4}


def _maml_config(seed: int) -> MAMLTRPOConfig:
    return dataclasses.replace(CONFIG, seed=seed, run_dir=f"runs/maml_trpo/{CONFIG.family}/seed{seed}")


def _pretrain_config(seed: int) -> MAMLTRPOConfig:
    return dataclasses.replace(
        CONFIG, seed=seed, inner_steps=0, run_dir=f"runs/maml_trpo/{CONFIG.family}/pretrained_seed{seed}"
    )


@app.command()
def maml(seed: int = 0, time_budget_s: float = 2100.0, resume: bool = False) -> None:
    """Meta-train MAML-TRPO (stops at 500 iterations or the time budget)."""
    torch.set_num_threads(1)
    train(dataclasses.replace(_maml_config(seed), time_budget_s=time_budget_s), resume=resume)


@app.command()
def pretrain(seed: int = 0, time_budget_s: float = 900.0, resume: bool = False) -> None:
    """Train the pretrained baseline: TRPO on all training tasks, no inner step."""
    torch.set_num_threads(1)
    train(dataclasses.replace(_pretrain_config(seed), time_budget_s=time_budget_s), resume=resume)


def _time_iterations(config: MAMLTRPOConfig, iterations: int) -> dict[str, float]:
    algo, gen = build(config)
    family = metarl.make_family(config.family)
    rng = np.random.default_rng(config.seed)
    vec = metarl.make_vec(
        family, family.train[: config.meta_batch_size], envs_per_task=config.episodes_per_task
    )
    rows = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        stats = meta_iteration(algo, vec, rng, gen)
        rows.append({**stats, "total": time.perf_counter() - t0})
    keys = ("t_sample", "t_inner", "t_outer", "total")
    return {k: float(np.median([r[k] for r in rows])) for k in keys} | {"iterations": iterations}


@app.command()
def timing(iterations: int = 3, family: str = CONFIG.family, threads: int = 1) -> None:
    """Median seconds per meta-iteration, split, for task_batching 'loop' and 'vmap'."""
    torch.set_num_threads(threads)
    if family == CONFIG.family:
        base = _maml_config(0)
    elif family == "HalfCheetahVel-v0":
        from maml_cheetah_vel import CONFIG as CHEETAH_VEL

        base = CHEETAH_VEL
    else:
        raise typer.BadParameter(f"timing knows Navigation2D-v0 and HalfCheetahVel-v0, not {family!r}")
    out = {
        b: _time_iterations(dataclasses.replace(base, task_batching=b), iterations) for b in ("loop", "vmap")
    }
    out["meta"] = {"family": family, "threads": threads, "load_average": list(_loadavg()), **_provenance()}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"timing_{family}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ()


def _provenance() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {torch.get_num_threads()} torch thread(s)",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
    }


def _load(config: MAMLTRPOConfig) -> tuple[Any, dict[str, Any]]:
    algo, _ = build(config)
    found = load_latest_checkpoint(Path(config.run_dir) / "checkpoints", ("format", "policy"))
    if found is None:
        raise typer.BadParameter(f"no checkpoint in {config.run_dir}/checkpoints; train first")
    restore(algo, found[1])
    return algo, {"checkpoint": str(found[0]), "iteration": int(found[1]["iteration"]),
                  "env_steps": int(found[1]["env_steps"])}  # fmt: skip


def _progress(run_dir: str) -> list[dict[str, str]]:
    import csv

    with (Path(run_dir) / "progress.csv").open() as fh:
        return list(csv.DictReader(fh))


def _train_wall(run_dir: str) -> float:
    rows = _progress(run_dir)
    return float(rows[-1]["wall_s"]) if rows else 0.0


def _iteration_split(run_dir: str) -> dict[str, float]:
    """Median seconds per meta-iteration of the actual training run, by phase."""
    rows = _progress(run_dir)
    return {k: float(np.median([float(r[k]) for r in rows])) for k in ("t_sample", "t_inner", "t_outer")}


@app.command()
def evaluate(
    seed: int = 0, eval_seed: Annotated[int, typer.Option(help="Seed of the meta-test episodes.")] = 12345
) -> None:
    """Meta-test every learner on the test split and write results.json, README.md, adaptation.png."""
    torch.set_num_threads(1)
    family = metarl.make_family(CONFIG.family)
    maml_algo, maml_info = _load(_maml_config(seed))
    pre_algo, pre_info = _load(_pretrain_config(seed))
    random_algo, _ = build(_maml_config(seed + 1000))
    learners = [
        (maml_algo.learner("maml-trpo"), maml_info),
        (pre_algo.learner("pretrained"), pre_info),
        (random_algo.learner("random-init"), {"seed": seed + 1000}),
        (Navigation2DOracle(), {}),
    ]
    results, t0 = [], time.perf_counter()
    for learner, _ in learners:
        results.append(metarl.evaluate(learner, family, rounds=4, episodes_per_round=20, seed=eval_seed))
    eval_wall = time.perf_counter() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        **_provenance(),
        "family": family.id,
        "test_tasks": len(family.test),
        "train_seed": seed,
        "eval_seed": eval_seed,
        "maml": maml_info,
        "pretrained": pre_info,
        "maml_train_wall_s": _train_wall(_maml_config(seed).run_dir),
        "pretrained_train_wall_s": _train_wall(_pretrain_config(seed).run_dir),
        "eval_wall_s": eval_wall,
        "maml_iteration_split_s": _iteration_split(_maml_config(seed).run_dir),
        "config": CONFIG.to_dict(),
        "paper": PAPER,
    }
    (OUT / "results.json").write_text(
        json.dumps({"meta": meta, "results": {r.learner: r.to_dict() for r in results}}, indent=1)
    )
    results[0].plot(OUT / "adaptation.png", others=results[1:])
    _write_readme(results, meta)
    print((OUT / "README.md").read_text())


def _write_readme(results: list[Any], meta: dict[str, Any]) -> None:
    lines = [
        "# MAML-TRPO on Navigation2D-v0",
        "",
        f"Mean return over the {meta['test_tasks']} held-out test tasks after 0-3 gradient steps (20 episodes "
        "per step per task; 95% bootstrap CI over tasks). Every learner except the oracle adapts with the same "
        "REINFORCE steps (size 0.1, per-task linear baseline).",
        "",
        "| learner | 0 steps | 1 step | 2 steps | 3 steps |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        cells = [f"{r['mean']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]" for r in res.summary()]
        lines.append(f"| {res.learner} | " + " | ".join(cells) + " |")
    lines.append("| paper MAML (Finn et al. 2017) | -40.4 | -11.7 | -3.3 | - |")
    lines.append("| paper oracle | -2.3 | -2.3 | -2.3 | -2.3 |")
    m = meta
    lines += [
        "",
        "![adaptation curves](adaptation.png)",
        "",
        "## Setup",
        "",
        f"- MAML-TRPO: {m['maml']['iteration']} meta-iterations ({m['maml']['env_steps']:,} env steps, "
        f"{m['maml_train_wall_s'] / 60:.1f} min), 20 tasks x 20 episodes per meta-batch, horizon 100, "
        "policy (64, 64) tanh, inner step 0.1, KL bound 0.01.",
        f"- Pretrained: TRPO on all training tasks jointly (`inner_steps=0`), {m['pretrained']['iteration']} "
        f"iterations ({m['pretrained_train_wall_s'] / 60:.1f} min).",
        "- Random init: the same architecture freshly initialised (seed train_seed + 1000).",
        "- Oracle: `metarl.agents.scripted.Navigation2DOracle` (walks straight to the known goal).",
        "",
        "Commands (seed 0; meta-test episodes seeded with eval_seed):",
        "",
        "```",
        f"python scripts/maml_nav2d.py --seed {m['train_seed']} --time-budget-s 2100   # = bench_maml_nav2d.py maml",
        f"python scripts/maml_nav2d.py --seed {m['train_seed']} --resume --time-budget-s 2400   # continued",
        f"python scripts/bench_maml_nav2d.py pretrain --seed {m['train_seed']}",
        f"python scripts/bench_maml_nav2d.py evaluate --seed {m['train_seed']} --eval-seed {m['eval_seed']}",
        "python scripts/bench_maml_nav2d.py timing",
        "```",
        "",
        f"Commit {m['commit']}, {m['date']}, machine: {m['machine']} (2 shared cores, no GPU), torch {m['torch']}; "
        f"meta-test wall-clock {m['eval_wall_s']:.0f} s.",
    ]
    split = m["maml_iteration_split_s"]
    run_config = Path(_maml_config(m["train_seed"]).run_dir) / "config.json"
    batching = json.loads(run_config.read_text()).get("task_batching", "loop") if run_config.exists() else "?"
    lines += ["", "## Seconds per meta-iteration", "",
              f"During the training run above (median over iterations, task batching '{batching}'): "
              f"sampling {split['t_sample']:.2f} s, inner updates {split['t_inner']:.2f} s, "
              f"outer TRPO update {split['t_outer']:.2f} s."]  # fmt: skip
    for timing_path in sorted(OUT.glob("timing_*.json")):
        t = json.loads(timing_path.read_text())
        lines += ["", f"Separate timing on {t['meta']['family']} (median of {t['loop']['iterations']} iteration(s)):", "",
                  "| task batching | sampling | inner | outer | total |", "|---|---|---|---|---|"]  # fmt: skip
        for b in ("loop", "vmap"):
            lines.append(
                f"| {b} | {t[b]['t_sample']:.2f} | {t[b]['t_inner']:.2f} | {t[b]['t_outer']:.2f} | {t[b]['total']:.2f} |"
            )
        lines.append(f"\nMeasured with load average {t['meta']['load_average']} on a shared machine.")
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    app()
