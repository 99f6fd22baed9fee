"""How much of a MAML-TRPO HalfCheetahVel return is the policy's own action noise?

Meta-tests checkpoints on the family's test split with the benchmark's protocol (20 episodes per
gradient step, episodes seeded with ``--eval-seed``) for rounds 0 and 1 (before and after one
step), twice:

* ``sampled``: the benchmark's learner, unchanged (the table's numbers);
* ``mean_after``: the same adaptation (round 0 samples actions, the step is taken on those
  episodes), but round 1 acts with the adapted policy's mean action. The oracle of the benchmark
  table (SB3 PPO) is run this way, with its mean action.

For each it splits the return per episode into the control cost, ``w * sum(clip(a)^2)`` summed
over the episode (``w`` is the family env's control-cost weight, 0.05; computed from the actions the
policy emits, clipped to the box as the env does), and the velocity term (the rest: ``-sum |v_x - v_goal|``), and reports the policy's mean standard
deviation. It is a diagnostic: the benchmark's table keeps sampled actions, as in the paper.

    .venv/bin/python benchmarks/maml_cheetah_vel/noise_cost.py \\
        --checkpoint runs/maml_trpo/HalfCheetahVel-v0/tanh64_seed0/best.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

import metarl
from metarl.agents.maml_train import load_algorithm


class Recorder:
    """Wraps a MAML learner: records the control cost of the actions each round emits and the
    policy's standard deviation; with ``mean_after`` it acts with the mean action from round 1 on."""

    adaptation_unit = "gradient step"

    def __init__(self, learner: Any, mean_after: bool, ctrl_weight: float) -> None:
        self.learner = learner
        self.ctrl_weight = ctrl_weight
        self.name = learner.name + (" (mean action after adapting)" if mean_after else "")
        self.mean_after = mean_after
        self.ctrl: list[float] = []  # per round: control cost summed over sub-envs and steps
        self.steps: list[int] = []
        self.std: list[float] = []

    def begin_adaptation(self, vec_env: Any, seed: int) -> Any:
        session = self.learner.begin_adaptation(vec_env, seed)
        outer = self

        class Session:
            def policy(self) -> Any:
                sampler = session.policy()
                sampler.deterministic = outer.mean_after and session.steps_taken > 0
                outer.std.append(float(session.params["log_std"].exp().mean()))
                outer.ctrl.append(0.0)
                outer.steps.append(0)

                def act(observations: np.ndarray) -> np.ndarray:
                    actions = sampler(observations)
                    clipped = np.clip(actions, -1.0, 1.0)
                    outer.ctrl[-1] += float(outer.ctrl_weight * np.square(clipped).sum())
                    outer.steps[-1] += actions.shape[0]
                    return actions

                act.clip_actions = sampler.clip_actions  # type: ignore[attr-defined]
                return act

            def update(self, episodes: Any) -> None:
                session.update(episodes)

        return Session()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, required=True, action="append", help="MAML checkpoint file"
    )
    parser.add_argument("--eval-seed", type=int, default=12345)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and round")
    parser.add_argument("--out", type=Path, default=None, help="append the JSON lines here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = metarl.make_family("HalfCheetahVel-v0")
    horizon = family.max_episode_steps
    env = family.make_env(family.test[0])
    ctrl_weight = float(env.unwrapped._ctrl_cost_weight)  # the family's, not Gymnasium's default
    env.close()
    for path in args.checkpoint:
        learner = load_algorithm(path).learner(str(path), later_step_scale=0.5)
        row: dict[str, Any] = {"checkpoint": str(path), "eval_seed": args.eval_seed}
        for mode in ("sampled", "mean_after"):
            rec = Recorder(learner, mode == "mean_after", ctrl_weight)
            result = metarl.evaluate(
                rec, family, split="test", rounds=2, episodes_per_round=args.episodes, seed=args.eval_seed
            )
            ret = result.returns.mean(0)
            ctrl = [c / s * horizon for c, s in zip(rec.ctrl, rec.steps, strict=True)]
            row[mode] = {
                "return": [round(float(r), 2) for r in ret],
                "ctrl_cost": [round(-c, 2) for c in ctrl],
                "velocity_term": [round(float(r) + c, 2) for r, c in zip(ret, ctrl, strict=True)],
                "policy_std": [round(s, 4) for s in rec.std],
            }
        line = json.dumps(row)
        print(line)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
