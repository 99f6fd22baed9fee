"""Meta-testing: how well a learner does on held-out tasks after each amount of adaptation.

A learner is anything implementing :class:`MetaLearner`. The runner proceeds in *rounds*: in
round ``r`` it collects ``episodes_per_round`` episodes per task with the learner's current policy,
records their returns, then hands the episodes to the learner's ``update``. Gradient-based learners
(MAML) take one gradient step per round, so round ``r`` is the return after ``r`` steps;
context-based learners (RL²) keep their hidden state across rounds and ignore ``update``, so round
``r`` is episode ``r + 1`` of a trial (each sub-env runs exactly one episode per round).

Results carry per-task returns, the mean over tasks with a percentile-bootstrap 95% confidence
interval, experience counted in episodes and environment steps, and adaptation wall-clock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from metarl.family import TaskFamily
from metarl.fileio import atomic_write_text
from metarl.rollout import EpisodeBatch, Policy, collect
from metarl.task import Task, check_int
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__all__ = ["RESULT_FORMAT_VERSION", "Adaptation", "EvalResult", "MetaLearner", "bootstrap_ci", "evaluate"]

RESULT_FORMAT_VERSION = 1
AdaptationUnit = Literal["gradient step", "episode"]


@runtime_checkable
class Adaptation(Protocol):
    """One adaptation session of a learner on a batch of tasks (all sub-envs of a vector env)."""

    def policy(self) -> Policy:
        """The policy to run in the next round (one action per sub-env per call)."""
        ...

    def update(self, episodes: EpisodeBatch) -> None:
        """Adapt on the round's episodes (a gradient step, or nothing for context learners)."""
        ...


@runtime_checkable
class MetaLearner(Protocol):
    """What the meta-test runner needs from a learner.

    ``begin_adaptation`` starts from the meta-learned state (initial parameters, fresh hidden
    state) on the tasks of ``vec_env``. Only oracles may read ``vec_env.tasks``' parameters.
    """

    #: ``"gradient step"`` (adapts in ``update``) or ``"episode"`` (adapts through its state).
    adaptation_unit: AdaptationUnit

    def begin_adaptation(
        self, vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv, seed: int
    ) -> Adaptation: ...


