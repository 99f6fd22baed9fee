"""Shared pieces of the ``scripts/rl2_*.py`` benchmark scripts: config files, training, records.

Each script has two sub-commands: ``train`` (one run into a run directory, resumable) and
``eval`` (held-out evaluation of finished runs, written under ``benchmarks/rl2/``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agents.rl2 import RL2Config, RL2Learner
from metarl.agents.rl2_train import latest_checkpoint, load_config, train, warm_start_lineage
from metarl.family import TaskFamily
from metarl.provenance import provenance_markdown, run_metadata

__all__ = [
    "BENCH_DIR",
    "add_gap_repeats_arg",
    "add_split_arg",
    "add_train_args",
    "argmax_learners",
    "check_gap_repeats",
    "check_output_stem",
    "gaps_markdown",
    "paired_gap",
    "per_episode_eval",
    "run_training",
    "runs_markdown",
    "training_record",
]

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "rl2"


def add_train_args(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", type=Path, default=BENCH_DIR / "configs" / default_config)
    parser.add_argument("--out", type=Path, default=None, help="run directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much training")
    parser.add_argument(
        "--max-updates",
        type=int,
        default=None,
        help="stop after this many updates in this call (e.g. where a time limit stopped a run being repeated)",
    )
    parser.add_argument("--total-steps", type=int, default=None, help="override total_env_steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="warm-start a new run with the weights of this run directory or checkpoint file",
    )
    parser.add_argument("--no-progress", action="store_true")


def check_output_stem(name: str) -> str:
    """``name`` if it is a file stem of letters, digits, '_' or '-' (an ``eval --name``); otherwise exit
    with an error naming it."""
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise SystemExit(f"--name must be a file stem of letters, digits, '_' or '-', got {name!r}")
    return name


def run_training(args: argparse.Namespace, overrides: Mapping[str, Any], run_name: str) -> Path:
    """Train one run from ``args.config`` with ``overrides``; return its directory."""
    if args.max_updates is not None and args.max_updates < 1:
        raise SystemExit(f"--max-updates must be a positive number of updates, got {args.max_updates}")
    torch.set_num_threads(args.threads)
    data = {**load_config(args.config), **dict(overrides), "seed": args.seed}
    if args.total_steps is not None:
        data["total_env_steps"] = args.total_steps
    config = RL2Config.from_dict(data, source=str(args.config))
    out = args.out or BENCH_DIR / "runs" / f"{run_name}_seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "provenance.jsonl").open("a") as fh:  # one line per (re)start of the run
        fh.write(json.dumps(run_metadata(seed=args.seed)) + "\n")
    agent = train(
        config,
        out,
        resume=args.resume,
        progress=not args.no_progress,
        max_seconds=None if args.minutes is None else args.minutes * 60.0,
        max_updates=args.max_updates,
        init_from=args.init_from,
    )
    print(
        f"{run_name}: {agent.updates} updates, {agent.env_steps} env steps, {agent.train_seconds:.0f}s -> {out}"
    )
    return out


def training_record(run_dir: Path) -> dict[str, Any]:
    """What a table should say about a run: steps, updates, training wall-clock, config."""
    found = latest_checkpoint(run_dir)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    path, state = found
    prov = Path(run_dir) / "provenance.jsonl"
    starts = (
        [json.loads(line) for line in prov.read_text().splitlines() if line.strip()] if prov.exists() else []
    )
    return {
        "run_dir": str(run_dir),
        # command, commit, machine and date of every (re)start of the training
        "provenance": starts,
        "checkpoint": path.name,
        "updates": int(state["updates"]),
        "env_steps": int(state["env_steps"]),
        "train_seconds": round(float(state["train_seconds"]), 1),
        # the runs whose weights this one started from, nearest first (their steps come on top)
        "warm_starts": warm_start_lineage(state),
        "config": json.loads(state["config"]),
    }


def trained_on(config: Mapping[str, Any]) -> str:
    """The task setting a run was trained on, from its config: the family's keyword arguments and
    the trial length (a model can be scored on another setting, e.g. n = 500 pulls after training
    with n = 100)."""
    parts = [f"{k}={v}" for k, v in sorted((config.get("family_kwargs") or {}).items())]
    if config.get("episodes_per_trial") is not None:
        parts.append(f"episodes_per_trial={config['episodes_per_trial']}")
    return ", ".join(parts) or "the family's defaults"


def runs_markdown(records: Mapping[str, Mapping[str, Any]]) -> str:
    """The Markdown table of the scored runs (from :func:`training_record`): the setting each was
    trained on, steps, updates, training wall-clock and directory, one row per scored setting."""
    lines = [
        "| setting | trained on | RL² env steps | updates | training wall-clock (s) | run |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in records.items():
        steps, updates, seconds, run = r["env_steps"], r["updates"], r["train_seconds"], f"`{r['run_dir']}`"
        chain = r.get("warm_starts") or []
        for i, warm in enumerate(chain):  # a warm-started run: its own training plus its sources'
            steps = f"{steps} + {warm['env_steps']}"
            updates = f"{updates} + {warm['updates']}"
            seconds = f"{seconds} + {warm['train_seconds']}"
            run += f", {'warm-started' if i == 0 else 'which was warm-started'} from `{warm['path']}`"
            if warm.get("earlier_unknown"):
                run += " (whose own source, if any, could not be read)"
        lines.append(f"| {key} | {trained_on(r['config'])} | {steps} | {updates} | {seconds} | {run} |")
    return "\n".join(lines)


def per_episode_eval(
    run_dir: Path,
    *,
    name: str,
    others: Mapping[str, Any] | None = None,
    n_tasks: int | None = None,
    seed: int = 0,
    family: TaskFamily | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Return per episode 1..N of a trial on the family's held-out ``split`` tasks, beside ``others``.

    Uses :func:`metarl.evaluate` with ``rounds = N`` and one episode per round: the RL² hidden state
    persists across rounds, so round ``r`` is episode ``r + 1`` of the trial. ``others`` are
    learners scored the same way (scripted references, classical agents). ``family`` defaults to
    the run's training family; pass another (for example the same family with longer trials) to
    score the model there. Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` under
    ``benchmarks/rl2/``.
    """
    from metarl.agents.rl2 import RL2Learner
    from metarl.evaluation import EvalResult, MetaLearner, evaluate
    from metarl.fileio import atomic_write_text

    torch.set_num_threads(1)
    learner = RL2Learner.load(run_dir)
    config = learner.config
    if family is None:
        family = config.make_family()
    n = config.resolve_episodes_per_trial(family)

    def score(who: MetaLearner) -> EvalResult:
        return evaluate(who, family, split=split, n_tasks=n_tasks, rounds=n, episodes_per_round=1, seed=seed)

    results = [score(learner)]
    results += [score(other) for other in (others or {}).values()]
    record: dict[str, Any] = {
        "provenance": run_metadata(seed=seed),
        "family": family.id,
        "split": split,
        "episodes_per_trial": n,
        "training": training_record(run_dir),
        "results": [r.to_dict() for r in results],
    }
    atomic_write_text(BENCH_DIR / f"{name}.json", json.dumps(record, indent=1) + "\n")
    md = _per_episode_markdown(results) + "\n\n" + provenance_markdown(record["provenance"])
    atomic_write_text(BENCH_DIR / f"{name}.md", md + "\n")
    _plot_per_episode(results, BENCH_DIR / f"{name}.png")
    print(md)
    return record


