"""How much does the draw of 40 test goals move Navigation2D's adaptation numbers?

Meta-tests MAML-TRPO checkpoints with the benchmark's protocol (40 episodes per gradient step,
later steps half the first, episodes seeded with 12345) on the family's test split, on its
validation split, and on ``--fresh`` goals drawn from the task distribution with ``--draw-seed``
(none of them in any split). The fresh-goal mean estimates the return expected over the whole
distribution, which is what a paper's figure on its own draw of goals also estimates. The test
split stays the benchmark's; this is a diagnostic.

The per-split means are also regressed on the goal's distance from the start: returns fall with
the distance, so a split with more far goals scores lower.

Last, it prices the policy's own noise: a scripted walker that aims straight at the goal is run on
the fresh goals without noise and with Gaussian noise of the checkpoint's initial standard
deviation (in the plane's units), through the family's own env; ``noise_std_plane_by_step`` is the
policy's standard deviation, averaged over the fresh goals, after 0, 1 and 2 steps.

    .venv/bin/python benchmarks/maml_nav2d/task_draw.py \\
        --checkpoint runs/maml_trpo/Navigation2D-v0/tanh_fast_seed2/checkpoints/ckpt_0000140.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import metarl
from metarl.agents.maml_train import load_algorithm


def summarise(returns: np.ndarray, goals: np.ndarray) -> dict[str, Any]:
    """Mean (and 95% normal CI over tasks) after each step, and mean goal distance."""
    n = returns.shape[0]
    mean = returns.mean(0)
    half = 1.96 * returns.std(0, ddof=1) / np.sqrt(n)
    return {
        "tasks": n,
        "mean_goal_distance": round(float(np.linalg.norm(goals, axis=1).mean()), 4),
        "share_beyond_0.5": round(float((np.linalg.norm(goals, axis=1) > 0.5).mean()), 4),
        "mean": [round(float(m), 2) for m in mean],
        "ci95_half_width": [round(float(h), 2) for h in half],
    }


class NoiseRecorder:
    """Wraps a MAML learner; records the mean policy standard deviation over tasks at each round."""

    adaptation_unit = "gradient step"

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.name = learner.name
        self.stds: list[float] = []

    def begin_adaptation(self, vec_env: Any, seed: int) -> Any:
        session = self.learner.begin_adaptation(vec_env, seed)
        stds = self.stds

        class Session:
            def policy(self) -> Any:
                stds.append(float(session.params["log_std"].exp().mean()))
                return session.policy()

            def update(self, episodes: Any) -> None:
                session.update(episodes)

        return Session()


def noisy_walker(family: Any, tasks: list[Any], std: float, seed: int) -> float:
    """Mean return of a scripted walker that aims at the goal (action = goal - position, clipped by
    the env) with Gaussian noise of ``std`` per axis in the plane: the cost of a policy's noise."""
    env = family.make_batched_env(tasks)
    obs, _ = env.reset(seed=seed)
    goals = np.stack([t.array("goal") for t in tasks])
    rng = np.random.default_rng(seed)
    total = np.zeros(len(tasks))
    alive = np.ones(len(tasks), dtype=bool)
    for _ in range(family.max_episode_steps):
        actions = (goals - obs + rng.normal(0.0, std, goals.shape)).astype(np.float32)
        obs, rewards, terms, truncs, _ = env.step(actions)
        total += np.where(alive, rewards, 0.0)
        alive &= ~(terms | truncs)
        if not alive.any():
            break
    env.close()
    return float(total.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, required=True, action="append", help="MAML checkpoint file"
    )
    parser.add_argument("--fresh", type=int, default=400, help="goals drawn from the distribution")
    parser.add_argument("--draw-seed", type=int, default=2026)
    parser.add_argument("--eval-seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    if args.fresh < 2:
        raise SystemExit(f"--fresh must be at least 2, got {args.fresh}")
    torch.set_num_threads(1)
    family = metarl.make_family("Navigation2D-v0")
    fresh = family.sample(args.fresh, np.random.default_rng(args.draw_seed))
    held = {t for name in ("train", "validation", "test") for t in family.split(name)}
    if any(t in held for t in fresh):
        raise SystemExit("a fresh goal coincides with a split's; choose another --draw-seed")
    sets = {"test": list(family.test), "validation": list(family.validation), "fresh": fresh}
    rows = []
    for path in args.checkpoint:
        learner = load_algorithm(path).learner(str(path), later_step_scale=0.5)
        row: dict[str, Any] = {
            "checkpoint": str(path),
            "draw_seed": args.draw_seed,
            "eval_seed": args.eval_seed,
        }
        dist_fit = []
        recorder = NoiseRecorder(learner)
        for name, tasks in sets.items():
            recorder.stds.clear()
            result = metarl.evaluate(
                recorder, family, tasks=tasks, rounds=3, episodes_per_round=40, seed=args.eval_seed
            )
            goals = np.stack([t.array("goal") for t in tasks])
            row[name] = summarise(result.returns, goals)
            dist_fit.append((np.linalg.norm(goals, axis=1), result.returns[:, 1]))
        # return after one step against goal distance, fitted on all goals together
        d = np.concatenate([x for x, _ in dist_fit])
        r = np.concatenate([y for _, y in dist_fit])
        slope, intercept = np.polyfit(d, r, 1)
        row["one_step_vs_distance"] = {
            "slope": round(float(slope), 2),
            "intercept": round(float(intercept), 2),
        }
        # the policy's noise in the plane's units (normalised actions are scaled by the box), at
        # each step of the fresh goals' adaptation (the last set evaluated)
        scale = float(family.make_env().action_space.high[0]) if learner.config.normalize_actions else 1.0
        row["noise_std_plane_by_step"] = [round(x * scale, 4) for x in recorder.stds]
        std = recorder.stds[0]
        row["walker_return_fresh"] = {
            "no_noise": round(noisy_walker(family, fresh, 0.0, args.eval_seed), 2),
            "policy_noise": round(noisy_walker(family, fresh, std * scale, args.eval_seed), 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
