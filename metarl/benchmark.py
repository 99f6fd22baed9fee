"""Benchmark suites: learners x families x seeds on fixed held-out tasks, resumable, with a report.

A *suite* is a JSON data file (``metarl/suites/<name>.json``, or any path) naming learners, families,
seeds and the meta-test protocol (``n_tasks``, ``rounds``, ``episodes_per_round``). A learner is a
name of :data:`metarl.cli.LEARNERS` (with a ``checkpoint`` where needed; ``{seed}`` and
``{family}`` in the path are filled in) or a training recipe of
:data:`metarl.agents.baselines.RECIPES` with its keyword arguments::

    {"learner": "pretrained", "train_iterations": 50, "quick": {"train_iterations": 2}}

:func:`run_suite` runs every (learner, family, seed) *cell* and saves it atomically to
``<out>/cells/`` as soon as it finishes; a re-run skips finished cells, so an interrupted run loses
at most the cell in flight. A cell file that does not parse (truncated mid-write by a crash outside
the atomic rename) is reported and re-run. Learners whose agent module or checkpoint does not exist
yet, and families whose optional dependency is missing, are listed as skipped with the reason.

The run ends by writing ``results.json`` (every :class:`~metarl.evaluation.EvalResult`, the
adaptation-speed metrics of :mod:`metarl.metrics` and provenance), ``results.md`` and plots; see
:mod:`metarl.benchmark_report`.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import importlib.resources
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from metarl.evaluation import EvalResult, evaluate
from metarl.fileio import atomic_write_text
from metarl.metrics import family_aggregate, learner_metrics

__all__ = [
    "CELL_FORMAT_VERSION",
    "RESULTS_FORMAT",
    "RESULTS_FORMAT_VERSION",
    "LearnerSpec",
    "Suite",
    "compute_metrics",
    "list_suites",
    "load_results",
    "load_suite",
    "run_suite",
]

SUITE_FORMAT_VERSION = 1
CELL_FORMAT_VERSION = 1
RESULTS_FORMAT_VERSION = 1
RESULTS_FORMAT = "metarl.BenchmarkResults"
CELL_FORMAT = "metarl.BenchmarkCell"

_SUITE_KEYS = {"format_version", "name", "description", "families", "family_kwargs", "learners", "seeds",
               "n_tasks", "rounds", "episodes_per_round", "envs_per_task", "split", "reference",
               "bootstrap_reps", "quick"}  # fmt: skip
_QUICK_KEYS = {"seeds", "n_tasks", "rounds", "episodes_per_round", "envs_per_task", "bootstrap_reps"}


def known_learners() -> list[str]:
    """Every learner name a suite may use: the CLI's learners and the baselines' recipes."""
    from metarl.cli import LEARNERS

    return sorted(LEARNERS)


@dataclass(frozen=True)
class LearnerSpec:
    """One learner of a suite.

    Attributes:
        learner: a CLI learner name or a baseline recipe name.
        label: its name in results (unique within the suite; defaults to ``learner``).
        checkpoint: for checkpoint-based learners, a path or glob pattern (or a list of them, tried
            in order; the last match in sorted order wins), with ``{seed}`` and ``{family}`` filled in.
        kwargs: keyword arguments of the recipe (``train_iterations``, ``step_size``, ...).
        quick: overrides of ``kwargs`` (and of ``rounds``, ``episodes_per_round``) for ``--quick``.
        rounds, episodes_per_round: this learner's own protocol (e.g. an RL² trial of 100 one-pull
            episodes is 100 rounds); ``None`` keeps the suite's.
    """

    learner: str
    label: str
    checkpoint: str | list[str] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    rounds: int | None = None
    episodes_per_round: int | None = None

    @classmethod
    def parse(cls, data: str | dict[str, Any], suite: str) -> LearnerSpec:
        data = {"learner": data} if isinstance(data, str) else dict(data)
        name = data.pop("learner", None)
        if name not in known_learners():
            raise ValueError(
                f"unknown learner {name!r} in suite {suite!r}; known learners: {', '.join(known_learners())}"
            )
        label = str(data.pop("label", name))
        checkpoint = data.pop("checkpoint", None)
        quick = dict(data.pop("quick", {}))
        rounds, episodes = data.pop("rounds", None), data.pop("episodes_per_round", None)
        return cls(name, label, checkpoint, data, quick, rounds, episodes)

    def quick_version(self) -> LearnerSpec:
        quick = dict(self.quick)
        rounds = quick.pop("rounds", self.rounds)
        episodes = quick.pop("episodes_per_round", self.episodes_per_round)
        return replace(self, kwargs={**self.kwargs, **quick}, rounds=rounds, episodes_per_round=episodes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"learner": self.learner, "label": self.label, **self.kwargs}
        for key in ("checkpoint", "rounds", "episodes_per_round"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Suite:
    """A benchmark suite (see the module docstring); build it with :func:`load_suite`."""

    name: str
    families: tuple[str, ...]
    learners: tuple[LearnerSpec, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    n_tasks: int = 40
    rounds: int = 4
    episodes_per_round: int = 20
    envs_per_task: int | None = None
    split: str = "test"
    reference: dict[str, str] = field(default_factory=dict)
    family_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bootstrap_reps: int = 2000
    description: str = ""
    quick_overrides: dict[str, Any] = field(default_factory=dict)
    is_quick: bool = False

    def quick(self) -> Suite:
        """The CI-sized version: ``quick`` overrides of the protocol and of every learner."""
        learners = tuple(s.quick_version() for s in self.learners)
        return replace(self, learners=learners, is_quick=True, **self.quick_overrides)

    def only(self, labels: Sequence[str]) -> Suite:
        """The suite restricted to the learners with these labels (references are kept if chosen)."""
        known = [s.label for s in self.learners]
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise ValueError(
                f"unknown learner label(s) {unknown} for suite {self.name!r}; its learners: {', '.join(known)}"
            )
        reference = {role: label for role, label in self.reference.items() if label in labels}
        return replace(
            self, learners=tuple(s for s in self.learners if s.label in labels), reference=reference
        )

    def with_seeds(self, seeds: Sequence[int]) -> Suite:
        return replace(self, seeds=tuple(int(s) for s in seeds))

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as stored in results."""
        return {
            "name": self.name,
            "description": self.description,
            "quick": self.is_quick,
            "families": list(self.families),
            "family_kwargs": self.family_kwargs,
            "learners": [s.to_dict() for s in self.learners],
            "seeds": list(self.seeds),
            "n_tasks": self.n_tasks,
            "rounds": self.rounds,
            "episodes_per_round": self.episodes_per_round,
            "envs_per_task": self.envs_per_task,
            "split": self.split,
            "reference": self.reference,
            "bootstrap_reps": self.bootstrap_reps,
        }

    def cell_fingerprint(self, spec: LearnerSpec, family: str, seed: int) -> str:
        """A hash of everything that determines one cell's result."""
        payload = [spec.to_dict(), family, self.family_kwargs.get(family, {}), seed, self.n_tasks,
                   self.rounds, self.episodes_per_round, self.envs_per_task, self.split]  # fmt: skip
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _suite_dir() -> Any:
    return importlib.resources.files("metarl") / "suites"


