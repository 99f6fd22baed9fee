"""Benchmark MAML-TRPO against the baselines of Finn et al. 2017 (figures 2 and 5) on one family.

Families: Navigation2D-v0 (``scripts/maml_nav2d.py``'s config), HalfCheetahVel-v0 and
HalfCheetahDir-v0 (``scripts/maml_cheetah_{vel,dir}.py``). Steps, each a sub-command:

* ``pretrain``: the "pretrained" baseline, one policy trained with TRPO on all training tasks
  jointly (the MAML trainer with ``inner_steps=0``: no adaptation inside the objective), with
  the same validation-based selection as MAML;
* ``oracle``: for the locomotion families, a task-conditioned PPO policy (stable-baselines3) that
  sees the task parameters (Navigation2D uses the exact scripted oracle instead);
* ``select``: choose a checkpoint among runs (seeds) on the validation tasks with the meta-test
  protocol, for ``evaluate --maml-run <file>``;
* ``evaluate``: meta-test on the held-out test tasks after 0, 1, 2, 3 gradient steps (by default
  with the reference test scripts' batch and step sizes, ``TEST_PROTOCOL``) for MAML (``best.pt``
  of its run, else its newest checkpoint, or a checkpoint file), the pretrained policy and a random initialisation, each
  adapted with the same REINFORCE steps, and the oracle; writes ``results.json``, ``README.md`` and
  ``adaptation.png`` under ``benchmarks/maml_<name>/``.

MAML itself is trained by its script, e.g. ``python scripts/maml_nav2d.py --seed 0``.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import metarl
from metarl.agents.checkpoint import list_checkpoints, load_checkpoint, load_latest_checkpoint
from metarl.agents.maml_train import BEST_NAME, CHECKPOINT_FORMAT, build, restore, train
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.scripted import Navigation2DOracle
from metarl.fileio import atomic_write_text
from metarl.provenance import provenance_markdown, run_metadata

app = typer.Typer(add_completion=False, help=__doc__)

#: family -> (config script, output directory name, published numbers)
EXPERIMENTS: dict[str, tuple[str, str, dict[str, list[float | None]]]] = {
    "Navigation2D-v0": (
        "maml_nav2d",
        "maml_nav2d",
        {"maml-trpo": [-40.4, -11.7, -3.3, None], "oracle": [-2.3] * 4},
    ),
    "HalfCheetahVel-v0": ("maml_cheetah_vel", "maml_cheetah_vel", {}),
    "HalfCheetahDir-v0": ("maml_cheetah_dir", "maml_cheetah_dir", {}),
}
#: The meta-test protocol of the MAML reference code's test scripts (maml_examples/test_maml_point.py
#: and test_maml_cheetah.py): every gradient step on a batch of 4000 steps, i.e. 40 episodes of
#: Navigation2D's 100 steps or 20 of HalfCheetah's 200, and the steps after the first at half size.
#: (family -> (episodes per step, later_step_scale))
TEST_PROTOCOL: dict[str, tuple[int, float]] = {
    "Navigation2D-v0": (40, 0.5),
    "HalfCheetahVel-v0": (20, 0.5),
    "HalfCheetahDir-v0": (20, 0.5),
}
FamilyOpt = Annotated[str, typer.Option(help=f"One of {', '.join(EXPERIMENTS)}.")]


def _experiment(family: str) -> tuple[MAMLTRPOConfig, Path, dict[str, list[float | None]]]:
    if family not in EXPERIMENTS:
        raise typer.BadParameter(f"unknown family {family!r}; expected one of {', '.join(EXPERIMENTS)}")
    module, out, paper = EXPERIMENTS[family]
    return importlib.import_module(module).CONFIG, Path("benchmarks") / out, paper


def _maml_run(family: str, seed: int) -> str:
    return f"runs/maml_trpo/{family}/seed{seed}"


def _pretrain_run(family: str, seed: int) -> str:
    return f"runs/maml_trpo/{family}/pretrained_seed{seed}"


def _oracle_path(family: str, seed: int, given: str = "") -> Path:
    """The oracle model: ``given`` if the user named one, else ``runs/oracle/<family>/seed<seed>.zip``."""
    return Path(given) if given else Path("runs/oracle") / family / f"seed{seed}.zip"


@app.command()
def pretrain(
    family: FamilyOpt = "Navigation2D-v0",
    seed: int = 0,
    time_budget_s: float = 900.0,
    resume: bool = False,
    hvp_subsample: Annotated[float, typer.Option(help="As the MAML run's (1: exact).")] = 1.0,
    iterations: Annotated[int, typer.Option(help="TRPO iterations (0: the MAML config's).")] = 0,
    optim_threads: Annotated[int, typer.Option(help="torch threads for the updates (0: 1).")] = 0,
    run_dir: Annotated[
        str, typer.Option(help="Run directory (default: runs/maml_trpo/<family>/pretrained_seed<seed>).")
    ] = "",
) -> None:
    """Train the pretrained baseline: TRPO on all training tasks, no inner step."""
    torch.set_num_threads(1)
    config, _, _ = _experiment(family)
    config = dataclasses.replace(config, seed=seed, inner_steps=0, run_dir=run_dir or _pretrain_run(family, seed),
                                 time_budget_s=time_budget_s or None, hvp_subsample=hvp_subsample,
                                 meta_iterations=iterations or config.meta_iterations,
                                 optim_threads=optim_threads or None)  # fmt: skip
    train(config, resume=resume)


@app.command()
def oracle(
    family: FamilyOpt = "HalfCheetahVel-v0",
    seed: int = 0,
    timesteps: int = 1_000_000,
    algorithm: Annotated[str, typer.Option(help="Stable-Baselines3 algorithm: ppo or sac.")] = "ppo",
    n_envs: Annotated[
        int, typer.Option(help="Training envs stepped together (SAC: one update per step of them).")
    ] = 4,
    out: Annotated[
        str, typer.Option(help="Where the model goes (default runs/oracle/<family>/seed<seed>.zip).")
    ] = "",
) -> None:
    """Train the task-conditioned oracle of a locomotion family (saved under runs/oracle/)."""
    from metarl.agents.baselines import train_oracle

    torch.set_num_threads(1)
    path = _oracle_path(family, seed, out)
    model = train_oracle(
        metarl.make_family(family), seed=seed, total_timesteps=timesteps, algorithm=algorithm, n_envs=n_envs
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    print(f"saved {path}")


def _run_dir_of(path: Path) -> Path:
    """The run directory of a checkpoint file (``<run>/best.pt`` or ``<run>/checkpoints/ckpt_*.pt``)."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def _load(run_dir: str) -> tuple[Any, dict[str, Any]]:
    """A checkpoint file as given; for a run directory, its best validated checkpoint if it kept one,
    else its newest checkpoint."""
    best = Path(run_dir) / BEST_NAME
    if Path(run_dir).is_file():
        path, data = Path(run_dir), load_checkpoint(run_dir, CHECKPOINT_FORMAT)
    elif best.exists():
        path, data = best, load_checkpoint(best, CHECKPOINT_FORMAT)
    else:
        found = load_latest_checkpoint(Path(run_dir) / "checkpoints", ("format", "policy"))
        if found is None:
            raise typer.BadParameter(f"no checkpoint in {run_dir}; train first")
        path, data = found
    config = MAMLTRPOConfig.from_saved(json.loads(data["config"]))
    algo, _ = build(config)
    restore(algo, data, str(path))
    info = {"checkpoint": str(path), "iteration": int(data["iteration"]), "env_steps": int(data["env_steps"]),
            "validation_return": data.get("validation_return"), "config": config.to_dict()}  # fmt: skip
    return algo, info


