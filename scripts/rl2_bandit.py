"""RL² on Bernoulli bandits (Duan et al. 2016, Table 1): train, then score beside the classical agents.

    # train one setting (n pulls per trial, k arms); resumable, logs and checkpoints in the run dir
    .venv/bin/python scripts/rl2_bandit.py train --pulls 10 --arms 5 --seed 0 [--minutes 8] [--resume]
    # score finished runs on 1000 held-out test trials beside the tuned classical agents
    .venv/bin/python scripts/rl2_bandit.py eval --run 10,5=benchmarks/rl2/runs/bandit_n10_k5_seed0 \
        --run 100,5=benchmarks/rl2/runs/bandit_n100_k5_seed0

``eval`` writes ``benchmarks/rl2/bandit.json`` and ``bandit.md`` (``--name NAME``: ``NAME.json``, ``NAME.md``,
so that scoring a subset of the settings does not replace the table of all of them). The table has one
trial per test task; ``--gap-repeats R`` plays each test task R times for the paired gap between RL²
and the best classical agent, so its CI is not dominated by the trials' own randomness.
``--split validation`` scores on the validation tasks instead, to choose among models before one is
scored on the test tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl2_common import (
    BENCH_DIR,
    add_gap_repeats_arg,
    add_split_arg,
    add_train_args,
    argmax_learners,
    check_gap_repeats,
    check_output_stem,
    gaps_markdown,
    paired_gap,
    run_training,
    runs_markdown,
    training_record,
)

from metarl.agents.classical_bench import LearnerSpec, bandit_table, load_tuned, scored_split_sizes
from metarl.agents.rl2 import RL2Learner
from metarl.envs.bandit import BernoulliBanditFamily
from metarl.fileio import atomic_write_text
from metarl.provenance import provenance_markdown, run_metadata


def classical_learners() -> dict[str, LearnerSpec]:
    """The tuned classical baselines of ``scripts/bench_classical.py``."""
    from bench_classical import bandit_learners

    return bandit_learners(load_tuned())


def evaluate_runs(
    runs: dict[tuple[int, int], Path],
    trials: int,
    seed: int,
    with_classical: bool,
    out_name: str = "bandit",
    gap_repeats: int = 1,
    split: str = "test",
) -> None:
    learners: dict[tuple[int, int], RL2Learner] = {s: RL2Learner.load(d) for s, d in runs.items()}
    greedy = argmax_learners(learners)
    records = {f"n={n},k={k}": training_record(d) for (n, k), d in runs.items()}
    result: dict[str, Any] = {
        "provenance": run_metadata(seed=seed),
        "trials": trials,
        "split": split,
        "seed": seed,
        "runs": records,
        "tables": [],
    }
    start = time.perf_counter()
    for k in sorted({k for _, k in runs}):
        pulls = sorted(n for n, kk in runs if kk == k)
        specs: dict[str, LearnerSpec] = dict(classical_learners()) if with_classical else {}
        specs["RL2"] = lambda s: learners[(s["n"], s["k"])]
        specs["RL2 argmax"] = lambda s: greedy[(s["n"], s["k"])]
        table = bandit_table(
            specs, pulls=pulls, arms=(k,), n_trials=trials, split=split, seed=seed, log=print
        )
        gaps = []
        if with_classical:
            sizes = scored_split_sizes(split, trials)
            for n in pulls:
                family = BernoulliBanditFamily(n_arms=k, n_pulls=n, split_sizes=sizes)
                totals: dict[tuple[Any, ...], Any] = {}  # the best classical agent runs once for both
                for name in ("RL2", "RL2 argmax"):
                    gaps.append(
                        paired_gap(
                            table,
                            specs,
                            {"n": n, "k": k},
                            family,
                            rl2_name=name,
                            seed=seed,
                            repeats=gap_repeats,
                            cache=totals,
                        )
                    )
                    print("paired gap", gaps[-1])
        entry = {"k": k, "table": table.to_dict(), "markdown": table.to_markdown(), "paired_gaps": gaps}
        result["tables"].append(entry)
        print(table.to_markdown())
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(BENCH_DIR / f"{out_name}.json", json.dumps(result, indent=1) + "\n")
    gaps_md = gaps_markdown([g for t in result["tables"] for g in t["paired_gaps"]])
    tables_md = "\n\n".join(t["markdown"] for t in result["tables"])
    parts = [tables_md, gaps_md, runs_markdown(records), provenance_markdown(result["provenance"])]
    atomic_write_text(BENCH_DIR / f"{out_name}.md", "\n\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train RL² on one (n, k) setting")
    tr.add_argument("--pulls", type=int, required=True, help="n: pulls (one-pull episodes) per trial")
    tr.add_argument("--arms", type=int, required=True, help="k: arms")
    add_train_args(tr, "bandit.json")
    ev = sub.add_parser("eval", help="score trained runs on held-out trials")
    ev.add_argument("--run", action="append", required=True, help="N,K=RUN_DIR (repeatable)")
    ev.add_argument("--trials", type=int, default=1000)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-classical", action="store_true")
    add_gap_repeats_arg(ev)
    add_split_arg(ev)
    ev.add_argument(
        "--name", default="bandit", help="output file stem under benchmarks/rl2/ (default: bandit)"
    )
    args = parser.parse_args()
    if args.command == "train":
        name = f"bandit_n{args.pulls}_k{args.arms}"
        run_training(args, {"family_kwargs": {"n_arms": args.arms, "n_pulls": args.pulls}}, name)
        return
    check_output_stem(args.name)
    torch.set_num_threads(1)
    runs: dict[tuple[int, int], Path] = {}
    for item in args.run:
        setting, sep, path = item.partition("=")
        try:
            n, k = (int(v) for v in setting.split(","))
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--run must look like N,K=RUN_DIR, got {item!r}")
        runs[(n, k)] = Path(path)
    check_gap_repeats(args.gap_repeats)
    evaluate_runs(
        runs, args.trials, args.seed, not args.no_classical, args.name, args.gap_repeats, args.split
    )


if __name__ == "__main__":
    main()