def list_suites() -> list[str]:
    """Names of the suites shipped with metarl."""
    return sorted(p.name[:-5] for p in _suite_dir().iterdir() if p.name.endswith(".json"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a suite JSON file by path; bad input raises one-line errors."""
    from metarl.registry import family_spec

    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"suite file {str(path)!r} does not exist")
        text, source = path.read_text(), str(path)
    else:
        resource = _suite_dir() / f"{name_or_path}.json"
        if not resource.is_file():
            raise ValueError(
                f"unknown suite {str(name_or_path)!r}; available suites: {', '.join(list_suites())}"
            )
        text, source = resource.read_text(), f"suite {name_or_path!r}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from exc
    if data.get("format_version") != SUITE_FORMAT_VERSION:
        raise ValueError(
            f"{source} has suite format version {data.get('format_version')!r}; this metarl reads {SUITE_FORMAT_VERSION}"
        )
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys: {sorted(_SUITE_KEYS)}")
    quick = dict(data.get("quick", {}))
    if set(quick) - _QUICK_KEYS:
        raise ValueError(
            f"{source}: unknown quick key(s) {sorted(set(quick) - _QUICK_KEYS)}; allowed: {sorted(_QUICK_KEYS)}"
        )
    if "seeds" in quick:
        quick["seeds"] = tuple(quick["seeds"])
    name = str(data.get("name", path.stem))
    learners = tuple(LearnerSpec.parse(entry, name) for entry in data["learners"])
    labels = [s.label for s in learners]
    if len(set(labels)) != len(labels):
        raise ValueError(f"suite {name!r}: learner labels must be unique, got {labels}")
    for family in data["families"]:
        family_spec(family)  # unknown ids raise KeyError listing the registered families
    reference = dict(data.get("reference", {}))
    for role, label in reference.items():
        if role not in ("random", "oracle") or label not in labels:
            raise ValueError(
                f"suite {name!r}: reference {role!r}: {label!r} must be 'random'/'oracle' -> one of {labels}"
            )
    return Suite(
        name=name,
        families=tuple(data["families"]),
        learners=learners,
        seeds=tuple(int(s) for s in data.get("seeds", (0, 1, 2))),
        n_tasks=int(data.get("n_tasks", 40)),
        rounds=int(data.get("rounds", 4)),
        episodes_per_round=int(data.get("episodes_per_round", 20)),
        envs_per_task=data.get("envs_per_task"),
        split=str(data.get("split", "test")),
        reference=reference,
        family_kwargs={k: dict(v) for k, v in data.get("family_kwargs", {}).items()},
        bootstrap_reps=int(data.get("bootstrap_reps", 2000)),
        description=str(data.get("description", "")),
        quick_overrides=quick,
    )


# ------------------------------------------------------------------------------------ learners
def _module_missing(module: str) -> str | None:
    try:
        if importlib.util.find_spec(module) is None:
            return f"agent module {module} does not exist yet"
    except ImportError as exc:
        return f"cannot import {module}: {exc}"
    return None


def skip_reason(spec: LearnerSpec, family: str, seed: int) -> str | None:
    """Why a learner cannot run yet (missing agent module or checkpoint), or ``None``."""
    from metarl.cli import LEARNERS

    if spec.learner in ("pretrained", "scratch") and spec.checkpoint is None:
        return _module_missing("metarl.agents.maml_trpo")
    if spec.learner == "oracle-ppo" and spec.checkpoint is None:
        return _module_missing("stable_baselines3")
    target, needs_checkpoint = LEARNERS[spec.learner]
    module = target.partition(":")[0]
    reason = _module_missing(module)
    if reason is None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            reason = f"cannot import {module}: {exc}"
    if reason is None and not hasattr(sys.modules[module], target.partition(":")[2]):
        reason = f"agent module {module} has no {target.partition(':')[2]} yet"
    if reason is None and needs_checkpoint:
        if spec.checkpoint is None:
            reason = f"learner {spec.learner!r} needs a checkpoint and the suite gives none"
        elif resolve_checkpoint(spec, family, seed) is None:
            reason = f"no checkpoint matches {_patterns(spec, family, seed)}"
    return reason


def _patterns(spec: LearnerSpec, family: str, seed: int) -> list[str]:
    raw = [spec.checkpoint] if isinstance(spec.checkpoint, str) else list(spec.checkpoint or [])
    return [p.format(seed=seed, family=family) for p in raw]


def resolve_checkpoint(spec: LearnerSpec, family: str, seed: int) -> Path | None:
    """The checkpoint of a cell: the last match (sorted) of the first pattern that matches."""
    for pattern in _patterns(spec, family, seed):
        matches = sorted(glob.glob(pattern, recursive=True))
        if matches:
            return Path(matches[-1])
    return None


def build_learner(spec: LearnerSpec, family: Any, seed: int, checkpoint_dir: Path | None) -> Any:
    """The learner of one cell: loaded from its checkpoint, or trained by its recipe (the trained
    learner is saved under ``checkpoint_dir`` when it can be)."""
    from metarl.cli import load_learner

    if spec.learner in ("pretrained", "scratch", "oracle-ppo") and spec.checkpoint is None:
        from metarl.agents.baselines import RECIPES

        learner = RECIPES[spec.learner](family, seed=seed, **spec.kwargs)
        save = getattr(learner, "save", None)
        if save is not None and checkpoint_dir is not None:
            save(checkpoint_dir / f"{spec.label}__{family.id}__seed{seed}")
        return learner
    return load_learner(spec.learner, resolve_checkpoint(spec, family.id, seed))


# ------------------------------------------------------------------------------------ cells
def _cell_path(out: Path, spec: LearnerSpec, family: str, seed: int) -> Path:
    return out / "cells" / f"{spec.label}__{family}__seed{seed}.json"


def _read_cell(path: Path, fingerprint: str, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """A finished cell, or ``None`` if it must be (re-)run; corrupt files are reported."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CELL_FORMAT:
            raise ValueError("not a metarl benchmark cell")
    except (json.JSONDecodeError, ValueError, AttributeError) as exc:
        warn(f"cell file {path} is corrupt (truncated mid-write?): {exc}; re-running the cell")
        return None
    if data.get("format_version") != CELL_FORMAT_VERSION:
        raise ValueError(
            f"{path} has cell format version {data.get('format_version')!r}; this metarl reads "
            f"{CELL_FORMAT_VERSION}; use a fresh --out directory"
        )
    if data.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{path} was run with another configuration (learner settings, tasks, rounds or seed); "
            f"use a fresh --out directory or delete it"
        )
    return data


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) every cell of ``suite`` into ``out`` and write the results and report.

    Returns:
        The results dict written to ``out/results.json``.
    """
    from metarl.benchmark_report import write_report
    from metarl.provenance import run_metadata
    from metarl.registry import make_family

    out = Path(out)
    cells: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    todo = [(spec, fam, seed) for fam in suite.families for spec in suite.learners for seed in suite.seeds]
    bar = tqdm(todo, desc=f"suite {suite.name}", unit="cell", disable=not progress)
    families: dict[str, Any] = {}
    for spec, family_id, seed in bar:
        bar.set_postfix_str(f"{spec.label} / {family_id} / seed {seed}")
        fingerprint = suite.cell_fingerprint(spec, family_id, seed)
        path = _cell_path(out, spec, family_id, seed)
        done = _read_cell(path, fingerprint, log)
        if done is not None:
            cells.append(done)
            continue
        reason = skip_reason(spec, family_id, seed)
        if reason is None and family_id not in families:
            try:
                families[family_id] = make_family(family_id, **suite.family_kwargs.get(family_id, {}))
            except ImportError as exc:
                families[family_id] = f"family {family_id} is unavailable: {exc}"
        if reason is None and isinstance(families[family_id], str):
            reason = families[family_id]
        if reason is not None:
            skipped.append({"learner": spec.label, "family": family_id, "seed": seed, "reason": reason})
            continue
        family = families[family_id]
        t0 = time.perf_counter()
        learner = build_learner(spec, family, seed, out / "checkpoints")
        train_seconds = time.perf_counter() - t0
        unit = getattr(learner, "adaptation_unit", "gradient step")
        result = evaluate(
            learner, family, split=suite.split, n_tasks=suite.n_tasks, rounds=spec.rounds or suite.rounds,
            episodes_per_round=spec.episodes_per_round or suite.episodes_per_round,
            envs_per_task=suite.envs_per_task if unit == "gradient step" else None, seed=seed,
        )  # fmt: skip
        result.learner = spec.label
        cell = {
            "format": CELL_FORMAT,
            "format_version": CELL_FORMAT_VERSION,
            "fingerprint": fingerprint,
            "learner": spec.to_dict(),
            "checkpoint": str(resolve_checkpoint(spec, family_id, seed)) if spec.checkpoint else None,
            "family": family_id,
            "seed": seed,
            "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0 - train_seconds,
            "result": result.to_dict(),
        }
        atomic_write_text(path, json.dumps(cell, indent=1))
        cells.append(cell)
    bar.close()
    for item in _dedupe_skips(skipped):
        log(f"skipped {item['learner']} on {item['family']}: {item['reason']}")
    from metarl import __version__

    results = {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "metarl_version": __version__,
        "suite": suite.config(),
        "provenance": run_metadata(seed=None, command=command),
        "cells": cells,
        "skipped": _dedupe_skips(skipped),
        "metrics": compute_metrics(suite.config(), cells),
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    write_report(results, out)
    return results


def _dedupe_skips(skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (learner, family, reason) with the seeds it applies to."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in skipped:
        key = (item["learner"], item["family"], item["reason"])
        merged.setdefault(key, {"learner": key[0], "family": key[1], "reason": key[2], "seeds": []})
        merged[key]["seeds"] += [item["seed"]] if "seed" in item else item.get("seeds", [])
    return list(merged.values())


def compute_metrics(config: dict[str, Any], cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Adaptation-speed metrics per family and learner, and normalised scores across families."""
    results: dict[tuple[str, str], list[EvalResult]] = {}
    train_seconds: dict[tuple[str, str], list[float]] = {}
    for cell in cells:
        key = (cell["family"], cell["learner"]["label"])
        results.setdefault(key, []).append(EvalResult.from_dict(cell["result"], source=f"cell {key}"))
        train_seconds.setdefault(key, []).append(float(cell.get("train_seconds", 0.0)))
    reps = int(config.get("bootstrap_reps", 2000))
    reference = config.get("reference", {})
    per_family: dict[str, dict[str, Any]] = {}
    finals: dict[str, dict[str, Any]] = {}
    for family in config["families"]:
        per_family[family] = {}
        rand = results.get((family, reference.get("random", "")), [])
        orc = results.get((family, reference.get("oracle", "")), [])
        for spec in config["learners"]:
            runs = sorted(results.get((family, spec["label"]), []), key=lambda r: r.seed)
            if not runs:
                continue
            # Per-round intervals come from the vectorised bootstrap below: rliable's takes seconds
            # per interval, and a 100-pull RL² trial has 100 rounds (x return, normalised score).
            metrics = learner_metrics(runs, random=rand, oracle=orc, reps=1, seed=0)
            _fast_per_round(metrics, runs, rand, orc, reps)
            metrics["train_seconds"] = sum(train_seconds[(family, spec["label"])]) / len(runs)
            if metrics["adaptation_unit"] == "episode":
                metrics["trial"] = _trial_totals(runs, rand, orc, reps)
            per_family[family][spec["label"]] = metrics
            if metrics["normalized"] is not None:
                finals.setdefault(spec["label"], {})[family] = _final_normalized(runs, rand, orc)
    across = {
        label: family_aggregate(scores, reps=reps)
        for label, scores in finals.items()
        if len(scores) == len(config["families"]) and len(config["families"]) > 1
    }
    return {"families": per_family, "across_families": across}