def _progress(run_dir: str) -> list[dict[str, str]]:
    path = Path(run_dir) / "progress.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _run_summary(run_dir: str) -> dict[str, Any]:
    """Iterations and wall-clock of the whole run, and the median seconds per iteration by phase."""
    rows = _progress(run_dir)
    if not rows:
        return {}
    # a resumed run restarts its wall clock: add up the segments
    walls = [float(r["wall_s"]) for r in rows]
    segments = [w for w, nxt in itertools.pairwise(walls) if nxt < w] + [walls[-1]]
    return {
        "iterations": int(rows[-1]["iteration"]),
        "wall_s": sum(segments),
        "segments": len(segments),
        **{k: float(np.median([float(r[k]) for r in rows])) for k in ("t_sample", "t_inner", "t_outer")},
    }


def maml_learner_names(configs: list[dict[str, Any]], run_dirs: list[str]) -> list[str]:
    """One distinct learner name per MAML run: ``maml-trpo`` alone; with several, the training's
    inner steps and step size (and Meta-SGD), then the run directory's name where those coincide.
    The results are keyed by name, so two equal names would drop a learner."""
    if len(configs) == 1:
        return ["maml-trpo"]
    labels = [
        f"{c['inner_steps']}-step training, inner step {c['inner_lr']}"
        + (", Meta-SGD" if c.get("meta_sgd") else "")
        for c in configs
    ]
    repeated = [labels.count(label) > 1 for label in labels]
    for i, path in enumerate(map(Path, run_dirs)):
        if repeated[i]:  # a checkpoint file is named by its run and its own name
            labels[i] += (
                f", {_run_dir_of(path).name} {path.name}" if path.suffix == ".pt" else f", {path.name}"
            )
    names = [f"maml-trpo ({label})" for label in labels]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"--maml-run names the same run twice: {run_dirs}")
    return names