def paired_gap(
    table: Any,
    specs: Mapping[str, Any],
    setting: Mapping[str, int],
    family: Any,
    *,
    rl2_name: str = "RL2",
    seed: int = 0,
    repeats: int = 1,
    cache: dict[tuple[Any, ...], np.ndarray] | None = None,
    against: str | None = None,
) -> dict[str, Any]:
    """RL² minus the best other learner of ``table`` in ``setting`` (or minus the learner named
    ``against``, e.g. the one a target names), paired task by task.

    Both run ``repeats`` trials on each task of ``family``'s split that ``table`` was scored on (its
    ``split``: the test tasks, or the validation tasks to choose among models) with the same seeds (common random
    numbers: in repeat ``r`` sub-env ``i`` is reset with ``seed + r * n_tasks + i`` in both runs),
    and the bootstrap CI is over the tasks' mean differences. Pairing gives a much tighter CI than
    the two means' separate CIs; repeats shrink the part of it that comes from the trials' own
    randomness (which arm pays when), leaving the part that comes from the draw of test tasks.
    ``cache`` (a dict kept by the caller) holds each learner's per-task totals, so scoring two RL²
    policies against the same best learner runs that learner once.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    from metarl.agents.classical_bench import run_trials
    from metarl.evaluation import bootstrap_ci
    from metarl.vector import make_vec

    others = [c for c in table.cells if c.setting == dict(setting) and not c.learner.startswith("RL2")]
    best = max(others, key=lambda c: c.mean)
    if against is not None:
        named = [c for c in others if c.learner == against]
        if not named:
            have = sorted(c.learner for c in others)
            raise ValueError(f"no learner {against!r} in the table at {dict(setting)}; it has {have}")
        other = named[0]
    else:
        other = best
    n = int(setting["n"])
    tasks = family.split(table.split)
    cache = {} if cache is None else cache
    totals = {}
    for name in (rl2_name, other.learner):
        key = (name, family.id, table.split, tuple(sorted(setting.items())), seed, repeats)
        if key not in cache:
            spec = specs[name]
            learner = (
                spec(dict(setting)) if callable(spec) and not hasattr(spec, "begin_adaptation") else spec
            )
            vec = make_vec(family, tasks)
            runs = [
                run_trials(learner, vec, n, seed=seed + r * len(tasks)).sum(axis=1) for r in range(repeats)
            ]
            cache[key] = np.mean(runs, axis=0)  # per task, over its repeats
            vec.close()
        totals[name] = cache[key]
    diff = totals[rl2_name] - totals[other.learner]
    mean, low, high = bootstrap_ci(diff, seed=seed)
    ref = float(totals[other.learner].mean())
    return {
        "setting": dict(setting),
        "rl2": rl2_name,
        "other": other.learner,
        "other_is_best": other.learner == best.learner,
        "other_mean": ref,
        "rl2_mean": float(totals[rl2_name].mean()),
        "gap": mean,
        "gap_ci": [low, high],
        "gap_percent": 100.0 * mean / ref,
        "gap_percent_ci": [100.0 * low / ref, 100.0 * high / ref],
        "repeats": repeats,
        "split": table.split,
    }


def add_gap_repeats_arg(parser: argparse.ArgumentParser) -> None:
    """``--gap-repeats R`` of the eval commands (check it with :func:`check_gap_repeats`)."""
    parser.add_argument(
        "--gap-repeats",
        type=int,
        default=1,
        help="trials per task of the scored split for the paired gaps (the table keeps one per task)",
    )


def add_split_arg(parser: argparse.ArgumentParser) -> None:
    """``--split`` of the eval commands: the held-out tasks to score on."""
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="the held-out tasks to score on: test (the tables), or validation (to choose among models)",
    )


def check_gap_repeats(value: int) -> int:
    if value < 1:
        raise SystemExit(f"--gap-repeats must be a positive int, got {value}")
    return value


def argmax_learners(learners: Mapping[Any, Any]) -> dict[Any, Any]:
    """The same networks acting greedily (argmax of their action distributions), for a second column."""
    return {key: RL2Learner(x.model, x.config, deterministic=True) for key, x in learners.items()}


def gaps_markdown(gaps: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown table of :func:`paired_gap` results, one row per gap.

    The trials column names the split the gaps were played on (gaps recorded before the split was,
    all on the test tasks, count as test); gaps from different splits name theirs in each cell.
    """
    splits = [g.get("split", "test") for g in gaps]
    one_split = len(set(splits)) == 1
    trials = f"trials per {splits[0]} task" if one_split else "trials per task (split)"
    lines = [
        f"| setting | RL² policy | against | {trials} | RL² - other, paired (95% CI) | in % of other |",
        "|---|---|---|---|---|---|",
    ]
    for g, split in zip(gaps, splits, strict=True):
        setting = ", ".join(f"{k} = {v}" for k, v in g["setting"].items())
        other = f"{g['other']}{' (best other)' if g['other_is_best'] else ''}: {g['other_mean']:.2f}"
        repeats = str(g["repeats"]) if one_split else f"{g['repeats']} ({split})"
        lines.append(
            f"| {setting} | {g['rl2']} | {other} | {repeats} | "
            f"{g['gap']:+.2f} [{g['gap_ci'][0]:+.2f}, {g['gap_ci'][1]:+.2f}] | "
            f"{g['gap_percent']:+.1f}% [{g['gap_percent_ci'][0]:+.1f}, {g['gap_percent_ci'][1]:+.1f}] |"
        )
    return "\n".join(lines)