def _fast_intervals(scores: Any, reps: int, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Mean and IQM of ``scores`` ``(runs, tasks)`` with 95% percentile CIs of the same stratified
    bootstrap as :func:`metarl.metrics.interval_estimates` (rliable's ``StratifiedBootstrap`` with
    ``task_bootstrap``: tasks resampled, and runs resampled within each task), vectorised over the
    resamples. Tasks with a NaN are dropped first."""
    import numpy as np
    from scipy.stats import trim_mean

    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[:, ~np.isnan(scores).any(axis=0)]
    if scores.size == 0:
        nan = {"estimate": float("nan"), "low": float("nan"), "high": float("nan")}
        return {"mean": nan, "iqm": dict(nan)}
    point = {"mean": float(scores.mean()), "iqm": float(trim_mean(scores.ravel(), 0.25))}
    n_runs, n_tasks = scores.shape
    if scores.size == 1 or np.ptp(scores) == 0.0:
        return {k: {"estimate": v, "low": v, "high": v} for k, v in point.items()}
    rng = np.random.default_rng(seed)
    tasks = rng.integers(n_tasks, size=(reps, 1, n_tasks)) if n_tasks > 1 else np.zeros((reps, 1, 1), int)
    runs = rng.integers(n_runs, size=(reps, n_runs, n_tasks))
    sample = scores[runs, tasks].reshape(reps, -1)
    stats = {"mean": sample.mean(axis=1), "iqm": trim_mean(sample, 0.25, axis=1)}
    alpha = 100 * (1.0 - confidence) / 2.0
    return {
        k: {
            "estimate": point[k],
            **dict(zip(("low", "high"), map(float, np.percentile(v, [alpha, 100 - alpha])), strict=True)),
        }
        for k, v in stats.items()
    }


def _fast_per_round(
    metrics: dict[str, Any], runs: list[EvalResult], rand: list[EvalResult], orc: list[EvalResult], reps: int
) -> None:
    """Replace the per-round intervals of ``learner_metrics`` (return, success, normalised score)."""
    import numpy as np

    from metarl.metrics import normalized_scores, reference_returns

    returns = np.stack([r.returns for r in runs])  # (seeds, tasks, rounds)
    rounds = range(returns.shape[2])
    metrics["returns"] = [
        {**metrics["returns"][t], **_fast_intervals(returns[:, :, t], reps)} for t in rounds
    ]
    if metrics.get("success"):
        success = np.stack([r.success for r in runs if r.success is not None])
        metrics["success"] = [_fast_intervals(success[:, :, t], reps) for t in rounds]
    if metrics.get("normalized"):
        low = reference_returns(rand, runs[0].task_ids)[None, :, None]
        norm = normalized_scores(returns, low, reference_returns(orc, runs[0].task_ids)[None, :, None])
        metrics["normalized"] = [_fast_intervals(norm[:, :, t], reps) for t in rounds]


def _trial_totals(
    runs: list[EvalResult], rand: list[EvalResult], orc: list[EvalResult], reps: int
) -> dict[str, Any]:
    """For context-based learners (one episode per round = one trial): the total return of the
    trial per task, and its normalised score (the mean over the trial's episodes of the per-episode
    normalised score), as mean / IQM intervals over tasks and seeds."""
    import numpy as np

    from metarl.metrics import normalized_scores, reference_returns

    returns = np.stack([r.returns for r in runs])  # (seeds, tasks, rounds)
    out: dict[str, Any] = {
        "episodes": int(returns.shape[2]),
        "total": _fast_intervals(returns.sum(axis=2), reps),
        "normalized": None,
    }
    if rand and orc:
        low = reference_returns(rand, runs[0].task_ids)
        high = reference_returns(orc, runs[0].task_ids)
        norm = normalized_scores(returns.mean(axis=2), low[None, :], high[None, :])
        out["normalized"] = _fast_intervals(norm, reps)
    return out


def _final_normalized(runs: list[EvalResult], rand: list[EvalResult], orc: list[EvalResult]) -> Any:
    """Per seed, the mean normalised score over the family's tasks in the last round."""
    import numpy as np

    from metarl.metrics import normalized_scores, reference_returns

    low = reference_returns(rand, runs[0].task_ids)
    high = reference_returns(orc, runs[0].task_ids)
    return np.array([np.nanmean(normalized_scores(r.returns[:, -1], low, high)) for r in runs])


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a benchmark ``results.json``; wrong formats and versions raise one-line errors."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read results file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (truncated mid-write?): {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not metarl benchmark results (no 'format': '{RESULTS_FORMAT}')")
    if data.get("format_version") != RESULTS_FORMAT_VERSION:
        raise ValueError(
            f"{path} has benchmark results format version {data.get('format_version')!r} (written by metarl "
            f"{data.get('metarl_version', '?')}); this metarl reads version {RESULTS_FORMAT_VERSION}"
        )
    return data
