"""Tune the classical baselines' free constants on the *validation* split (never test), as in RL².

Grid {0, 0.1, ..., 1.0} for epsilon-greedy's ``epsilon`` and UCB1's ``c`` (bandits) and for
epsilon-greedy's ``epsilon`` and BEB's ``beta`` (MDPs); {0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99}
for the Gittins discount. Each value is scored by the mean total reward per trial over validation
tasks, for every setting of the benchmark; the best value per setting is written, with every
score, to ``benchmarks/classical/tuned.json``.

Each grid value is run once at the longest trial and scored on prefixes for the shorter ones
(these agents cannot know the trial length, so a prefix is a shorter trial); all values share the
seed (common random numbers).

    .venv/bin/python scripts/tune_classical.py [--trials 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metarl.agents.classical import BEB, UCB1, EpsilonGreedyBandit, EpsilonGreedyMDP, GittinsIndex
from metarl.agents.classical_bench import TUNED_PATH, run_trials
from metarl.envs.bandit import BernoulliBanditFamily
from metarl.envs.tabular_mdp import TabularMDPFamily
from metarl.evaluation import MetaLearner
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata
from metarl.vector import make_vec

GRID = [round(0.1 * i, 1) for i in range(11)]
GAMMAS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
PULLS, ARMS, EPISODES = (10, 100, 500), (5, 10, 50), (10, 25, 50, 75, 100)

BANDIT_GRIDS: dict[str, tuple[Callable[[float], MetaLearner], list[float]]] = {
    "epsilon-greedy": (lambda v: EpsilonGreedyBandit(epsilon=v), GRID),
    "UCB1": (lambda v: UCB1(c=v), GRID),
    "Gittins": (lambda v: GittinsIndex(gamma=v), GAMMAS),
}
MDP_GRIDS: dict[str, tuple[Callable[[float], MetaLearner], list[float]]] = {
    "epsilon-greedy": (lambda v: EpsilonGreedyMDP(epsilon=v), GRID),
    "BEB": (lambda v: BEB(beta=v), GRID),
}


def _tune(
    family: Any,
    grids: dict[str, tuple[Callable[[float], MetaLearner], list[float]]],
    lengths: tuple[int, ...],
    label: Callable[[int], str],
    trials: int,
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    tasks = family.validation[:trials]
    chosen: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, list[float]]] = {}
    for name, (make, values) in grids.items():
        means = np.zeros((len(values), len(lengths)))
        for j, value in enumerate(values):
            t0 = time.perf_counter()
            vec = make_vec(family, tasks)
            returns = run_trials(make(value), vec, max(lengths), seed=seed)
            vec.close()
            means[j] = [returns[:, :n].sum(axis=1).mean() for n in lengths]
            print(
                f"  {family.id} {name} {value}: {np.round(means[j], 2).tolist()} ({time.perf_counter() - t0:.1f}s)"
            )
        best = means.argmax(axis=0)  # the first (smallest) value among exact ties
        chosen[name] = {label(n): values[best[i]] for i, n in enumerate(lengths)}
        scores[name] = {label(n): means[:, i].round(4).tolist() for i, n in enumerate(lengths)}
    return chosen, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="validation tasks (one trial each)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the envs and the agents")
    parser.add_argument("--out", type=Path, default=TUNED_PATH, help="where to write the JSON")
    args = parser.parse_args()
    meta = run_metadata(seed=args.seed)
    start = time.perf_counter()
    sizes = {"train": 0, "validation": args.trials}
    bandit: dict[str, dict[str, float]] = {}
    bandit_scores: dict[str, dict[str, list[float]]] = {}
    for k in ARMS:
        family = BernoulliBanditFamily(n_arms=k, n_pulls=max(PULLS), split_sizes=sizes)

        def label(n: int, k: int = k) -> str:
            return f"n={n},k={k}"

        chosen, scores = _tune(family, BANDIT_GRIDS, PULLS, label, args.trials, args.seed)
        for name in chosen:
            bandit.setdefault(name, {}).update(chosen[name])
            bandit_scores.setdefault(name, {}).update(scores[name])
    mdp_family = TabularMDPFamily(n_episodes=max(EPISODES), split_sizes=sizes)
    mdp, mdp_scores = _tune(mdp_family, MDP_GRIDS, EPISODES, lambda n: f"n={n}", args.trials, args.seed)
    record = {
        "about": "Constants of the classical baselines chosen on the validation split (scripts/tune_classical.py)",
        "split": "validation",
        "validation_trials": args.trials,
        "grids": {
            "bandit": {n: v for n, (_, v) in BANDIT_GRIDS.items()},
            "mdp": {n: v for n, (_, v) in MDP_GRIDS.items()},
        },
        "bandit": bandit,
        "mdp": mdp,
        "scores": {"bandit": bandit_scores, "mdp": mdp_scores},
        "seconds": round(time.perf_counter() - start, 1),
        **meta,
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps({"bandit": bandit, "mdp": mdp}, indent=1))
    print(f"wrote {args.out} in {record['seconds']}s")


if __name__ == "__main__":
    main()
