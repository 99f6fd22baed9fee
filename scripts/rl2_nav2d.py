"""RL² on Navigation2D: return per episode 1..N of a trial on held-out goals.

    .venv/bin/python scripts/rl2_nav2d.py train --seed 0 [--minutes 10] [--resume]
    .venv/bin/python scripts/rl2_nav2d.py eval --run benchmarks/rl2/runs/nav2d_seed0

``eval`` writes ``benchmarks/rl2/nav2d.{json,md,png}``, beside the scripted references (random,
trilateration after one probing episode, oracle) scored the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl2_common import add_train_args, per_episode_eval, run_training

from metarl.agents.scripted import Navigation2DOracle, Navigation2DTrilateration, RandomLearner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_args(sub.add_parser("train", help="train RL² on Navigation2D-v0"), "nav2d.json")
    ev = sub.add_parser("eval", help="per-episode returns on the test split")
    ev.add_argument("--run", type=Path, required=True)
    ev.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "train":
        run_training(args, {}, "nav2d")
        return
    others = {
        "random": RandomLearner(),
        "trilateration": Navigation2DTrilateration(),
        "oracle": Navigation2DOracle(),
    }
    per_episode_eval(args.run, name="nav2d", others=others, seed=args.seed)


if __name__ == "__main__":
    main()