@app.command()
def evaluate(
    family: FamilyOpt = "Navigation2D-v0",
    seed: int = 0,
    eval_seed: Annotated[int, typer.Option(help="Seed of the meta-test episodes.")] = 12345,
    maml_run: Annotated[
        list[str] | None,
        typer.Option(help="MAML run directory (default runs/maml_trpo/<family>/seed<seed>); repeatable."),
    ] = None,
    pretrained_run: Annotated[
        str, typer.Option(help="Pretrained run directory (default .../pretrained_seed<seed>).")
    ] = "",
    later_step_scale: Annotated[
        float,
        typer.Option(
            help="Step size of every gradient step after the first, relative to the first, for every "
            "gradient learner (0: the reference test scripts' 0.5)."
        ),
    ] = 0.0,
    episodes_per_step: Annotated[
        int, typer.Option(help="Episodes per task and gradient step (0: the reference's 4000 steps' worth).")
    ] = 0,
    out_dir: Annotated[str, typer.Option(help="Output directory (default: benchmarks/maml_<family>).")] = "",
    oracle: Annotated[
        str,
        typer.Option(
            help="Oracle model of a locomotion family (default runs/oracle/<family>/seed<seed>.zip)."
        ),
    ] = "",
) -> None:
    """Meta-test every learner on the test split and write results.json, README.md, adaptation.png."""
    torch.set_num_threads(1)
    config, out, paper = _experiment(family)
    out = Path(out_dir) if out_dir else out
    episodes_per_step = episodes_per_step or TEST_PROTOCOL[family][0]
    later_step_scale = later_step_scale or TEST_PROTOCOL[family][1]
    fam = metarl.make_family(family)
    maml_runs = maml_run or [_maml_run(family, seed)]
    pretrained_run = pretrained_run or _pretrain_run(family, seed)
    learners: list[tuple[Any, dict[str, Any]]] = []
    maml_infos = []
    loaded = [_load(run_dir) for run_dir in maml_runs]
    names = maml_learner_names([info["config"] for _, info in loaded], maml_runs)
    for run_dir, name, (maml_algo, info) in zip(maml_runs, names, loaded, strict=True):
        info["selected"] = Path(run_dir).is_file()  # a checkpoint file, e.g. chosen by `select`
        info["run"] = _run_summary(str(_run_dir_of(Path(run_dir))) if info["selected"] else run_dir)
        info["run_dir"] = run_dir
        learners.append((maml_algo.learner(name, later_step_scale), info))
        maml_infos.append(info)
    maml_info = maml_infos[0]
    pre_info: dict[str, Any] | None = None
    if (Path(pretrained_run) / "checkpoints").is_dir() or (Path(pretrained_run) / BEST_NAME).exists():
        pre_algo, pre_info = _load(pretrained_run)
        learners.append((pre_algo.learner("pretrained", later_step_scale), pre_info))
    # the random initialisation uses the MAML run's parametrisation (e.g. normalize_actions)
    random_config = MAMLTRPOConfig.from_dict({**maml_info["config"], "seed": seed + 1000})
    random_algo, _ = build(random_config)
    learners.append((random_algo.learner("random-init", later_step_scale), {"seed": seed + 1000}))
    oracle_info: dict[str, Any] = {}
    if family == "Navigation2D-v0":
        learners.append((Navigation2DOracle(), {}))
        oracle_info = {"kind": "scripted: walks straight to the known goal"}
    elif oracle or _oracle_path(family, seed).exists():
        from metarl.agents.baselines import load_oracle

        oracle_path = _oracle_path(family, seed, oracle)
        oracle_learner = load_oracle(oracle_path)  # names a missing or malformed file
        learners.append((oracle_learner, {}))
        algorithm = oracle_learner.name.removeprefix("oracle-").upper()
        oracle_info = {"kind": f"task-conditioned SB3 {algorithm}", "path": str(oracle_path)}
    results, t0 = [], time.perf_counter()
    for learner, _ in learners:
        results.append(
            metarl.evaluate(learner, fam, rounds=4, episodes_per_round=episodes_per_step, seed=eval_seed)
        )
        print(
            learner.name if hasattr(learner, "name") else learner,
            results[-1].returns.mean(0).round(2),
            flush=True,
        )
    meta = {
        "provenance": run_metadata(eval_seed),
        "family": family,
        "test_tasks": len(fam.test),
        "train_seed": seed,
        "eval_seed": eval_seed,
        "later_step_scale": later_step_scale,
        "episodes_per_step": episodes_per_step,
        "maml": maml_infos,
        "pretrained": pre_info,
        "pretrained_run": _run_summary(pretrained_run),
        "pretrained_run_dir": pretrained_run,
        "oracle": oracle_info,
        "eval_wall_s": time.perf_counter() - t0,
        "script_config": config.to_dict(),
        "paper": paper,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "results.json",
        json.dumps({"meta": meta, "results": {r.learner: r.to_dict() for r in results}}, indent=1) + "\n",
    )
    results[0].plot(out / "adaptation.png", others=results[1:])
    _write_readme(out, results, meta)
    print((out / "README.md").read_text())


