"""RL² on HalfCheetahVel: return per episode 1..N of a trial on held-out target velocities.

    .venv/bin/python scripts/rl2_cheetah_vel.py train --seed 0 [--minutes 60] [--resume]
    .venv/bin/python scripts/rl2_cheetah_vel.py eval --run benchmarks/rl2/runs/cheetah_vel_seed0

``eval`` writes ``benchmarks/rl2/cheetah_vel.{json,md,png}`` beside a random-action reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl2_common import add_train_args, per_episode_eval, run_training

from metarl.agents.scripted import RandomLearner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_args(sub.add_parser("train", help="train RL² on HalfCheetahVel-v0"), "cheetah_vel.json")
    ev = sub.add_parser("eval", help="per-episode returns on the test split")
    ev.add_argument("--run", type=Path, required=True)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--tasks", type=int, default=None, help="first N test tasks only")
    args = parser.parse_args()
    if args.command == "train":
        run_training(args, {}, "cheetah_vel")
        return
    per_episode_eval(
        args.run, name="cheetah_vel", others={"random": RandomLearner()}, n_tasks=args.tasks, seed=args.seed
    )


if __name__ == "__main__":
    main()
