"""RL² on tabular MDPs (Duan et al. 2016, Table 2): train, then score beside PSRL and the others.

    # train with n episodes (of 10 steps) per trial; resumable
    .venv/bin/python scripts/rl2_tabular_mdp.py train --episodes 10 --seed 0 [--minutes 20] [--resume]
    # score finished runs on 1000 held-out test trials beside the tuned classical agents
    .venv/bin/python scripts/rl2_tabular_mdp.py eval --run 10=benchmarks/rl2/runs/tabular_mdp_n10_seed0
    # return per episode 1..n of a trial (RL² beside the classical agents), here at n = 100
    .venv/bin/python scripts/rl2_tabular_mdp.py episodes --run benchmarks/rl2/models/tabular_mdp_n25_s30_g0997 --episodes 100

``eval`` writes ``benchmarks/rl2/tabular_mdp.json`` and ``tabular_mdp.md`` (``--name NAME``: ``NAME.json``,
``NAME.md``, so that scoring another run does not replace the table of all settings). Beside the
table it scores the same network acting greedily ("RL2 argmax") and the paired gaps of both RL²
columns against PSRL (the issue's target) and against the best classical agent: the learners play
the same test tasks with the same seeds, ``--gap-repeats R`` times each, and the CI is over tasks.
``--split validation`` scores on the validation tasks instead, to choose among models before one is
scored on the test tasks.

``episodes`` writes ``benchmarks/rl2/NAME.{json,md,png}`` (default ``tabular_mdp_n<n>_episodes``): the
mean return of each episode of the trial, one trial per task, for the run's policy and the tuned
classical agents, all on the same tasks. Where a total falls short of PSRL's, it shows in which
episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
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
    per_episode_eval,
    run_training,
    runs_markdown,
    training_record,
)

from metarl.agents.classical_bench import (
    LearnerSpec,
    load_tuned,
    mdp_table,
    resolve_learner,
    scored_split_sizes,
)
from metarl.agents.rl2 import RL2Learner
from metarl.envs.tabular_mdp import TabularMDPFamily
from metarl.fileio import atomic_write_text
from metarl.provenance import provenance_markdown, run_metadata


def classical_learners() -> dict[str, LearnerSpec]:
    """The tuned classical baselines of ``scripts/bench_classical.py``."""
    from bench_classical import mdp_learners

    return mdp_learners(load_tuned())


def check_tuned_episodes(episodes: Iterable[int], flag: str) -> None:
    """Exit with a clear message unless the classical agents' constants were tuned at every ``n``."""
    tuned_at = sorted(int(key.removeprefix("n=")) for key in load_tuned()["mdp"]["BEB"])
    for n in episodes:
        if n not in tuned_at:
            raise SystemExit(
                f"{flag}: n = {n} episodes, but the classical agents' constants were tuned for n in {tuned_at} only"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train RL² with n episodes per trial")
    tr.add_argument("--episodes", type=int, required=True, help="n: episodes per trial")
    add_train_args(tr, "tabular_mdp.json")
    ev = sub.add_parser("eval", help="score trained runs on held-out trials")
    ev.add_argument("--run", action="append", required=True, help="N=RUN_DIR (repeatable)")
    ev.add_argument("--trials", type=int, default=1000)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-classical", action="store_true")
    add_gap_repeats_arg(ev)
    ev.add_argument("--against", default="PSRL", help="the classical agent of the target (default: PSRL)")
    add_split_arg(ev)
    ev.add_argument(
        "--name", default="tabular_mdp", help="output file stem under benchmarks/rl2/ (default: tabular_mdp)"
    )
    ep = sub.add_parser("episodes", help="return per episode of a trial, beside the classical agents")
    ep.add_argument("--run", type=Path, required=True, help="the RL² run (or committed model) directory")
    ep.add_argument("--episodes", type=int, help="n: episodes per trial (default: the run's own)")
    add_split_arg(ep)
    ep.add_argument("--tasks", type=int, default=1000, help="tasks of the split, one trial each")
    ep.add_argument("--seed", type=int, default=0)
    ep.add_argument(
        "--name", help="output file stem under benchmarks/rl2/ (default: tabular_mdp_n<n>_episodes)"
    )
    args = parser.parse_args()
    if args.command == "episodes":
        per_episode(args)
        return
    if args.command == "train":
        name = f"tabular_mdp_n{args.episodes}"
        run_training(args, {"family_kwargs": {"n_episodes": args.episodes}}, name)
        return
    stem = check_output_stem(args.name)
    torch.set_num_threads(1)
    runs: dict[int, Path] = {}
    for item in args.run:
        setting, sep, path = item.partition("=")
        if not sep or not setting.isdigit():
            raise SystemExit(f"--run must look like N=RUN_DIR, got {item!r}")
        runs[int(setting)] = Path(path)
    check_gap_repeats(args.gap_repeats)
    if not args.no_classical:
        check_tuned_episodes(runs, "--run")
    learners = {n: RL2Learner.load(d) for n, d in runs.items()}
    greedy = argmax_learners(learners)
    specs: dict[str, LearnerSpec] = {} if args.no_classical else dict(classical_learners())
    if not args.no_classical and args.against not in specs:
        raise SystemExit(
            f"--against must name a classical agent, one of {sorted(specs)}; got {args.against!r}"
        )
    specs["RL2"] = lambda s: learners[s["n"]]
    specs["RL2 argmax"] = lambda s: greedy[s["n"]]
    start = time.perf_counter()
    table = mdp_table(
        specs, episodes=sorted(runs), n_trials=args.trials, split=args.split, seed=args.seed, log=print
    )
    records = {f"n={n}": training_record(d) for n, d in runs.items()}
    gaps = []
    if not args.no_classical:
        sizes = scored_split_sizes(args.split, args.trials)  # the tasks mdp_table scored
        for n in sorted(runs):
            family = TabularMDPFamily(n_episodes=n, split_sizes=sizes)
            totals: dict[tuple[Any, ...], Any] = {}  # each classical agent runs once for both RL² columns
            for against in dict.fromkeys((args.against, None)):
                for name in ("RL2", "RL2 argmax"):
                    gap = paired_gap(
                        table,
                        specs,
                        {"n": n},
                        family,
                        rl2_name=name,
                        seed=args.seed,
                        repeats=args.gap_repeats,
                        cache=totals,
                        against=against,
                    )
                    if against is None and gap["other"] == args.against:
                        continue  # the named agent is also the best: its rows are there already
                    gaps.append(gap)
                    print("paired gap", gap)
    result: dict[str, Any] = {
        "provenance": run_metadata(seed=args.seed),
        "trials": args.trials,
        "split": args.split,
        "seed": args.seed,
        "runs": records,
        "table": table.to_dict(),
        "markdown": table.to_markdown(),
        "paired_gaps": gaps,
        "eval_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(BENCH_DIR / f"{stem}.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(
        BENCH_DIR / f"{stem}.md",
        table.to_markdown()
        + "\n\n"
        + (gaps_markdown(gaps) + "\n\n" if gaps else "")
        + runs_markdown(records)
        + "\n\n"
        + provenance_markdown(result["provenance"])
        + "\n",
    )
    print(table.to_markdown())


def per_episode(args: argparse.Namespace) -> None:
    """The ``episodes`` command: RL² and the classical agents per episode of one trial per task."""
    for what in ("episodes", "tasks"):
        value = getattr(args, what)
        if value is not None and value < 1:
            raise SystemExit(f"--{what} must be a positive integer, got {value}")
    if args.episodes is None:
        config = RL2Learner.load(args.run).config
        args.episodes = config.resolve_episodes_per_trial(config.make_family())
    stem = check_output_stem(args.name or f"tabular_mdp_n{args.episodes}_episodes")
    check_tuned_episodes([args.episodes], "--episodes")
    family = TabularMDPFamily(
        n_episodes=args.episodes, split_sizes=scored_split_sizes(args.split, args.tasks)
    )
    setting = {"n": args.episodes}
    others = {name: resolve_learner(spec, setting) for name, spec in classical_learners().items()}
    per_episode_eval(args.run, name=stem, others=others, seed=args.seed, family=family, split=args.split)


if __name__ == "__main__":
    main()
