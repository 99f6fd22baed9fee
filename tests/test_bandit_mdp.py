"""BernoulliBandit and TabularMDP: batched == single env, reward statistics, transition frequencies."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl.envs.bandit import BernoulliBanditFamily
from metarl.envs.tabular_mdp import TabularMDPFamily

SMALL = {"train": 4, "validation": 2, "test": 4}


def _families() -> list[metarl.TaskFamily]:
    return [
        BernoulliBanditFamily(n_arms=3, split_sizes=SMALL),
        BernoulliBanditFamily(n_arms=10, split_sizes=SMALL),
        TabularMDPFamily(split_sizes=SMALL),
        TabularMDPFamily(n_states=3, n_actions=2, split_sizes=SMALL, max_episode_steps=4),
    ]


def _single_stream(fam: metarl.TaskFamily, task: metarl.Task, seed: int, actions: np.ndarray) -> list:
    """What one single env produces for ``actions``, resetting (as same-step autoreset does) after
    every episode's end."""
    env = fam.make_env(task)
    obs, _ = env.reset(seed=seed)
    out: list[Any] = [np.asarray(obs)]
    for a in actions:
        obs, r, term, trunc, info = env.step(int(a))
        if term or trunc:
            obs, _ = env.reset()
        out.append((np.asarray(obs), r, term, trunc, info["expected_reward"]))
    return out


@pytest.mark.parametrize("fam", _families(), ids=["bandit3", "bandit10", "mdp10x5", "mdp3x2h4"])
@pytest.mark.parametrize("seed", [0, 123])
def test_batched_env_matches_single_env_step_by_step(fam: metarl.TaskFamily, seed: int) -> None:
    tasks = list(fam.test[:3])
    envs_per_task = 2
    vec = metarl.make_vec(fam, tasks, envs_per_task=envs_per_task, backend="native")
    assert isinstance(vec.single_action_space, gym.spaces.Discrete)
    n_actions = int(vec.single_action_space.n)
    steps = 3 * fam.max_episode_steps + 5
    actions = np.random.default_rng(seed).integers(n_actions, size=(steps, vec.num_envs))
    obs, _ = vec.reset(seed=seed)
    batched: list[tuple[Any, ...]] = [(obs, None)]
    for a in actions:
        obs, r, term, trunc, info = vec.step(a)
        batched.append(
            (obs, r, term, trunc, metarl.vector.step_info(info, "expected_reward", term | trunc, np.nan))
        )
    for i, task in enumerate(vec.subenv_tasks):
        single = _single_stream(fam, task, seed + i, actions[:, i])
        np.testing.assert_array_equal(batched[0][0][i], single[0])
        for t in range(1, steps + 1):
            obs_b, r_b, term_b, trunc_b, mean_b = (x[i] for x in batched[t])
            obs_s, r_s, term_s, trunc_s, mean_s = single[t]
            np.testing.assert_array_equal(obs_b, obs_s)
            assert r_b == r_s  # bit for bit
            assert (term_b, trunc_b) == (term_s, trunc_s)
            assert mean_b == mean_s


def test_bandit_episodes_are_one_pull_and_terminate() -> None:
    fam = BernoulliBanditFamily(split_sizes=SMALL)
    env = fam.make_env(fam.test[0])
    obs, info = env.reset(seed=0)
    assert obs.shape == (1,) and not obs.any() and info["task_id"] == fam.test[0].task_id
    obs, reward, term, trunc, _ = env.step(0)
    assert term and not trunc and reward in (0.0, 1.0) and not obs.any()
    assert fam.n_pulls == 100 and fam.episodes_per_trial == 100


def test_bandit_rewards_match_arm_means() -> None:
    fam = BernoulliBanditFamily(n_arms=4, split_sizes=SMALL)
    task = fam.task(arm_means=[0.1, 0.5, 0.8, 0.95])
    vec = metarl.make_vec(fam, [task], envs_per_task=500)
    vec.reset(seed=0)
    totals = np.zeros(4)
    pulls = 40
    for step in range(4 * pulls):
        arm = step % 4
        _, r, term, _, _ = vec.step(np.full(vec.num_envs, arm))
        assert term.all()
        totals[arm] += r.sum()
    freq = totals / (pulls * vec.num_envs)
    # 20k pulls per arm: standard error < 0.0036, so 0.015 is > 4 standard errors.
    np.testing.assert_allclose(freq, [0.1, 0.5, 0.8, 0.95], atol=0.015)