@app.command()
def select(
    run: Annotated[list[str], typer.Option(help="MAML run directory; repeatable (e.g. one per seed).")],
    family: FamilyOpt = "Navigation2D-v0",
    steps: Annotated[
        int, typer.Option(help="Score: mean validation return after 1..STEPS gradient steps.")
    ] = 2,
    top: Annotated[
        int,
        typer.Option(
            help="Candidates per run: its TOP checkpoints by the validation return logged in "
            "training (0: every kept checkpoint)."
        ),
    ] = 5,
    eval_seed: Annotated[int, typer.Option(help="Seed of the validation episodes.")] = 54321,
    later_step_scale: Annotated[float, typer.Option(help="As for evaluate (0: the reference's).")] = 0.0,
    episodes_per_step: Annotated[int, typer.Option(help="As for evaluate (0: the reference's).")] = 0,
    out: Annotated[
        str, typer.Option(help="Output stem for .json and .md (default benchmarks/maml_<family>/selection).")
    ] = "",
) -> None:
    """Choose one checkpoint among runs on the VALIDATION tasks, with the meta-test protocol.

    Training keeps ``best.pt`` by the validation return after its own inner steps, measured with the
    training batch. This scores candidate checkpoints of one or more runs (seeds, settings) as
    ``evaluate`` scores on the test tasks, but on the validation split, by the mean return after
    1..``steps`` gradient steps, and names the winner; pass that file to ``evaluate --maml-run``. The
    test tasks are not used.
    """
    torch.set_num_threads(1)
    if steps < 1:
        raise typer.BadParameter(f"--steps must be >= 1, got {steps}")
    if top < 0:
        raise typer.BadParameter(f"--top must be >= 0, got {top}")
    _, default_out, _ = _experiment(family)
    stem = Path(out) if out else default_out / "selection"
    episodes_per_step = episodes_per_step or TEST_PROTOCOL[family][0]
    later_step_scale = later_step_scale or TEST_PROTOCOL[family][1]
    fam = metarl.make_family(family)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for run_dir in run:
        candidates = _candidates(Path(run_dir), top)
        if not candidates:
            raise typer.BadParameter(f"--run {run_dir}: no checkpoints in {Path(run_dir) / 'checkpoints'}")
        for path, logged in candidates:
            algo, info = _load(str(path))
            res = metarl.evaluate(algo.learner("maml-trpo", later_step_scale), fam, split="validation",
                                  rounds=steps + 1, episodes_per_round=episodes_per_step, seed=eval_seed)  # fmt: skip
            per_round = res.returns.mean(0)
            rows.append({"run": run_dir, "checkpoint": str(path), "iteration": info["iteration"],
                         "logged_validation_return": logged,
                         "returns": [float(x) for x in per_round], "score": float(per_round[1:].mean())})  # fmt: skip
            print(f"{path}: {np.round(per_round, 2)} score {rows[-1]['score']:.2f}", flush=True)
    best = max(rows, key=lambda r: r["score"])
    provenance = run_metadata(eval_seed)
    meta = {"provenance": provenance, "family": family, "split": "validation",
            "validation_tasks": len(fam.validation), "steps": steps, "top": top, "eval_seed": eval_seed,
            "later_step_scale": later_step_scale, "episodes_per_step": episodes_per_step,
            "wall_s": time.perf_counter() - t0}  # fmt: skip
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        stem.with_suffix(".json"),
        json.dumps({"meta": meta, "selected": best, "candidates": rows}, indent=1) + "\n",
    )
    lines = [
        f"# MAML-TRPO checkpoint selection on the {family} validation tasks",
        "",
        f"Mean return over the {meta['validation_tasks']} validation tasks after 0-{steps} gradient steps "
        f"({episodes_per_step} episodes per step per task, later steps {later_step_scale:g} x the first, episodes "
        f"seeded with {eval_seed}). Score: mean after 1-{steps} steps. Candidates: "
        + (
            f"each run's {top} checkpoints with the best validation return logged in training."
            if top
            else "every kept checkpoint."
        ),
        "",
        "| run | iteration | logged validation | "
        + " | ".join(f"{k} step{'s' * (k != 1)}" for k in range(steps + 1))
        + " | score |",
        "|---|---|---|" + "---|" * (steps + 2),
    ]
    for r in sorted(rows, key=lambda r: -r["score"]):
        mark = "**" if r is best else ""
        shown = "-" if r["logged_validation_return"] is None else f"{r['logged_validation_return']:.2f}"
        lines.append(f"| {r['run']} | {r['iteration']} | {shown} | " + " | ".join(f"{x:.2f}" for x in r["returns"])
                     + f" | {mark}{r['score']:.2f}{mark} |")  # fmt: skip
    lines += ["", f"Selected: `{best['checkpoint']}`.", "",
              provenance_markdown(provenance) + f" Wall-clock {meta['wall_s']:.0f} s."]  # fmt: skip
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"selected {best['checkpoint']} (score {best['score']:.2f})")