def bootstrap_ci(
    values: np.ndarray, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap confidence interval (resampling tasks)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array, got shape {values.shape}")
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = values[rng.integers(values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


@dataclass
class EvalResult:
    """Meta-test results of one learner on one family's tasks.

    Arrays have a task axis (``n_tasks``) and a round axis (``rounds``): round ``r`` was run after
    ``r`` adaptation units (gradient steps, or episodes of the trial so far).
    """

    family_id: str
    split: str
    learner: str
    adaptation_unit: str
    seed: int
    episodes_per_round: int
    task_ids: list[str]
    returns: np.ndarray
    env_steps_before: np.ndarray
    success: np.ndarray | None = None
    adapt_seconds_per_task: np.ndarray = field(default_factory=lambda: np.zeros(0))
    collect_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence: float = 0.95
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return int(self.returns.shape[1])

    @property
    def episodes_before(self) -> np.ndarray:
        """Episodes of adaptation experience per task before each round."""
        return np.arange(self.rounds) * self.episodes_per_round

    def _metric(self, metric: str) -> np.ndarray:
        """The per-task, per-round array of ``"returns"`` or ``"success"``."""
        if metric not in ("returns", "success"):
            raise ValueError(f"metric must be 'returns' or 'success', got {metric!r}")
        data = self.returns if metric == "returns" else self.success
        if data is None:
            raise ValueError(f"{self.family_id} defines no success")
        return data

    def summary(self, metric: str = "returns") -> list[dict[str, float]]:
        """Per round: mean over tasks and its bootstrap CI, for ``"returns"`` or ``"success"``."""
        data = self._metric(metric)
        rows = []
        for r in range(self.rounds):
            mean, low, high = bootstrap_ci(data[:, r], confidence=self.confidence, seed=self.seed)
            rows.append({"round": r, "mean": mean, "ci_low": low, "ci_high": high})
        return rows

    def paired_difference(self, other: EvalResult, metric: str = "returns") -> list[dict[str, float]]:
        """Per round: mean over tasks of ``self - other`` and its bootstrap CI, resampling tasks.

        Both learners must have been meta-tested on the same tasks of the same split with the same
        number of rounds. Pairing removes the spread between tasks (some goals are harder for every
        learner), so the interval is narrower than the one the two separate intervals suggest.
        """
        if (self.family_id, self.split) != (other.family_id, other.split) or self.task_ids != other.task_ids:
            raise ValueError(
                f"paired_difference needs the same tasks: {self.learner!r} has {self.family_id}/{self.split} "
                f"({len(self.task_ids)} tasks), {other.learner!r} has {other.family_id}/{other.split} "
                f"({len(other.task_ids)} tasks)"
            )
        if self.rounds != other.rounds:
            raise ValueError(
                f"paired_difference needs the same rounds: {self.learner!r} has {self.rounds}, "
                f"{other.learner!r} has {other.rounds}"
            )
        mine, theirs = self._metric(metric), other._metric(metric)
        rows = []
        for r in range(self.rounds):
            diff = np.asarray(mine[:, r], dtype=np.float64) - np.asarray(theirs[:, r], dtype=np.float64)
            mean, low, high = bootstrap_ci(diff, confidence=self.confidence, seed=self.seed)
            rows.append({"round": r, "mean": mean, "ci_low": low, "ci_high": high})
        return rows

    def to_dict(self) -> dict[str, Any]:
        from metarl import __version__

        return {
            "format": "metarl.EvalResult",
            "format_version": RESULT_FORMAT_VERSION,
            "metarl_version": __version__,
            "family_id": self.family_id,
            "split": self.split,
            "learner": self.learner,
            "adaptation_unit": self.adaptation_unit,
            "seed": self.seed,
            "episodes_per_round": self.episodes_per_round,
            "confidence": self.confidence,
            "task_ids": list(self.task_ids),
            "returns": self.returns.tolist(),
            "env_steps_before": self.env_steps_before.tolist(),
            "success": None if self.success is None else self.success.tolist(),
            "adapt_seconds_per_task": self.adapt_seconds_per_task.tolist(),
            "collect_seconds": self.collect_seconds.tolist(),
            "summary": {
                "returns": self.summary("returns"),
                "success": None if self.success is None else self.summary("success"),
            },
            "metadata": self.metadata,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The result as JSON; with ``path``, also written atomically (temporary file, rename)."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> EvalResult:
        if not isinstance(data, dict) or data.get("format") != "metarl.EvalResult":
            raise ValueError(f"{source} is not a metarl EvalResult (no 'format': 'metarl.EvalResult')")
        if data.get("format_version") != RESULT_FORMAT_VERSION:
            raise ValueError(
                f"{source} has result format version {data.get('format_version')!r} (written by metarl "
                f"{data.get('metarl_version')}); this metarl reads version {RESULT_FORMAT_VERSION}"
            )
        try:
            success = data["success"]
            result = cls(
                family_id=str(data["family_id"]),
                split=str(data["split"]),
                learner=str(data["learner"]),
                adaptation_unit=str(data["adaptation_unit"]),
                seed=int(data["seed"]),
                episodes_per_round=int(data["episodes_per_round"]),
                task_ids=[str(t) for t in data["task_ids"]],
                returns=np.asarray(data["returns"], dtype=np.float64),
                env_steps_before=np.asarray(data["env_steps_before"], dtype=np.float64),
                success=None if success is None else np.asarray(success, dtype=np.float64),
                adapt_seconds_per_task=np.asarray(data.get("adapt_seconds_per_task", []), dtype=np.float64),
                collect_seconds=np.asarray(data.get("collect_seconds", []), dtype=np.float64),
                confidence=float(data.get("confidence", 0.95)),
                metadata=dict(data.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source} is a malformed EvalResult: {exc!r}") from exc
        result._check(source)
        return result

    def _check(self, source: str) -> None:
        """Raise ``ValueError`` unless the arrays have the shapes ``(n_tasks, rounds)`` promise."""
        shape = (len(self.task_ids), self.returns.shape[-1] if self.returns.ndim else 0)
        problems = []
        if self.returns.ndim != 2 or min(self.returns.shape) < 1 or self.returns.shape != shape:
            problems.append(f"'returns' has shape {self.returns.shape}, expected (n_tasks, rounds)")
        for name in ("env_steps_before", "success"):
            value = getattr(self, name)
            if value is not None and value.shape != self.returns.shape:
                problems.append(f"{name!r} has shape {value.shape}, expected {self.returns.shape}")
        if self.episodes_per_round < 1:
            problems.append(f"'episodes_per_round' = {self.episodes_per_round} is not positive")
        if not 0.0 < self.confidence < 1.0:
            problems.append(f"'confidence' = {self.confidence} is not in (0, 1)")
        if problems:
            raise ValueError(f"{source} is a malformed EvalResult: {'; '.join(problems)}")

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> EvalResult:
        """Load a result from a JSON file path (or a JSON string)."""
        text = str(path_or_text)
        source = "<string>"
        if not text.lstrip().startswith("{"):
            source = text
            try:
                text = Path(path_or_text).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read results file {source!r}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=source)

    def to_markdown(self) -> str:
        """A Markdown table: one row per round, mean return with its CI (and success rate)."""
        unit = "steps" if self.adaptation_unit == "gradient step" else "episode"
        head = f"| {unit} | episodes before | mean return | {int(self.confidence * 100)}% CI |"
        sep = "|---|---|---|---|"
        if self.success is not None:
            head += " success rate |"
            sep += "---|"
        lines = [
            f"**{self.learner}** on {self.family_id} ({self.split} split, {len(self.task_ids)} tasks, "
            f"{self.episodes_per_round} episodes per round per task, seed {self.seed})",
            "",
            head,
            sep,
        ]
        success_rows = self.summary("success") if self.success is not None else None
        for r, row in enumerate(self.summary("returns")):
            label = r if self.adaptation_unit == "gradient step" else r + 1
            line = f"| {label} | {r * self.episodes_per_round} | {row['mean']:.2f} | [{row['ci_low']:.2f}, {row['ci_high']:.2f}] |"
            if success_rows is not None:
                line += f" {success_rows[r]['mean']:.3f} |"
            lines.append(line)
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str], *, others: Sequence[EvalResult] = ()) -> None:
        """Save the adaptation curve (mean and CI band over tasks), with ``others`` on the same axes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for res in (self, *others):
            rows = res.summary("returns")
            x = (
                np.arange(res.rounds)
                if res.adaptation_unit == "gradient step"
                else np.arange(1, res.rounds + 1)
            )
            ax.plot(x, [r["mean"] for r in rows], marker="o", label=res.learner)
            ax.fill_between(x, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows], alpha=0.2)
        ax.set_xlabel("gradient steps" if self.adaptation_unit == "gradient step" else "episode in trial")
        ax.set_ylabel("mean return over held-out tasks")
        ax.set_title(f"{self.family_id} ({self.split})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # below the axes, so that no curve (e.g. an oracle's flat line at the top) is hidden
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        fig.tight_layout()
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)


def evaluate(
    learner: MetaLearner,
    family: TaskFamily | str,
    *,
    split: str = "test",
    tasks: Sequence[Task] | None = None,
    n_tasks: int | None = None,
    rounds: int = 4,
    episodes_per_round: int = 20,
    envs_per_task: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    confidence: float = 0.95,
) -> EvalResult:
    """Meta-test ``learner`` on held-out tasks.

    Args:
        learner: a :class:`MetaLearner`.
        family: a family or registered id.
        split: the split whose tasks are used (ignored when ``tasks`` is given).
        tasks: explicit tasks instead of a split.
        n_tasks: use only the first ``n_tasks`` tasks.
        rounds: adaptation rounds; round ``r`` follows ``r`` gradient steps (or is episode
            ``r + 1`` of a trial for context-based learners). ``rounds=4`` gives 0..3 steps.
        episodes_per_round: episodes per task in each round.
        envs_per_task: sub-envs per task; context-based learners need one episode per sub-env per
            round, so for them it must equal ``episodes_per_round`` (the default).
        seed: seeds the episodes (round ``r`` resets with ``seed + 1_000_003 * r``), the learner and
            the bootstrap.
        backend: vector env backend, see :func:`metarl.make_vec`.
    """
    from metarl.registry import make_family

    if isinstance(family, str):
        family = make_family(family)
    if not isinstance(learner, MetaLearner):
        raise TypeError(
            f"{learner!r} does not implement metarl.MetaLearner (adaptation_unit, begin_adaptation)"
        )
    unit = learner.adaptation_unit
    if unit not in ("gradient step", "episode"):
        raise ValueError(f"learner.adaptation_unit must be 'gradient step' or 'episode', got {unit!r}")
    check_int("rounds", rounds)
    check_int("episodes_per_round", episodes_per_round)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    chosen = tuple(tasks) if tasks is not None else family.split(split)
    if n_tasks is not None:
        if n_tasks < 1 or n_tasks > len(chosen):
            raise ValueError(f"n_tasks={n_tasks!r} must be between 1 and {len(chosen)}")
        chosen = chosen[:n_tasks]
    if not chosen:
        raise ValueError(f"no tasks to evaluate on ({family.id} split {split!r} is empty)")
    ept = episodes_per_round if envs_per_task is None else envs_per_task
    if unit == "episode" and ept != episodes_per_round:
        raise ValueError(
            f"context-based learners run one episode per sub-env per round: envs_per_task ({ept}) "
            f"must equal episodes_per_round ({episodes_per_round})"
        )
    vec = make_vec(family, chosen, envs_per_task=ept, backend=backend)
    n = len(chosen)
    returns = np.zeros((n, rounds))
    success = np.zeros((n, rounds)) if family.has_success else None
    steps_before = np.zeros((n, rounds))
    adapt_seconds = np.zeros(rounds)
    collect_seconds = np.zeros(rounds)
    adaptation = learner.begin_adaptation(vec, seed)
    for r in range(rounds):
        t0 = time.perf_counter()
        batch = collect(vec, adaptation.policy(), episodes_per_round, seed=seed + 1_000_003 * r)
        collect_seconds[r] = time.perf_counter() - t0
        by_task = batch.by_task()
        returns[:, r] = by_task.returns.mean(axis=1)
        if success is not None:
            success[:, r] = np.nan_to_num(by_task.success).mean(axis=1)
        if r + 1 < rounds:
            steps_before[:, r + 1] = steps_before[:, r] + by_task.lengths.sum(axis=1)
            t0 = time.perf_counter()
            adaptation.update(batch)
            adapt_seconds[r + 1] = (time.perf_counter() - t0) / n
    vec.close()
    return EvalResult(
        family_id=family.id,
        split=split if tasks is None else "custom",
        learner=str(getattr(learner, "name", type(learner).__name__)),
        adaptation_unit=unit,
        seed=seed,
        episodes_per_round=episodes_per_round,
        task_ids=[t.task_id for t in chosen],
        returns=returns,
        env_steps_before=steps_before,
        success=success,
        adapt_seconds_per_task=np.cumsum(adapt_seconds),
        collect_seconds=collect_seconds,
        confidence=confidence,
    )