def _per_episode_markdown(results: list[Any]) -> str:
    """One table, a row per episode of the trial and a column per learner: mean return [95% CI].

    Every learner ran one episode per round, so round ``r`` is episode ``r + 1`` for all of them.
    """
    first = results[0]
    summaries = [res.summary("returns") for res in results]
    level = int(first.confidence * 100)
    lines = [
        f"{first.family_id}, {first.split} split: {len(first.task_ids)} tasks, one trial of "
        f"{first.rounds} episodes per task, seed {first.seed}. Mean return over tasks [{level}% CI].",
        "",
        "| episode of trial | " + " | ".join(res.learner for res in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for r in range(first.rounds):
        cells = [f"{s[r]['mean']:.2f} [{s[r]['ci_low']:.2f}, {s[r]['ci_high']:.2f}]" for s in summaries]
        lines.append(f"| {r + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_per_episode(results: list[Any], path: Path) -> None:
    """Mean return (and 95% CI band) against the episode of the trial, 1..N, for every learner.

    With one episode per round, round ``r`` is episode ``r + 1`` for every learner, whichever its
    adaptation unit, so all curves share the x axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for res in results:
        rows = res.summary("returns")
        x = list(range(1, res.rounds + 1))
        ax.plot(x, [r["mean"] for r in rows], marker="o" if res.rounds <= 20 else None, label=res.learner)
        ax.fill_between(x, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows], alpha=0.2)
    if results[0].rounds <= 20:
        ax.set_xticks(list(range(1, results[0].rounds + 1)))
    else:  # long trials (the MDP at n = 100): let matplotlib space integer ticks
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.set_xlabel("episode in trial")
    ax.set_ylabel("mean return over held-out tasks")
    ax.set_title(f"{results[0].family_id} ({results[0].split} split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