def _candidates(run_dir: Path, top: int) -> list[tuple[Path, float | None]]:
    """The run's kept checkpoints with the validation return logged in training at their iteration
    (``None`` if none was), all of them or the ``top`` by that return."""
    logged: dict[int, float] = {}
    val = run_dir / "validation.csv"
    if val.exists():
        with val.open() as fh:
            reader = csv.DictReader(fh)
            # the return after the run's last inner step: the column best.pt is chosen by
            steps = [k for k in reader.fieldnames or () if k.startswith("return_step")]
            last = max(steps, key=lambda k: int(k.removeprefix("return_step")))
            logged = {int(row["iteration"]): float(row[last]) for row in reader}
    kept = [(p, logged.get(int(p.stem.split("_")[1]))) for p in list_checkpoints(run_dir / "checkpoints")]
    if top == 0:
        return kept
    scored = sorted((c for c in kept if c[1] is not None), key=lambda c: -float(c[1]))[:top]  # type: ignore[arg-type]
    return sorted(scored, key=lambda c: str(c[0])) or kept[-top:]


def _run_line(name: str, info: dict[str, Any], run: dict[str, Any]) -> str:
    cfg = info["config"]
    chosen = (
        f"checkpoint {info['checkpoint']} (iteration {info['iteration']}), chosen on the validation tasks by "
        "`bench_maml.py select`"
        if info.get("selected")
        else f"best validation checkpoint (iteration {info['iteration']}, validation return after "
        f"{cfg['inner_steps']} step(s) {info['validation_return']:.2f})"
        if info.get("validation_return") is not None
        else f"newest checkpoint (iteration {info['iteration']})"
    )
    trained = f"{run['iterations']} iterations in {run['wall_s'] / 60:.1f} min" if run else "?"
    if run.get("segments", 1) > 1:
        trained += f" (wall-clock summed over {run['segments']} resumed segments)"
    return (
        f"- {name}: {trained}; evaluated: {chosen}. {cfg['meta_batch_size']} tasks x "
        f"{cfg['episodes_per_task']} episodes per meta-batch, policy {tuple(cfg['hidden_sizes'])} "
        f"{cfg['nonlinearity']}, inner step {cfg['inner_lr']}, KL bound {cfg['max_kl']}, "
        f"normalize_actions={cfg['normalize_actions']}, clip_actions={cfg['clip_actions']}, "
        f"hvp_subsample={cfg['hvp_subsample']}."
    )


