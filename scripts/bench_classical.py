"""Benchmark the classical baselines on held-out tasks, as in RL² (Duan et al. 2016), Tables 1-2.

BernoulliBandit: total reward per trial for (n pulls, k arms) in {10, 100, 500} x {5, 10, 50};
TabularMDP: total reward per trial of n in {10, 25, 50, 75, 100} episodes. Each cell averages one
trial on each of the first ``--trials`` test tasks, with a 95% bootstrap CI. Constants are the
ones tuned on the validation split for each setting (``benchmarks/classical/tuned.json``, from
``scripts/tune_classical.py``). Writes ``benchmarks/classical/results.json`` and ``README.md``.

    .venv/bin/python scripts/bench_classical.py [--trials 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from metarl.agents.classical import (
    BEB,
    PSRL,
    UCB1,
    EpsilonGreedyBandit,
    EpsilonGreedyMDP,
    GittinsIndex,
    GreedyBandit,
    GreedyMDP,
    OptimisticThompsonSampling,
    RandomBandit,
    RandomMDP,
    ThompsonSampling,
)
from metarl.agents.classical_bench import LearnerSpec, bandit_table, load_tuned, mdp_table
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata

OUT = Path(__file__).resolve().parent.parent / "benchmarks" / "classical"


def bandit_learners(tuned: dict[str, Any]) -> dict[str, LearnerSpec]:
    """The RL² bandit baselines; tuned constants looked up per setting ``{"n", "k"}``."""
    t = tuned["bandit"]

    def key(s: dict[str, int]) -> str:
        return f"n={s['n']},k={s['k']}"

    return {
        "random": RandomBandit(),
        "greedy": GreedyBandit(),
        "epsilon-greedy": lambda s: EpsilonGreedyBandit(epsilon=t["epsilon-greedy"][key(s)]),
        "UCB1": lambda s: UCB1(c=t["UCB1"][key(s)]),
        "TS": ThompsonSampling(),
        "OTS": OptimisticThompsonSampling(),
        "Gittins": lambda s: GittinsIndex(gamma=t["Gittins"][key(s)]),
    }


def mdp_learners(tuned: dict[str, Any]) -> dict[str, LearnerSpec]:
    """The MDP baselines; tuned constants looked up per setting ``{"n"}``."""
    t = tuned["mdp"]
    return {
        "random": RandomMDP(),
        "greedy": GreedyMDP(),
        "epsilon-greedy": lambda s: EpsilonGreedyMDP(epsilon=t["epsilon-greedy"][f"n={s['n']}"]),
        "PSRL": PSRL(),
        "BEB": lambda s: BEB(beta=t["BEB"][f"n={s['n']}"]),
    }


def _constants(tuned: dict[str, Any]) -> str:
    lines = ["| family | learner | constant | chosen per setting |", "|---|---|---|---|"]
    names = {"epsilon-greedy": "epsilon", "UCB1": "c", "Gittins": "gamma", "BEB": "beta"}
    for fam in ("bandit", "mdp"):
        for learner, values in tuned[fam].items():
            shown = ", ".join(f"{k}: {v:g}" for k, v in values.items())
            lines.append(f"| {fam} | {learner} | {names.get(learner, '?')} | {shown} |")
    return "\n".join(lines)


def readme(record: dict[str, Any], bandit_md: str, mdp_md: str, tuned: dict[str, Any]) -> str:
    m = record["machine"]
    return f"""# Classical baselines: Bernoulli bandits and tabular MDPs (RL² Tables 1-2)

Total reward per trial, mean over {record["trials"]} held-out trials (one per task of the **test**
split, `split_seed` 0), with 95% percentile-bootstrap confidence intervals; the best mean of each
row in bold. A trial is n episodes of one task: n single-pull episodes for bandits, n episodes of
10 steps (from state 0) for the 10-state, 5-action MDPs. Agents keep their statistics across the
episodes of a trial and start afresh in the next.

