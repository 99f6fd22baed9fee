"""What knowing a tabular MDP is worth per episode, and how much of it planning over transitions adds.

    python benchmarks/rl2/known_mdp_values.py [--split test]

For each task of the split (TabularMDP-v0: 10 states, 5 actions, 10-step episodes from state 0), the
exact expected return of one episode (no sampling: the state distribution is propagated step by
step) of three policies that are told the task:

- ``optimal``: finite-horizon value iteration on the true transitions and mean rewards;
- ``myopic``: in each state the action with the largest true mean reward, ignoring transitions;
- ``uniform``: every action with probability 1/5.

The gap between ``optimal`` and ``myopic`` bounds what a learner gains by modelling the transitions
once it knows the rewards; late in a long trial a learner's per-episode return can approach
``optimal`` at most. Prints a Markdown table (mean over tasks, 95% normal interval).
"""

from __future__ import annotations

import argparse

import numpy as np

from metarl.agents.classical import finite_horizon_q
from metarl.registry import make_family


def episode_values(transitions: np.ndarray, rewards: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Expected return of one episode from state 0 under ``actions`` ``(M, H, S, A)``: the
    probability of each action per step and state (``M`` tasks, horizon ``H``)."""
    m, horizon, n_states, _ = actions.shape
    dist = np.zeros((m, n_states))
    dist[:, 0] = 1.0
    total = np.zeros(m)
    for t in range(horizon):
        joint = dist[:, :, None] * actions[:, t]  # P(s, a) at step t
        total += (joint * rewards).sum(axis=(1, 2))
        dist = np.einsum("msa,msan->mn", joint, transitions)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    args = parser.parse_args()
    family = make_family("TabularMDP-v0")
    tasks = family.split(args.split)
    transitions = np.stack([t.array("transitions") for t in tasks])
    rewards = np.stack([t.array("reward_means") for t in tasks])
    horizon = family.max_episode_steps
    m, n_states, n_actions = rewards.shape
    q = finite_horizon_q(transitions, rewards, horizon)
    eye = np.eye(n_actions)
    policies = {
        "optimal": eye[q.argmax(axis=-1)],
        "myopic": np.broadcast_to(eye[rewards.argmax(axis=-1)][:, None], (m, horizon, n_states, n_actions)),
        "uniform": np.full((m, horizon, n_states, n_actions), 1.0 / n_actions),
    }
    print(f"TabularMDP-v0, {args.split} split: {m} tasks; expected return of one {horizon}-step episode\n")
    print("| policy (told the task) | return per episode |")
    print("|---|---|")
    for name, actions in policies.items():
        values = episode_values(transitions, rewards, actions)
        half = 1.96 * values.std(ddof=1) / np.sqrt(m)
        print(f"| {name} | {values.mean():.2f} [{values.mean() - half:.2f}, {values.mean() + half:.2f}] |")


if __name__ == "__main__":
    main()