def _step_sizes(meta: dict[str, Any]) -> str:
    scale = meta.get("later_step_scale", 1.0)
    if scale == 1.0:
        return "each learner's inner step size"
    return (
        f"each learner's inner step size for the first step and {scale:g} times it for the later ones, "
        "as in the MAML reference's test scripts"
    )


def _train_command(family: str, run: str, default: str) -> str:
    """How ``run`` (a run directory or one of its checkpoints) was trained: ``metarl train`` with the
    run's saved ``config.json``, which holds every setting; ``default`` where the run has none."""
    saved = (_run_dir_of(Path(run)) if Path(run).is_file() else Path(run)) / "config.json"
    return f"metarl train maml-trpo --family {family} --config {saved}" if saved.is_file() else default


def _paired_lines(mamls: list[Any], others: list[Any]) -> list[str]:
    """Markdown table of each MAML learner minus each later MAML learner and each other learner,
    paired over the test tasks."""
    if not others and len(mamls) < 2:
        return []
    lines = [
        "",
        "Paired differences on the same test tasks (mean of the per-task differences; 95% bootstrap CI "
        "over tasks):",
        "",
        "| difference | 0 steps | 1 step | 2 steps | 3 steps |",
        "|---|---|---|---|---|",
    ]
    for i, maml in enumerate(mamls):
        for other in [*mamls[i + 1 :], *others]:
            rows = maml.paired_difference(other)
            cells = [f"{r['mean']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" for r in rows]
            lines.append(f"| {maml.learner} minus {other.learner} | " + " | ".join(cells) + " |")
    return lines


