"""Where does an RL² bandit policy lose reward against greedy and Gittins? Pull statistics by time.

Runs one trial on each of the first ``--tasks`` test tasks of the run's family (sampled actions, as
in the benchmark tables), and the same trials for the greedy and Gittins agents (tuned constants
from ``benchmarks/classical/tuned.json``), and reports, per window of pull indices:

* ``p_true_best``: the share of pulls of the arm with the highest true success probability;
* ``p_untried``: the share of pulls of an arm not pulled before in the trial (exploration);
* ``p_post_best``: the share of pulls of an arm with the highest Beta(1, 1) posterior mean among
  the arms pulled so far (exploitation of what was seen; ties count);
* ``regret``: the mean, per pull, of the best true probability minus the pulled arm's.

and, per trial, the mean number of distinct arms pulled (``arms_tried``) and the return.

For RL² it also asks whether the GRU *remembers* what it saw: ``readout_r2`` is, per window, the R²
on held-out trials (half of them) of a ridge regression from the hidden state before pull ``t`` to
each arm's Beta(1, 1) posterior mean and pull count at that time. A policy that remembers the
statistics but does not pull the best-looking arm has a policy problem, not a memory problem.
``readout_r2_untrained`` is the same readout from a freshly initialised network fed the same inputs.

    .venv/bin/python benchmarks/rl2/diagnose_bandit_policy.py --run benchmarks/rl2/runs/bandit_n100_k5_vn_from_n10_seed0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnosis import run_diagnosis, trained_and_untrained_r2, windows  # beside this script

from metarl.agents.classical import GittinsIndex, GreedyBandit
from metarl.agents.classical_bench import load_tuned
from metarl.agents.rl2 import collect_trials
from metarl.agents.rl2_train import load_run
from metarl.agents.rl2_trials import TrialVecEnv


def pull_statistics(actions: np.ndarray, rewards: np.ndarray, means: np.ndarray) -> dict[str, Any]:
    """Statistics of ``(B, n)`` pulls and rewards on tasks with ``(B, k)`` true arm means."""
    n_trials, n_pulls = actions.shape
    k = means.shape[1]
    rows = np.arange(n_trials)
    before = bandit_targets(actions, rewards, k)  # posterior means and counts before each pull
    tried = before[..., k:] > 0
    posterior = np.where(tried, before[..., :k], -np.inf)
    cols = np.arange(n_pulls)
    untried = ~tried[rows[:, None], cols, actions]
    post_best = tried.any(-1) & (posterior[rows[:, None], cols, actions] >= posterior.max(-1) - 1e-12)
    arms_tried = float(((before[:, -1, k:] > 0) | (np.arange(k) == actions[:, -1:])).sum(1).mean())
    true_best = actions == means.argmax(1)[:, None]
    regret = means.max(1)[:, None] - means[rows[:, None], actions]
    out: dict[str, Any] = {
        "return": float(rewards.sum(1).mean()),
        "arms_tried": arms_tried,
        "windows": {},
    }
    for lo, hi in windows(n_pulls):
        out["windows"][f"{lo + 1}-{hi}"] = {
            "p_true_best": round(float(true_best[:, lo:hi].mean()), 4),
            "p_untried": round(float(untried[:, lo:hi].mean()), 4),
            "p_post_best": round(float(post_best[:, lo:hi].mean()), 4),
            "regret": round(float(regret[:, lo:hi].mean()), 4),
        }
    return out


def bandit_targets(actions: np.ndarray, rewards: np.ndarray, k: int) -> np.ndarray:
    """``(B, n, 2k)``: each arm's Beta(1, 1) posterior mean, then its pull count, before pull ``t``."""
    n_trials, n_pulls = actions.shape
    rows = np.arange(n_trials)
    counts = np.zeros((n_trials, k))
    successes = np.zeros((n_trials, k))
    targets = np.zeros((n_trials, n_pulls, 2 * k))
    for t in range(n_pulls):
        targets[:, t, :k] = (1.0 + successes) / (2.0 + counts)
        targets[:, t, k:] = counts
        counts[rows, actions[:, t]] += 1.0
        successes[rows, actions[:, t]] += rewards[:, t]
    return targets


def classical_pulls(learner: Any, family: Any, tasks: list[Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``learner`` for one trial per task; return its ``(B, n)`` pulls and rewards."""
    env = family.make_batched_env(tasks)
    policy = learner.begin_adaptation(env, seed).policy()
    obs, _ = env.reset(seed=seed)
    actions, rewards = [], []
    everyone = np.ones(len(tasks), dtype=bool)
    for _ in range(family.n_pulls):
        a = np.asarray(policy(obs))
        obs, r, terms, truncs, _ = env.step(a)
        policy.observe(a, r, terms, truncs, everyone)
        actions.append(a)
        rewards.append(np.asarray(r, dtype=np.float64))
    env.close()
    return np.stack(actions, 1), np.stack(rewards, 1)


def diagnose(run: Path, n_tasks: int, seed: int) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    agent = load_run(run)
    family = agent.family
    if not hasattr(family, "n_pulls"):
        raise SystemExit(f"{run} is a run on {family.id}; this diagnosis is for BernoulliBandit runs")
    tasks = list(family.test)[:n_tasks]
    means = np.stack([t.array("arm_means") for t in tasks])
    env = TrialVecEnv(family, len(tasks), agent.episodes_per_trial, prev_obs=agent.config.prev_obs)
    batch = collect_trials(agent.model, env, tasks, seed=seed, generator=torch.Generator().manual_seed(seed))
    env.close()
    setting = {"n": family.n_pulls, "k": family.n_arms}
    actions, rewards = batch.actions.numpy(), batch.rewards.numpy().astype(float)
    rl2 = {"learner": "RL2", **pull_statistics(actions, rewards, means)}
    k = family.n_arms
    rl2["readout_r2"], rl2["readout_r2_untrained"] = trained_and_untrained_r2(
        agent,
        batch.inputs,
        bandit_targets(actions, rewards, k),
        {"posterior_mean": slice(0, k), "count": slice(k, 2 * k)},
    )
    results = [rl2]
    tuned = load_tuned()
    gamma = tuned["bandit"]["Gittins"][f"n={setting['n']},k={setting['k']}"]
    for learner in (GreedyBandit(), GittinsIndex(gamma=gamma)):
        actions, rewards = classical_pulls(learner, family, tasks, seed)
        results.append({"learner": learner.name, **pull_statistics(actions, rewards, means)})
    for r in results:
        r.update(run=str(run), setting=setting, tasks=len(tasks), seed=seed)
    return results


def main() -> None:
    run_diagnosis(__doc__.splitlines()[0], "bandit", 1000, diagnose)


if __name__ == "__main__":
    main()