- Command: `{record["command"]}`
- Seed: {record["seed"]} (sub-env i, i.e. trial i, is reset with seed + i; agents are seeded with the seed)
- Commit: `{record["commit"]}`
- Machine: {m["cpu"]}, {m["cores"]} cores (`nproc`), load average {m.get("load_average_1_5_15min")}; Python {m["python"]}, numpy {m["versions"].get("numpy")}
- Date: {record["date"]}; runtime {record["seconds"]:.0f} s

## Bernoulli bandits (`BernoulliBandit-v0`, arm means ~ U[0, 1])

{bandit_md}

## Tabular MDPs (`TabularMDP-v0`, 10 states, 5 actions, horizon 10)

{mdp_md}

## Constants

Tuned on the validation split ({tuned["validation_trials"]} trials per setting; grid
{{0, 0.1, ..., 1.0}} for epsilon, UCB1's c and BEB's beta, {{0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99}}
for the Gittins discount) by `scripts/tune_classical.py`; see `tuned.json` for every score.

{_constants(tuned)}

## Notes

- Bandit agents use the Beta(1, 1) posterior (the task prior): greedy ranks arms by posterior mean
  (1 + s) / (2 + n); UCB1 plays unplayed arms first, then s / n + c sqrt(2 ln t / n); OTS is
  max(Thompson sample, posterior mean); Gittins indices come from calibration with a truncated
  discounted dynamic program (`metarl.agents.gittins`, checked against Gittins et al.'s
  published tables), with the discount tuned per setting.
- MDP agents plan at the start of every episode by 10-step value iteration: greedy and
  epsilon-greedy in the posterior-mean MDP (Dirichlet(1) transitions, N(1, 1) mean rewards with
  unit noise), PSRL in an MDP sampled from that posterior, BEB in the posterior-mean MDP with
  reward bonus beta / (1 + N(s, a)). Like an RL² policy, they never see the state reached by an
  episode's last step (the env has already reset); they do see its reward.
- Agents that cannot know the trial length and have one constant for all lengths are run once
  for the longest trial and scored on prefixes (`metarl.agents.classical_bench.trial_table`).
- To add RL² (or any learner with `adaptation_unit = "episode"`) to these tables, call
  `bandit_table` / `mdp_table` from `metarl.agents.classical_bench` with it among the learners.
- Limits: BEB's beta (from n = 50) and the Gittins discount (n = 500) were chosen at the top of
  their grids, so a wider grid might do better there. Tuned epsilon is 0 for the MDPs and for
  bandits up to n = 100, so epsilon-greedy equals greedy in those rows. The commit is marked
  `-dirty` when other files in the shared working tree had uncommitted edits; the benchmark's own
  code (`agents/classical*.py`, `agents/gittins.py`, `envs/bandit.py`, `envs/tabular_mdp.py`,
  this script) was committed. The machine was shared, so the runtime is only indicative.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="test tasks, one trial each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT, help="directory for results.json and README.md")
    parser.add_argument(
        "--tuned", type=Path, default=None, help="tuned constants (default: the committed tuned.json)"
    )
    args = parser.parse_args()
    record: dict[str, Any] = {**run_metadata(seed=args.seed), "trials": args.trials}
    tuned = load_tuned(args.tuned)
    start = time.perf_counter()
    bandit = bandit_table(bandit_learners(tuned), n_trials=args.trials, seed=args.seed, log=print)
    mdp = mdp_table(mdp_learners(tuned), n_trials=args.trials, seed=args.seed, log=print)
    record["seconds"] = time.perf_counter() - start
    record["tuned"] = {"bandit": tuned["bandit"], "mdp": tuned["mdp"], "tuned_at_commit": tuned.get("commit")}
    record["bandit"] = bandit.to_dict()
    record["mdp"] = mdp.to_dict()
    record["markdown"] = {"bandit": bandit.to_markdown(), "mdp": mdp.to_markdown()}
    atomic_write_text(args.out / "results.json", json.dumps(record, indent=1) + "\n")
    atomic_write_text(args.out / "README.md", readme(record, bandit.to_markdown(), mdp.to_markdown(), tuned))
    print(bandit.to_markdown())
    print(mdp.to_markdown())
    print(f"wrote {args.out / 'results.json'} and README.md in {record['seconds']:.0f}s")


if __name__ == "__main__":
    main()