def _write_readme(out: Path, results: list[Any], meta: dict[str, Any]) -> None:
    family, paper = meta["family"], meta["paper"]
    prov = meta["provenance"]
    machine = prov["machine"]
    lines = [
        f"# MAML-TRPO on {family}",
        "",
        f"Mean return over the {meta['test_tasks']} held-out test tasks after 0-3 gradient steps "
        f"({meta.get('episodes_per_step', 20)} episodes per step per task; 95% bootstrap CI over tasks). Every "
        "learner except the oracle adapts with the same REINFORCE steps (per-task linear baseline; size "
        f"{_step_sizes(meta)}).",
        "",
        "| learner | 0 steps | 1 step | 2 steps | 3 steps |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        cells = [f"{r['mean']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]" for r in res.summary()]
        lines.append(f"| {res.learner} | " + " | ".join(cells) + " |")
    for name, values in paper.items():
        cells = ["-" if v is None else f"{v}" for v in values]
        lines.append(f"| paper {name} (Finn et al. 2017) | " + " | ".join(cells) + " |")
    lines += _paired_lines(results[: len(meta["maml"])], results[len(meta["maml"]) :])
    lines += ["", "![adaptation curves](adaptation.png)", "", "## Setup", ""]
    for info, res in zip(meta["maml"], results, strict=False):
        lines.append(_run_line(res.learner, info, info["run"]))
    if meta["pretrained"] is not None:
        lines.append(_run_line("Pretrained (TRPO on all training tasks, `inner_steps=0`)", meta["pretrained"],
                               meta["pretrained_run"]))  # fmt: skip
    else:
        lines.append("- Pretrained: not trained for this run.")
    lines.append(
        f"- Random init: the MAML architecture and parametrisation, freshly initialised (seed {meta['train_seed'] + 1000})."
    )
    lines.append(f"- Oracle: {meta['oracle'].get('kind', 'not trained for this run')}.")
    run = meta["maml"][0]["run"]
    if run:
        lines += ["", f"Median seconds per MAML meta-iteration during training: sampling {run['t_sample']:.2f}, "
                  f"inner updates {run['t_inner']:.2f}, outer TRPO update {run['t_outer']:.2f} (shared machine)."]  # fmt: skip
    s = meta["train_seed"]
    lines += [
        "",
        f"Commands (train seed {s}; meta-test episodes seeded with {meta['eval_seed']}):",
        "",
        "```",
        *(
            _train_command(family, info["run_dir"], f"python scripts/{EXPERIMENTS[family][0]}.py --seed {s}")
            for info in meta["maml"]
        ),
        *(
            [
                _train_command(
                    family,
                    meta["pretrained_run_dir"],
                    f"python scripts/bench_maml.py pretrain --family {family} --seed {s}",
                )
            ]
            if meta.get("pretrained")
            else []
        ),
        *(
            [
                f"python scripts/bench_maml.py oracle --family {family} --seed {s}"
                + (f" --out {meta['oracle']['path']}" if "path" in meta["oracle"] else "")
            ]
            if family != "Navigation2D-v0"
            else []
        ),
        f"python scripts/bench_maml.py evaluate --family {family} --seed {s} --eval-seed {meta['eval_seed']}"
        + "".join(f" --maml-run {info['run_dir']}" for info in meta["maml"] if "run_dir" in info)
        + (f" --pretrained-run {meta['pretrained_run_dir']}" if meta.get("pretrained") else "")
        + (f" --oracle {meta['oracle']['path']}" if "path" in meta["oracle"] else "")
        + f" --later-step-scale {meta['later_step_scale']:g} --episodes-per-step {meta['episodes_per_step']}"
        + f" --out-dir {out}",
        "```",
        "",
        f"Commit {prov['commit']}, {prov['date']}, machine: {machine['cpu']}, {machine['cores']} cores (shared, no "
        f"GPU), torch {machine['versions']['torch']}, {torch.get_num_threads()} torch thread(s), load average "
        f"{machine['load_average_1_5_15min']}; meta-test wall-clock {meta['eval_wall_s']:.0f} s.",
    ]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    app()
