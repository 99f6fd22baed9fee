"""Adaptation-speed metrics computed from :class:`~metarl.evaluation.EvalResult` s.

Everything here is a pure function of meta-test results; nothing is re-run.

* **Experience** (:func:`experience`): how much adaptation experience one adaptation session had
  before each round, in episodes and environment steps. For gradient-step learners a session is a
  task (all ``episodes_per_round`` episodes of a round feed its update); for context learners (RL²)
  every sub-env is its own trial, so a session has seen ``r`` episodes before round ``r``.
* **Normalised score** (:func:`normalized_scores`): ``(R - R_random) / (R_oracle - R_random)`` per
  task, with the references' returns on the *same* tasks; 0 is the random policy, 1 the oracle.
* **Experience to reach a level** (:func:`experience_to_reach`): the episodes (and steps) of
  adaptation experience before the first round whose return is at least
  ``start + fraction * (target - start)``. Returns are often negative, so "90% of the return" is
  measured as 90% of the way from the random policy's return (``start``) to the target (the
  learner's own final return, or the oracle's).
* **Aggregates** (:func:`interval_estimates`): mean and interquartile mean (IQM) with stratified
  bootstrap confidence intervals from ``rliable`` (Agarwal et al. 2021, "Deep RL at the Edge of
  the Statistical Precipice"). Scores are arranged ``(runs, strata)``: within one family, runs are
  seeds and strata are the held-out tasks, resampled too (``task_bootstrap``) because test tasks
  are draws from the family's task distribution; across families, runs are seeds and strata are
  families.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl.evaluation import EvalResult

__all__ = [
    "Interval",
    "experience",
    "experience_to_reach",
    "family_aggregate",
    "interval_estimates",
    "learner_metrics",
    "normalized_scores",
    "reference_returns",
    "rounds_to_reach",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def experience(result: EvalResult) -> tuple[np.ndarray, np.ndarray]:
    """Adaptation experience of one session before each round.

    Returns:
        ``episodes`` with shape ``(rounds,)`` and ``env_steps`` with shape ``(n_tasks, rounds)``.
        Gradient-step learners: ``r * episodes_per_round`` episodes and the steps of all of them.
        Context learners: ``r`` episodes (one trial per sub-env) and the mean steps of one trial.
    """
    rounds = np.arange(result.rounds, dtype=np.float64)
    if result.adaptation_unit == "episode":
        return rounds, np.asarray(result.env_steps_before, dtype=np.float64) / result.episodes_per_round
    return rounds * result.episodes_per_round, np.asarray(result.env_steps_before, dtype=np.float64)


def normalized_scores(
    returns: np.ndarray, random_returns: np.ndarray, oracle_returns: np.ndarray, *, min_gap: float = 1e-8
) -> np.ndarray:
    """``(returns - random) / (oracle - random)``; arrays broadcast against each other.

    Where the oracle is no better than random by more than ``min_gap`` the score is undefined and
    set to NaN (a task on which every policy does equally well says nothing about adaptation).
    """
    returns = np.asarray(returns, dtype=np.float64)
    low = np.asarray(random_returns, dtype=np.float64)
    gap = np.asarray(oracle_returns, dtype=np.float64) - low
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (returns - low) / gap
    return np.where(gap > min_gap, scores, np.nan)


def rounds_to_reach(returns: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """For each task, the first round whose return is at least its level; -1 if none is.

    Args:
        returns: ``(n_tasks, rounds)``.
        levels: ``(n_tasks,)``.
    """
    returns = np.asarray(returns, dtype=np.float64)
    reached = returns >= np.asarray(levels, dtype=np.float64)[:, None]
    return np.where(reached.any(axis=1), reached.argmax(axis=1), -1)


def experience_to_reach(
    result: EvalResult, target: np.ndarray, start: np.ndarray, fraction: float = 0.9
) -> dict[str, np.ndarray]:
    """Episodes and env steps of adaptation before first reaching ``start + fraction (target - start)``.

    Args:
        result: the learner's meta-test result.
        target: ``(n_tasks,)`` the return to approach (own final return, or the oracle's).
        start: ``(n_tasks,)`` the return counted as 0% (the random policy's).
        fraction: how far from ``start`` to ``target`` the return must get.

    Returns:
        ``{"episodes": (n_tasks,), "env_steps": (n_tasks,)}``, NaN where the level is never reached.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    target, start = np.asarray(target, dtype=np.float64), np.asarray(start, dtype=np.float64)
    first = rounds_to_reach(result.returns, start + fraction * (target - start))
    episodes, steps = experience(result)
    ok = first >= 0
    idx = np.maximum(first, 0)
    return {
        "episodes": np.where(ok, episodes[idx], np.nan),
        "env_steps": np.where(ok, steps[np.arange(len(idx)), idx], np.nan),
    }


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """rliable 1.2's ``StratifiedBootstrap`` draws its indices from the global NumPy RNG whatever
    ``random_state`` says; seed it for the block and restore the caller's state afterwards."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def interval_estimates(
    scores: np.ndarray,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    task_bootstrap: bool = True,
) -> dict[str, Interval]:
    """Mean and IQM of ``scores`` ``(runs, strata)`` with stratified-bootstrap CIs (``rliable``).

    Strata (columns) containing NaN are dropped first. With ``task_bootstrap`` the strata are
    resampled as well as the runs within each stratum.
    """
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (runs, strata), got shape {scores.shape}")
    scores = scores[:, ~np.isnan(scores).any(axis=0)]
    if scores.size == 0:
        nan = Interval(float("nan"), float("nan"), float("nan"))
        return {"mean": nan, "iqm": nan}

    def both(x: np.ndarray) -> np.ndarray:
        return np.array([rly_metrics.aggregate_mean(x), rly_metrics.aggregate_iqm(x)])

    point = both(scores)
    if scores.size == 1 or np.ptp(scores) == 0.0:
        return {
            k: Interval(float(v), float(v), float(v)) for k, v in zip(("mean", "iqm"), point, strict=True)
        }
    with warnings.catch_warnings(), _global_numpy_seed(seed):
        warnings.simplefilter("ignore", FutureWarning)  # arch deprecates random_state; rliable passes it
        _, cis = rly.get_interval_estimates(
            {"x": scores},
            both,
            reps=int(reps),
            confidence_interval_size=confidence,
            task_bootstrap=task_bootstrap and scores.shape[1] > 1,
            random_state=np.random.RandomState(seed),
        )
    ci = cis["x"]
    return {
        k: Interval(float(point[i]), float(ci[0, i]), float(ci[1, i])) for i, k in enumerate(("mean", "iqm"))
    }


def reference_returns(results: Sequence[EvalResult], task_ids: Sequence[str]) -> np.ndarray:
    """A non-adapting reference's return on each task: the mean over its seeds and rounds."""
    if not results:
        raise ValueError("no reference results")
    for res in results:
        if list(res.task_ids) != list(task_ids):
            raise ValueError(
                f"reference {res.learner!r} (seed {res.seed}) ran on other tasks than the learner; "
                f"references must use the same held-out tasks"
            )
    return np.mean([res.returns.mean(axis=1) for res in results], axis=0)


def _by_round(data: np.ndarray, reps: int, confidence: float, seed: int) -> list[dict[str, dict[str, float]]]:
    """``data`` ``(seeds, tasks, rounds)`` -> per round ``{"mean": ..., "iqm": ...}`` intervals."""
    return [
        {
            k: v.to_dict()
            for k, v in interval_estimates(data[:, :, r], reps=reps, confidence=confidence, seed=seed).items()
        }
        for r in range(data.shape[2])
    ]


def _reach_summary(per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("episodes", "env_steps"):
        values = np.concatenate([d[key] for d in per_seed])
        reached = values[~np.isnan(values)]
        out[key] = {
            "mean": float(reached.mean()) if reached.size else None,
            "median": float(np.median(reached)) if reached.size else None,
        }
    values = np.concatenate([d["episodes"] for d in per_seed])
    out["reached"] = int((~np.isnan(values)).sum())
    out["total"] = int(values.size)
    return out


def learner_metrics(
    results: Sequence[EvalResult],
    *,
    random: Sequence[EvalResult] = (),
    oracle: Sequence[EvalResult] = (),
    fraction: float = 0.9,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """All adaptation-speed metrics of one learner on one family, over its seeds.

    Args:
        results: one :class:`EvalResult` per seed, all on the same tasks and rounds.
        random, oracle: the reference learners' results on the same tasks (any seeds); without
            them the normalised score and the oracle-relative speed are ``None``, and the speed to
            the learner's own final return starts from its round-0 return.
        fraction: the level for "experience to reach" (0.9 = 90%).
        reps, confidence, seed: of the bootstrap.

    Returns:
        A JSON-ready dict: experience per round, return (and success) per round with mean / IQM
        intervals, normalised score per round, experience to reach ``fraction`` of the own final
        and the oracle's return, and adaptation wall-clock per task.
    """
    if not results:
        raise ValueError("learner_metrics needs at least one result")
    first = results[0]
    for res in results[1:]:
        if list(res.task_ids) != list(first.task_ids) or res.rounds != first.rounds:
            raise ValueError(f"results of {first.learner!r} across seeds must share tasks and rounds")
    returns = np.stack([res.returns for res in results])  # (seeds, tasks, rounds)
    episodes, _ = experience(first)
    steps = np.stack([experience(res)[1] for res in results])
    rand = reference_returns(random, first.task_ids) if random else None
    orc = reference_returns(oracle, first.task_ids) if oracle else None
    out: dict[str, Any] = {
        "learner": first.learner,
        "family_id": first.family_id,
        "adaptation_unit": first.adaptation_unit,
        "seeds": [res.seed for res in results],
        "n_tasks": len(first.task_ids),
        "episodes": episodes.tolist(),
        "env_steps": steps.mean(axis=(0, 1)).tolist(),
        "returns": _by_round(returns, reps, confidence, seed),
        "success": None,
        "normalized": None,
        "to_fraction_of_own_final": None,
        "to_fraction_of_oracle": None,
        "fraction": fraction,
        "adapt_seconds_per_task": np.mean([res.adapt_seconds_per_task for res in results], axis=0).tolist(),
    }
    successes = [res.success for res in results if res.success is not None]
    if len(successes) == len(results):
        success = np.stack(successes)
        out["success"] = _by_round(success, reps, confidence, seed)
    if rand is not None and orc is not None:
        norm = normalized_scores(returns, rand[None, :, None], orc[None, :, None])
        out["normalized"] = _by_round(norm, reps, confidence, seed)
        out["normalized_undefined_tasks"] = int(np.isnan(norm[0, :, 0]).sum())
    out["to_fraction_of_own_final"] = _reach_summary(
        [
            experience_to_reach(
                res, res.returns[:, -1], rand if rand is not None else res.returns[:, 0], fraction
            )
            for res in results
        ]
    )
    if rand is not None and orc is not None:
        out["to_fraction_of_oracle"] = _reach_summary(
            [experience_to_reach(res, orc, rand, fraction) for res in results]
        )
    return out


def family_aggregate(
    final_scores: Mapping[str, np.ndarray], *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Aggregate over families: ``final_scores[family]`` is ``(seeds,)`` (per seed, the mean
    normalised score over the family's tasks); runs are seeds, strata are families."""
    families = sorted(final_scores)
    n = min(len(final_scores[f]) for f in families)
    matrix = np.stack([np.asarray(final_scores[f], dtype=np.float64)[:n] for f in families], axis=1)
    return {
        k: v.to_dict()
        for k, v in interval_estimates(
            matrix, reps=reps, confidence=confidence, seed=seed, task_bootstrap=False
        ).items()
    }
