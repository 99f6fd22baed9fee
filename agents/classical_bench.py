"""Trial benchmarks in the style of RL² (Duan et al. 2016), Tables 1 and 2.

A *trial* is ``n`` consecutive episodes of one task with a learner that adapts through its state
(a classical agent's statistics, an RL² hidden state). The score of a learner in a setting is the
total reward per trial averaged over held-out tasks (one trial per task), with a percentile-
bootstrap 95% confidence interval (:func:`metarl.bootstrap_ci`).

* :func:`run_trials` runs one trial per sub-env of a vector env and returns every episode's
  return. It resets the vector env once and keeps one policy for the whole trial, which is
  equivalent to :func:`metarl.evaluate` with ``rounds = n, episodes_per_round = 1`` but avoids
  re-seeding every sub-env at every episode (the bandits' episodes are single pulls).
* :func:`bandit_table` and :func:`mdp_table` fill the tables for any learners given as a mapping
  ``name -> learner`` or ``name -> factory(setting) -> learner`` (a factory picks per-setting
  constants). A learner that is the same (``==``) for several trial lengths is run once, for the
  longest, and scored on prefixes of its trials: it cannot know the trial length, so a prefix is
  a shorter trial. To add RL² to the tables, pass its learner (or a factory) among the others.

Only learners with ``adaptation_unit = "episode"`` fit here: nothing calls ``update``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl.evaluation import MetaLearner, bootstrap_ci
from metarl.family import TaskFamily
from metarl.task import Task
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__all__ = [
    "BenchCell",
    "BenchTable",
    "LearnerSpec",
    "bandit_table",
    "load_tuned",
    "mdp_table",
    "resolve_learner",
    "run_trials",
    "scored_split_sizes",
    "trial_table",
]

#: A learner, or a factory building one for a setting (``{"n": ..., "k": ...}`` for bandits,
#: ``{"n": ...}`` for MDPs).
LearnerSpec = MetaLearner | Callable[[dict[str, int]], MetaLearner]

TUNED_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "classical" / "tuned.json"


def run_trials(
    learner: MetaLearner, vec_env: BatchedTaskVectorEnv | SyncTaskVectorEnv, n_episodes: int, *, seed: int = 0
) -> np.ndarray:
    """Run one trial of ``n_episodes`` episodes in every sub-env; return ``(num_envs, n_episodes)``
    episode returns.

    ``vec_env.reset(seed=seed)`` seeds sub-env ``i`` with ``seed + i``; the learner's
    ``begin_adaptation`` gets ``seed``.
    """
    if getattr(learner, "adaptation_unit", None) != "episode":
        raise ValueError(
            f"run_trials needs a learner that adapts within a trial (adaptation_unit 'episode'), "
            f"got {getattr(learner, 'adaptation_unit', None)!r} from {learner!r}"
        )
    if not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int, got {n_episodes!r}")
    n = vec_env.num_envs
    policy = learner.begin_adaptation(vec_env, seed).policy()
    observe = getattr(policy, "observe", None)
    obs, _ = vec_env.reset(seed=seed)
    returns = np.zeros((n, int(n_episodes)))
    episode = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    max_steps = int(n_episodes) * int(vec_env.family.max_episode_steps)
    for _ in range(max_steps):
        active = episode < n_episodes
        if not active.any():
            break
        actions = np.asarray(policy(obs))
        obs, rewards, terms, truncs, _ = vec_env.step(actions)
        if observe is not None:
            observe(actions, rewards, terms, truncs, active)
        returns[rows[active], episode[active]] += np.asarray(rewards, dtype=np.float64)[active]
        episode += np.asarray(terms | truncs, dtype=np.int64)
    if np.any(episode < n_episodes):
        raise RuntimeError("episodes did not end within the family's horizon")
    return returns


@dataclass(frozen=True)
class BenchCell:
    """One learner in one setting: total reward per trial over ``n_trials`` held-out tasks."""

    learner: str
    setting: dict[str, int]
    mean: float
    ci_low: float
    ci_high: float
    n_trials: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner,
            "setting": dict(self.setting),
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_trials": self.n_trials,
            "seconds": self.seconds,
        }


@dataclass
class BenchTable:
    """Cells of one family's table; settings are rows, learners columns."""

    family: str
    split: str
    seed: int
    cells: list[BenchCell] = field(default_factory=list)

    @property
    def learners(self) -> list[str]:
        return list(dict.fromkeys(c.learner for c in self.cells))

    @property
    def settings(self) -> list[dict[str, int]]:
        seen: list[dict[str, int]] = []
        for c in self.cells:
            if c.setting not in seen:
                seen.append(c.setting)
        return seen

    def cell(self, learner: str, setting: Mapping[str, int]) -> BenchCell:
        for c in self.cells:
            if c.learner == learner and c.setting == dict(setting):
                return c
        raise KeyError(f"no result for learner {learner!r} in setting {dict(setting)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "split": self.split,
            "seed": self.seed,
            "cells": [c.to_dict() for c in self.cells],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchTable:
        cells = [BenchCell(**{**c, "setting": dict(c["setting"])}) for c in data["cells"]]
        return cls(family=str(data["family"]), split=str(data["split"]), seed=int(data["seed"]), cells=cells)

    def to_markdown(self) -> str:
        """Mean total reward per trial ``[95% CI]``; the best mean of each row in bold."""
        learners = self.learners
        lines = [
            "| setting | " + " | ".join(learners) + " |",
            "|---|" + "---|" * len(learners),
        ]
        for setting in self.settings:
            present = [c for c in self.cells if c.setting == setting]
            best = max(c.mean for c in present)
            row = []
            for name in learners:
                try:
                    c = self.cell(name, setting)
                except KeyError:
                    row.append("")
                    continue
                mean = f"**{c.mean:.1f}**" if c.mean == best else f"{c.mean:.1f}"
                row.append(f"{mean} [{c.ci_low:.1f}, {c.ci_high:.1f}]")
            label = ", ".join(f"{k} = {v}" for k, v in setting.items())
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        return "\n".join(lines)


def resolve_learner(spec: LearnerSpec, setting: dict[str, int]) -> MetaLearner:
    """The learner ``spec`` stands for at ``setting``: itself, or what its factory builds there."""
    if isinstance(spec, MetaLearner):
        return spec
    if callable(spec):
        learner = spec(dict(setting))
        if not isinstance(learner, MetaLearner):
            raise TypeError(f"learner factory returned {learner!r}, which is not a metarl.MetaLearner")
        return learner
    raise TypeError(f"expected a MetaLearner or a factory (setting -> MetaLearner), got {spec!r}")


def _same(a: MetaLearner, b: MetaLearner) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # learners holding arrays or tensors may not compare
        return False


def trial_table(
    family_for: Callable[[int], TaskFamily],
    tasks: Sequence[Task],
    learners: Mapping[str, LearnerSpec],
    lengths: Sequence[int],
    *,
    fixed: Mapping[str, int] | None = None,
    split: str = "test",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> BenchTable:
    """Score ``learners`` on one trial per task in ``tasks``, for each trial length in ``lengths``.

    Args:
        family_for: builds the family for a trial length (its ``n_pulls`` / ``n_episodes``).
        tasks: the held-out tasks, one trial each.
        learners: ``name -> learner`` or ``name -> factory(setting)``.
        lengths: trial lengths ``n`` (episodes per trial).
        fixed: setting entries besides ``n`` (e.g. ``{"k": 5}``), passed to factories.
        seed: seeds the vector env (sub-env ``i`` gets ``seed + i``) and the learners.
        log: called with a line per run (e.g. ``print``).
    """
    fixed = dict(fixed or {})
    family = family_for(max(lengths))
    table = BenchTable(family=family.id, split=split, seed=seed)
    for name, spec in learners.items():
        resolved = [(n, resolve_learner(spec, {"n": n, **fixed})) for n in lengths]
        groups: list[tuple[MetaLearner, list[int]]] = []
        for n, learner in resolved:
            for g_learner, g_lengths in groups:
                if _same(g_learner, learner):
                    g_lengths.append(n)
                    break
            else:
                groups.append((learner, [n]))
        for learner, group in groups:
            longest = max(group)
            vec = make_vec(family_for(longest), tasks)
            t0 = time.perf_counter()
            returns = run_trials(learner, vec, longest, seed=seed)
            seconds = time.perf_counter() - t0
            vec.close()
            for n in group:
                totals = returns[:, :n].sum(axis=1)
                mean, low, high = bootstrap_ci(totals, seed=seed)
                setting = {"n": n, **fixed}
                table.cells.append(BenchCell(name, setting, mean, low, high, len(tasks), seconds))
                if log is not None:
                    log(f"{family.id} {setting} {name}: {mean:.2f} [{low:.2f}, {high:.2f}] ({seconds:.1f}s)")
    order = {n: i for i, n in enumerate(lengths)}
    table.cells.sort(key=lambda c: (order[c.setting["n"]], list(learners).index(c.learner)))
    return table


def scored_split_sizes(split: str, n_trials: int) -> dict[str, int]:
    """Split sizes that draw only ``split``, with ``n_trials`` tasks: the tasks :func:`bandit_table` and
    :func:`mdp_table` score on, so a family built with them (and the same ``split_seed``) plays the
    same tasks as the table, e.g. for a paired comparison afterwards."""
    return {"train": 0, "validation": 0, "test": 0, split: n_trials}


def bandit_table(
    learners: Mapping[str, LearnerSpec],
    *,
    pulls: Sequence[int] = (10, 100, 500),
    arms: Sequence[int] = (5, 10, 50),
    n_trials: int = 1000,
    split: str = "test",
    split_seed: int = 0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> BenchTable:
    """RL² Table 1: BernoulliBandit total reward per trial for every ``(n pulls, k arms)``.

    Tasks are the first ``n_trials`` of the ``split`` split of ``BernoulliBandit-v0`` with ``k``
    arms; factories receive ``{"n": n, "k": k}``.
    """
    from metarl.envs.bandit import BernoulliBanditFamily

    merged: BenchTable | None = None
    for k in arms:
        sizes = scored_split_sizes(split, n_trials)

        def family_for(n: int, k: int = k, sizes: dict[str, int] = sizes) -> TaskFamily:
            return BernoulliBanditFamily(n_arms=k, n_pulls=n, split_sizes=sizes, split_seed=split_seed)

        tasks = family_for(max(pulls)).split(split)
        part = trial_table(
            family_for, tasks, learners, pulls, fixed={"k": k}, split=split, seed=seed, log=log
        )
        if merged is None:
            merged = part
        else:
            merged.cells.extend(part.cells)
    assert merged is not None, "arms must not be empty"
    merged.cells.sort(key=lambda c: (list(pulls).index(c.setting["n"]), list(arms).index(c.setting["k"])))
    return merged


def mdp_table(
    learners: Mapping[str, LearnerSpec],
    *,
    episodes: Sequence[int] = (10, 25, 50, 75, 100),
    n_trials: int = 1000,
    split: str = "test",
    split_seed: int = 0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> BenchTable:
    """RL² Table 2: TabularMDP total reward per trial of ``n`` episodes; factories get ``{"n": n}``."""
    from metarl.envs.tabular_mdp import TabularMDPFamily

    sizes = scored_split_sizes(split, n_trials)

    def family_for(n: int) -> TaskFamily:
        return TabularMDPFamily(n_episodes=n, split_sizes=sizes, split_seed=split_seed)

    tasks = family_for(max(episodes)).split(split)
    return trial_table(family_for, tasks, learners, episodes, split=split, seed=seed, log=log)


def load_tuned(path: str | Path | None = None) -> dict[str, Any]:
    """The constants chosen by ``scripts/tune_classical.py`` (``benchmarks/classical/tuned.json``).

    Returns ``{"bandit": {learner: {"n=<n>,k=<k>": value}}, "mdp": {learner: {"n=<n>": value}}, ...}``.
    """
    path = Path(path) if path is not None else TUNED_PATH
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise FileNotFoundError(
            f"no tuned constants at {path}; run scripts/tune_classical.py first ({exc})"
        ) from exc