def test_mdp_rewards_and_transitions_follow_the_task() -> None:
    fam = TabularMDPFamily(n_states=3, n_actions=2, split_sizes=SMALL)
    P = np.array(
        [
            [[0.2, 0.8, 0.0], [1.0, 0.0, 0.0]],
            [[0.0, 0.5, 0.5], [0.3, 0.3, 0.4]],
            [[0.1, 0.1, 0.8], [0.0, 0.0, 1.0]],
        ]
    )
    mu = np.array([[-1.0, 2.0], [0.5, 3.0], [1.5, 0.0]])
    task = fam.task(transitions=P, reward_means=mu)
    vec = metarl.make_vec(fam, [task], envs_per_task=400)
    obs, _ = vec.reset(seed=1)
    rng = np.random.default_rng(2)
    counts = np.zeros((3, 2, 3))
    reward_sum = np.zeros((3, 2))
    for _ in range(100):
        a = rng.integers(2, size=vec.num_envs)
        nxt, r, term, trunc, info = vec.step(a)
        assert not term.any()
        # the state after the step (before any autoreset) is in final_obs where the episode ended
        after = np.where(trunc, info["final_obs"], nxt) if trunc.any() else nxt
        np.add.at(counts, (obs, a, after), 1)
        np.add.at(reward_sum, (obs, a), r)
        obs = nxt
    n_sa = counts.sum(axis=2)
    assert n_sa.min() > 500
    np.testing.assert_allclose(counts / n_sa[..., None], P, atol=0.06)
    assert np.all(counts[P == 0.0] == 0), "a zero-probability transition happened"
    # unit reward noise: standard error <= 1 / sqrt(500) ~ 0.045
    np.testing.assert_allclose(reward_sum / n_sa, mu, atol=0.2)


@pytest.mark.parametrize("backend", ["native", "gymnasium"])
def test_step_info_reports_the_reward_mean_of_the_step(backend: str) -> None:
    # bandit: the pulled arm's p; MDP: mu[s, a] of the state the step left, so reward - mean is the
    # pure N(0, 1) noise. Gymnasium's SyncVectorEnv files a finished episode's step info under
    # final_info; step_info reads both layouts
    bandit = BernoulliBanditFamily(n_arms=3, split_sizes=SMALL)
    vec = metarl.make_vec(bandit, [bandit.task(arm_means=[0.2, 0.5, 0.9])], envs_per_task=3, backend=backend)
    vec.reset(seed=0)
    _, _, term, trunc, info = vec.step(np.array([2, 0, 1]))
    np.testing.assert_array_equal(
        metarl.vector.step_info(info, "expected_reward", term | trunc, np.nan), [0.9, 0.2, 0.5]
    )
    mdp = TabularMDPFamily(n_states=3, n_actions=2, split_sizes=SMALL, max_episode_steps=2)
    mu = np.array([[-1.0, 2.0], [0.5, 3.0], [1.5, 0.0]])
    task = mdp.task(transitions=np.full((3, 2, 3), 1 / 3), reward_means=mu)
    vec = metarl.make_vec(mdp, [task], envs_per_task=4, backend=backend)
    obs, _ = vec.reset(seed=1)
    noise = []
    for step in range(200):  # every other step ends an episode
        a = np.array([0, 1, step % 2, 1 - step % 2])
        nxt, r, term, trunc, info = vec.step(a)
        means = metarl.vector.step_info(info, "expected_reward", term | trunc, np.nan)
        assert means is not None
        np.testing.assert_array_equal(means, mu[obs, a])
        noise.append(r - means)
        obs = nxt
    assert abs(np.mean(noise)) < 0.1 and abs(np.std(noise) - 1.0) < 0.1
    assert metarl.vector.step_info({}, "expected_reward", np.zeros(2, bool), np.nan) is None


def test_mdp_episode_starts_in_zero_and_truncates_at_ten() -> None:
    fam = TabularMDPFamily(split_sizes=SMALL)
    env = fam.make_env(fam.test[0])
    obs, _ = env.reset(seed=3)
    assert obs == 0
    for t in range(10):
        obs, _, term, trunc, _ = env.step(t % 5)
        assert not term and trunc == (t == 9)
    assert isinstance(env.observation_space, gym.spaces.Discrete)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert env.observation_space.n == 10 and env.action_space.n == 5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BernoulliBanditFamily(n_arms=0), "n_arms must be a positive int, got 0"),
        (lambda: BernoulliBanditFamily(n_pulls=-3), "n_pulls must be a positive int, got -3"),
        # a float where an int is typed: the test is of the run-time check
        (lambda: TabularMDPFamily(n_states=2.5), "n_states must be a positive int, got 2.5"),  # type: ignore[arg-type]
    ],
)
def test_bad_constructor_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_actions_and_tasks_are_rejected_with_the_value() -> None:
    bandit = BernoulliBanditFamily(n_arms=3, split_sizes=SMALL)
    env = bandit.make_env(bandit.test[0])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="got 7"):
        env.step(7)
    vec = metarl.make_vec(bandit, bandit.test[:2])
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="got -1"):
        vec.step(np.array([0, -1]))
    mdp = TabularMDPFamily(n_states=2, n_actions=1, split_sizes=SMALL)
    with pytest.raises(ValueError, match="transitions"):
        mdp.task(transitions=[[[0.5, 0.6]], [[1.0, 0.0]]], reward_means=[[0.0], [0.0]])
    with pytest.raises(ValueError, match="arm_means"):
        bandit.task(arm_means=[0.5, 0.5])
