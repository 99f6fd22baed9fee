"""The ``metarl`` command line: list families, meta-test learners, train agents, render reports.

metarl list
metarl evaluate --learner random --family Navigation2D-v0 --out results.json
metarl train maml-trpo --family Navigation2D-v0 [--config file.json] [--resume]
metarl benchmark --suite nav2d [--quick] [--seeds 0,1] [--out DIR]
metarl report results.json [other.json]
metarl compare-runs RUN_A RUN_B [--file validation.csv]
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

import metarl
from metarl.memory import keep_freed_memory

__all__ = ["LEARNERS", "TRAINERS", "app", "load_learner"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="metarl: meta-RL task families, learners and meta-tests.",
)


def _clear_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Report bad input (unknown ids, bad values, missing extras, unreadable files) in one line."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        keep_freed_memory()  # every command is a process of its own (metarl.memory)
        try:
            command(*args, **kwargs)
        except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            typer.echo(f"metarl: error: {message}", err=True)
            raise typer.Exit(2) from exc

    return wrapper


#: Learner names accepted by ``metarl evaluate``: ``"module:factory"``; checkpoint-based learners
#: take the checkpoint path as their only argument.
LEARNERS: dict[str, tuple[str, bool]] = {
    "random": ("metarl.agents.scripted:RandomLearner", False),
    "trilateration": ("metarl.agents.scripted:Navigation2DTrilateration", False),
    "oracle": ("metarl.agents.scripted:Navigation2DOracle", False),
    "maml-trpo": ("metarl.agents.maml_trpo:load_learner", True),
    "rl2": ("metarl.agents.rl2:load_learner", True),
    "scratch": ("metarl.agents.baselines:ScratchLearner", False),
    "pretrained": ("metarl.agents.baselines:load_pretrained", True),
    "oracle-ppo": ("metarl.agents.baselines:load_oracle", True),
    # Classical bandit / tabular-MDP agents (constants tuned for the families' default trial length).
    "greedy-bandit": ("metarl.agents.classical:GreedyBandit", False),
    "ucb1": ("metarl.agents.classical:UCB1", False),
    "thompson": ("metarl.agents.classical:ThompsonSampling", False),
    "optimistic-thompson": ("metarl.agents.classical:OptimisticThompsonSampling", False),
    "gittins": ("metarl.agents.classical:GittinsIndex", False),
    "greedy-mdp": ("metarl.agents.classical:GreedyMDP", False),
    "psrl": ("metarl.agents.classical:PSRL", False),
    "beb": ("metarl.agents.classical:BEB", False),
}

#: Trainers accepted by ``metarl train``: ``"module:function"`` called with
#: ``(family_id, config_path, resume, run_dir, seed)``.
TRAINERS: dict[str, str] = {
    "maml-trpo": "metarl.agents.maml_trpo:cli_train",
    "rl2": "metarl.agents.rl2:cli_train",
}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_learner(name: str, checkpoint: Path | None = None) -> metarl.MetaLearner:
    """A learner by name (see :data:`LEARNERS`), loading ``checkpoint`` where one is needed."""
    if name not in LEARNERS:
        raise typer.BadParameter(
            f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}", param_hint="--learner"
        )
    target, needs_checkpoint = LEARNERS[name]
    if needs_checkpoint:
        if checkpoint is None:
            raise typer.BadParameter(f"learner {name!r} needs --checkpoint PATH", param_hint="--checkpoint")
        return _resolve(target)(checkpoint)
    return _resolve(target)()


@app.command("list")
@_clear_errors
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered task families: id, what varies, split sizes, description."""
    rows = []
    for family_id in metarl.list_families():
        try:
            rows.append(metarl.make_family(family_id).describe())
        except ImportError as exc:  # an optional extra is missing
            rows.append(
                {"id": family_id, "varies": "?", "split_sizes": {}, "description": f"unavailable: {exc}"}
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    typer.echo(f"{'id':32} {'varies':18} {'train/val/test':15} description")
    for row in rows:
        sizes = row["split_sizes"]
        split = f"{sizes.get('train', '-')}/{sizes.get('validation', '-')}/{sizes.get('test', '-')}"
        typer.echo(f"{row['id']:32} {row['varies']:18} {split:15} {row['description']}")


@app.command()
@_clear_errors
def evaluate(
    family: Annotated[str, typer.Option(help="Registered family id, e.g. Navigation2D-v0.")],
    learner: Annotated[str, typer.Option(help=f"One of: {', '.join(LEARNERS)}.")] = "random",
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint of a trained learner.")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "test",
    n_tasks: Annotated[int | None, typer.Option(help="Use the first N tasks of the split.")] = None,
    rounds: Annotated[int, typer.Option(help="Adaptation rounds (4 = after 0..3 gradient steps).")] = 4,
    episodes_per_round: Annotated[int, typer.Option(help="Episodes per task per round.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the episodes, learner and bootstrap.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Write results JSON here (and a .md and .png beside it).")
    ] = None,
) -> None:
    """Meta-test a learner on held-out tasks and print the adaptation table."""
    result = metarl.evaluate(
        load_learner(learner, checkpoint),
        family,
        split=split,
        n_tasks=n_tasks,
        rounds=rounds,
        episodes_per_round=episodes_per_round,
        seed=seed,
    )
    table = result.to_markdown()
    typer.echo(table)
    if out is not None:
        result.to_json(out)
        out.with_suffix(".md").write_text(table + "\n")
        result.plot(out.with_suffix(".png"))
        typer.echo(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


@app.command()
@_clear_errors
def train(
    agent: Annotated[str, typer.Argument(help=f"One of: {', '.join(TRAINERS)}.")],
    family: Annotated[str, typer.Option(help="Registered family id.")],
    config: Annotated[Path | None, typer.Option(help="JSON file of config overrides.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the run directory's last good checkpoint.")
    ] = False,
    run_dir: Annotated[Path | None, typer.Option(help="Where logs and checkpoints go.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
) -> None:
    """Train a meta-learner on a family's training tasks."""
    if agent not in TRAINERS:
        raise typer.BadParameter(
            f"unknown agent {agent!r}; choose one of {', '.join(TRAINERS)}", param_hint="AGENT"
        )
    metarl.family_spec(family)
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"config file {config} does not exist", param_hint="--config")
    _resolve(TRAINERS[agent])(family, config, resume, run_dir, seed)


@app.command()
@_clear_errors
def benchmark(
    suite: Annotated[str, typer.Option(help="A suite name (metarl/suites/*.json) or a suite JSON file.")],
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default runs/benchmarks/<suite>[-quick]).")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, overriding the suite's.")] = None,
    quick: Annotated[bool, typer.Option(help="CI-sized run: the suite's 'quick' overrides.")] = False,
    learners: Annotated[
        str | None, typer.Option(help="Comma-separated learner labels: run only these of the suite's.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (1 avoids oversubscribing shared cores).")
    ] = 1,
) -> None:
    """Run (or resume) a benchmark suite: learners x families x seeds on held-out tasks."""
    import torch

    from metarl.benchmark import load_suite, run_suite

    if threads < 1:
        raise typer.BadParameter(f"threads must be a positive int, got {threads}", param_hint="--threads")
    torch.set_num_threads(threads)
    spec = load_suite(suite)
    if quick:
        spec = spec.quick()
    if seeds is not None:
        try:
            spec = spec.with_seeds([int(s) for s in seeds.split(",") if s.strip()])
        except ValueError as exc:
            raise typer.BadParameter(
                f"seeds must be comma-separated ints, got {seeds!r}", param_hint="--seeds"
            ) from exc
    if learners is not None:
        spec = spec.only([s.strip() for s in learners.split(",") if s.strip()])
    out = out or Path("runs") / "benchmarks" / (spec.name + ("-quick" if quick else ""))
    results = run_suite(spec, out, progress=progress, log=lambda m: typer.echo(f"metarl: {m}", err=True))
    typer.echo(
        f"wrote {out / 'results.json'}, {out / 'results.md'} and plots ({len(results['cells'])} cells)"
    )


