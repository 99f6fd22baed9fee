"""``make demo``: meta-train MAML-TRPO on Navigation2D for a few minutes, then meta-test it.

1. Meta-train MAML-TRPO on Navigation2D-v0's training tasks (the paper's settings: 20 tasks per
   meta-batch, 20 episodes per task, one inner step of 0.1, TRPO with KL bound 0.01) for at most
   ``--iterations`` meta-iterations or ``--minutes`` of wall-clock, with checkpoints under
   ``runs/demo`` (re-running resumes from them).
2. Meta-test on the 40 held-out test tasks: return after 0, 1, 2, 3 gradient steps of 40 episodes
   (the later steps at half size, as in the MAML reference's test script), beside a random policy
   and an oracle that is told the goal, with 95% bootstrap CIs.
3. Print the adaptation tables; save results JSON and the adaptation-curve plot.

    python scripts/demo.py [--iterations 150] [--minutes 4] [--seed 0] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import metarl
from metarl.agents.maml_train import train
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.scripted import Navigation2DOracle, RandomLearner


def main() -> None:
    parser = argparse.ArgumentParser(description="Meta-train MAML-TRPO on Navigation2D, then meta-test it.")
    parser.add_argument("--iterations", type=int, default=150, help="meta-iterations at most")
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = MAMLTRPOConfig(
        family="Navigation2D-v0",
        seed=args.seed,
        meta_iterations=args.iterations,
        time_budget_s=args.minutes * 60.0,
        run_dir=str(args.out / "maml_trpo"),
        checkpoint_every=10,
        normalize_actions=True,  # the policy acts in units of [-1, 1] (rllab's normalize(env))
        later_step_scale=0.5,  # meta-test steps after the first at half size (the reference's test script)
    )
    print(
        f"[1/3] meta-training MAML-TRPO on {config.family} (at most {args.iterations} iterations "
        f"or {args.minutes:g} min; logs and checkpoints in {config.run_dir})"
    )
    t0 = time.perf_counter()
    algo = train(config, resume=True)
    print(f"      trained for {time.perf_counter() - t0:.0f} s in this run")

    family = metarl.make_family("Navigation2D-v0")
    print(f"[2/3] meta-testing on {len(family.test)} held-out test tasks (40 episodes per gradient step)")
    results = []
    for learner, rounds in ((algo.learner(), 4), (RandomLearner(), 1), (Navigation2DOracle(), 1)):
        res = metarl.evaluate(
            learner, family, split="test", rounds=rounds, episodes_per_round=40, seed=args.seed + 1
        )
        results.append(res)

    print("[3/3] results\n")
    for res in results:
        print(res.to_markdown() + "\n")
    maml, random_, oracle = results
    steps = maml.summary()
    print(
        f"MAML-TRPO: {steps[0]['mean']:.1f} before adaptation -> {steps[1]['mean']:.1f} after one step "
        f"-> {steps[2]['mean']:.1f} after two -> {steps[3]['mean']:.1f} after three (random policy "
        f"{random_.summary()[0]['mean']:.1f}, "
        f"oracle {oracle.summary()[0]['mean']:.1f})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    maml.to_json(args.out / "maml_trpo_test.json")
    random_.to_json(args.out / "random_test.json")
    oracle.to_json(args.out / "oracle_test.json")
    maml.plot(args.out / "adaptation.png", others=[random_, oracle])
    print(f"\nwrote {args.out}/maml_trpo_test.json, random_test.json, oracle_test.json and adaptation.png")


if __name__ == "__main__":
    main()
