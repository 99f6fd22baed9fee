"""What does a trained RL² policy do on the tabular MDP? Action use and reaction to rewards.

Runs one trial (sampled actions, as in the benchmark tables) on each of the first ``--tasks`` test
tasks of the run's family and reports:

* ``action_frequency``: how often each action is taken. The tasks' actions are exchangeable (every
  ``mu[s, a]`` and ``P[s, a]`` is drawn i.i.d.), so a policy that never uses some action has
  settled on a fixed order in which it tries them;
* ``p_repeat_after_high`` / ``p_repeat_after_low``: on a return to a state, the probability of
  taking the same action as on the previous visit, when that visit paid more than 1 (the prior
  mean of ``mu``) and when it paid at most 1. A policy that uses the rewards it saw repeats much
  more often after a high reward;
* ``p_best_observed``: on a return to a state, the probability of taking the action with the
  highest mean reward observed so far in that state (among those tried);
* ``p_best_mean``: the probability of taking the action with the highest true ``mu[s, a]``;
* ``readout_r2``: per window of steps, the held-out R² of a linear readout from the GRU's hidden
  state of each state-action pair's posterior mean reward (prior N(1, 1), unit noise) and visit
  count so far, and of the posterior mean rewards of the current state's actions, the part a
  decision needs (``diagnosis.py``): does the network remember what it saw? ``readout_r2_untrained``
  is the same readout from a freshly initialised network of the same size fed the same inputs (a
  random recurrent "reservoir"): the part of the memory that training added.

    .venv/bin/python benchmarks/rl2/diagnose_mdp_policy.py --run benchmarks/rl2/runs/tabular_mdp_n10_vn_seed0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnosis import run_diagnosis, trained_and_untrained_r2  # beside this script

from metarl.agents.rl2 import collect_trials
from metarl.agents.rl2_train import load_run
from metarl.agents.rl2_trials import TrialVecEnv


def mdp_targets(
    states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """``(B, T, 2 S A + A)``: each pair's posterior mean reward, its visit count, and the posterior
    mean rewards of the current state's actions, before step ``t`` (the decision-relevant part).

    Steps past a trial's end (padding) repeat the last statistics; all trials here have equal length.
    """
    n_trials, n_steps = actions.shape
    n_pairs = shape[0] * shape[1]
    rows = np.arange(n_trials)
    pair = states * shape[1] + actions
    counts = np.zeros((n_trials, n_pairs))
    sums = np.zeros((n_trials, n_pairs))
    targets = np.zeros((n_trials, n_steps, 2 * n_pairs + shape[1]))
    here = states[:, :, None] * shape[1] + np.arange(shape[1])  # (B, T, A): the current state's pairs
    for t in range(n_steps):
        means = (1.0 + sums) / (1.0 + counts)
        targets[:, t, :n_pairs] = means
        targets[:, t, n_pairs : 2 * n_pairs] = counts
        targets[:, t, 2 * n_pairs :] = np.take_along_axis(means, here[:, t], 1)
        counts[rows, pair[:, t]] += 1.0
        sums[rows, pair[:, t]] += rewards[:, t]
    return targets


def diagnose(run: Path, n_tasks: int, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    agent = load_run(run)
    family = agent.family
    if "reward_means" not in family.test[0].names:
        raise SystemExit(f"{run} is a run on {family.id}; this diagnosis is for TabularMDP runs")
    tasks = list(family.test)[:n_tasks]
    env = TrialVecEnv(family, len(tasks), agent.episodes_per_trial, prev_obs=agent.config.prev_obs)
    batch = collect_trials(agent.model, env, tasks, seed=seed, generator=torch.Generator().manual_seed(seed))
    env.close()
    mu = np.stack([t.array("reward_means") for t in tasks])  # (B, S, A)
    n_states, n_actions = mu.shape[1:]
    states = batch.inputs[..., :n_states].argmax(-1).numpy()
    actions, rewards, mask = batch.actions.numpy(), batch.rewards.numpy(), batch.mask.numpy()
    repeat = {True: [0, 0], False: [0, 0]}  # last reward > 1 -> [repeats, returns to the state]
    best_observed = [0, 0]
    best_mean = 0
    for i in range(len(tasks)):
        last: dict[int, tuple[int, float]] = {}
        total: dict[tuple[int, int], list[float]] = {}
        for t in range(int(mask[i].sum())):
            s, a, r = int(states[i, t]), int(actions[i, t]), float(rewards[i, t])
            if s in last:
                prev_a, prev_r = last[s]
                repeat[prev_r > 1.0][0] += a == prev_a
                repeat[prev_r > 1.0][1] += 1
                tried = {b: np.mean(v) for (ss, b), v in total.items() if ss == s}
                best_observed[0] += a == max(tried, key=tried.__getitem__)
                best_observed[1] += 1
            best_mean += a == int(mu[i, s].argmax())
            last[s] = (a, r)
            total.setdefault((s, a), []).append(r)
    steps = int(mask.sum())
    n_pairs = n_states * n_actions
    targets = mdp_targets(states, actions, rewards.astype(np.float64), (n_states, n_actions))
    groups = {
        "posterior_mean_reward": slice(0, n_pairs),
        "visit_count": slice(n_pairs, 2 * n_pairs),
        "current_state_means": slice(2 * n_pairs, 2 * n_pairs + n_actions),
    }
    readouts = trained_and_untrained_r2(agent, batch.inputs, targets, groups)
    return {
        "run": str(run),
        "tasks": len(tasks),
        "seed": seed,
        "trial_return": float(batch.trial_returns.mean()),
        "action_frequency": (np.bincount(actions[mask], minlength=n_actions) / steps).round(4).tolist(),
        "p_repeat_after_high": repeat[True][0] / max(repeat[True][1], 1),
        "p_repeat_after_low": repeat[False][0] / max(repeat[False][1], 1),
        "p_best_observed": best_observed[0] / max(best_observed[1], 1),
        "p_best_mean": best_mean / steps,
        "chance": 1.0 / n_actions,
        "readout_r2": readouts[0],
        "readout_r2_untrained": readouts[1],
    }


def main() -> None:
    run_diagnosis(
        __doc__.splitlines()[0], "TabularMDP", 300, lambda run, tasks, seed: [diagnose(run, tasks, seed)]
    )


if __name__ == "__main__":
    main()