@app.command()
@_clear_errors
def report(
    results: Annotated[
        list[Path], typer.Argument(help="One results.json, or several to compare side by side.")
    ],
    plot: Annotated[Path | None, typer.Option(help="Save the adaptation curves here.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Benchmark results: write results.md and plots here (default: beside it)."),
    ] = None,
) -> None:
    """Re-render the table (and plot) of one or more results files (meta-test or benchmark)."""
    from metarl.benchmark import RESULTS_FORMAT, load_results

    kinds = [_results_format(p) for p in results]
    if RESULTS_FORMAT in kinds:
        if len(set(kinds)) > 1:
            raise ValueError("cannot mix benchmark results and single meta-test results in one report")
        _benchmark_report([load_results(p) for p in results], results, out)
        return
    loaded = [metarl.EvalResult.from_json(p) for p in results]
    for res in loaded:
        typer.echo(res.to_markdown())
        typer.echo("")
    if plot is not None:
        loaded[0].plot(plot, others=loaded[1:])
        typer.echo(f"wrote {plot}")


def _results_format(path: Path) -> str | None:
    """The ``format`` field of a results file, or ``None`` when it cannot be read (reported later)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def _benchmark_report(runs: list[dict[str, Any]], paths: list[Path], out: Path | None) -> None:
    from metarl.benchmark_report import compare_markdown, render_markdown, write_report

    if len(runs) == 1:
        written = write_report(runs[0], out or paths[0].parent)
        typer.echo(render_markdown(runs[0]))
        typer.echo(f"wrote {', '.join(map(str, written))}")
        return
    table = compare_markdown(runs, [str(p) for p in paths])
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(table)
        typer.echo(f"wrote {out / 'comparison.md'}")


@app.command("compare-runs")
@_clear_errors
def compare_runs(
    a: Annotated[Path, typer.Argument(help="A run directory or CSV log.")],
    b: Annotated[Path, typer.Argument(help="The run directory or CSV log to compare it with.")],
    file: Annotated[
        str, typer.Option(help="Log read inside a run directory (MAML-TRPO also writes validation.csv).")
    ] = "progress.csv",
    ignore: Annotated[list[str] | None, typer.Option(help="Skip this column too (repeatable).")] = None,
    require_same_length: Annotated[
        bool, typer.Option(help="Count logs with different numbers of rows as different.")
    ] = False,
) -> None:
    """Check whether run B repeats run A: their logs row by row, timing columns skipped; exit 1 if not."""
    from metarl.runlog import TIMING_COLUMNS, compare_logs

    result = compare_logs(a, b, file, TIMING_COLUMNS | set(ignore or ()))
    typer.echo(result.to_text(str(a), str(b)))
    length_differs = require_same_length and result.rows_a != result.rows_b
    if length_differs:
        typer.echo(f"the logs differ in length: {result.rows_a} against {result.rows_b} rows")
    if length_differs or not result.identical:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
