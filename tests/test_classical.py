"""Classical bandit and MDP baselines on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

import metarl
from metarl.agents.classical import (
    BEB,
    PSRL,
    UCB1,
    EpsilonGreedyBandit,
    EpsilonGreedyMDP,
    GittinsIndex,
    GreedyBandit,
    GreedyMDP,
    OptimisticThompsonSampling,
    RandomBandit,
    RandomMDP,
    ThompsonSampling,
    _BanditLearner,
    _BanditPolicy,
    _MDPLearner,
    _MDPPolicy,
    argmax_random_ties,
    finite_horizon_q,
)
from metarl.agents.classical_bench import bandit_table, run_trials
from metarl.agents.gittins import gittins_index, gittins_table
from metarl.envs.bandit import BernoulliBanditFamily
from metarl.envs.tabular_mdp import TabularMDPFamily

SMALL = {"train": 2, "validation": 2, "test": 8}


def _bandit_vec(
    means: list[float], trials: int, n_pulls: int = 50
) -> metarl.BatchedTaskVectorEnv | metarl.SyncTaskVectorEnv:
    fam = BernoulliBanditFamily(n_arms=len(means), n_pulls=n_pulls, split_sizes=SMALL)
    return metarl.make_vec(fam, [fam.task(arm_means=means)], envs_per_task=trials)


# ----------------------------------------------------------------------------- bandits
def test_ucb1_pulls_an_unplayed_arm_first() -> None:
    vec = _bandit_vec([0.9, 0.1, 0.5, 0.5], trials=3)
    policy = UCB1(c=0.5).begin_adaptation(vec, seed=0).policy()
    assert isinstance(policy, _BanditPolicy)
    policy.n[:] = [[5, 0, 2, 1], [1, 1, 1, 0], [3, 3, 3, 3]]
    policy.s[:] = [[5, 0, 1, 1], [1, 1, 1, 0], [3, 0, 0, 0]]
    actions = policy(np.zeros((3, 1), dtype=np.float32))
    assert actions[0] == 1 and actions[1] == 3  # the unplayed arm, despite arm 0's perfect record
    assert actions[2] == 0  # all played: equal counts, so the best mean wins


def test_ucb1_plays_every_arm_once_before_repeating() -> None:
    vec = _bandit_vec([0.2, 0.9, 0.4, 0.7, 0.1], trials=20)
    returns = run_trials(UCB1(c=1.0), vec, 5, seed=3)
    assert returns.shape == (20, 5)
    policy = UCB1(c=1.0).begin_adaptation(vec, seed=3).policy()
    obs, _ = vec.reset(seed=3)
    pulled = []
    for _ in range(5):
        a = policy(obs)
        obs, r, term, trunc, _ = vec.step(a)
        policy.observe(a, r, term, trunc, np.ones(vec.num_envs, dtype=bool))
        pulled.append(a)
    assert all(sorted(col) == [0, 1, 2, 3, 4] for col in np.stack(pulled, axis=1))


@pytest.mark.parametrize(
    ("a", "b", "gamma", "published"),
    [
        (1, 1, 0.9, 0.7029),
        (2, 2, 0.9, 0.6346),
        (3, 3, 0.9, 0.6010),
        (10, 2, 0.9, 0.8695),
        (1, 1, 0.99, 0.8699),
    ],
)
def test_gittins_index_matches_published_values(a: int, b: int, gamma: float, published: float) -> None:
    """Gittins, Glazebrook & Weber (2011), Bernoulli tables (4 decimals), Beta(a, b) = (1 + wins, 1 + losses)."""
    assert gittins_index(a, b, gamma) == pytest.approx(published, abs=6e-5)


def test_gittins_table_agrees_with_the_reference_and_exceeds_the_mean() -> None:
    table = gittins_table(0.9, 30)
    for a, b in [(1, 1), (2, 2), (3, 7), (12, 5), (1, 20), (20, 9)]:
        assert table[a, b] == pytest.approx(gittins_index(a, b, 0.9), abs=1e-3)
    grid_a, grid_b = np.meshgrid(np.arange(1, 30), np.arange(1, 30), indexing="ij")
    inside = grid_a + grid_b <= 30
    assert np.all(table[grid_a[inside], grid_b[inside]] > grid_a[inside] / (grid_a[inside] + grid_b[inside]))
    assert not table.flags.writeable and gittins_table(0.9, 30) is table  # cached


def test_thompson_sampling_is_reproducible_with_a_seed() -> None:
    vec = _bandit_vec([0.3, 0.5, 0.6], trials=10)
    first = run_trials(ThompsonSampling(), vec, 30, seed=4)
    again = run_trials(ThompsonSampling(), vec, 30, seed=4)
    other = run_trials(ThompsonSampling(), vec, 30, seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


BANDIT_AGENTS = [
    GreedyBandit(),
    EpsilonGreedyBandit(epsilon=0.1),
    UCB1(c=0.3),
    ThompsonSampling(),
    OptimisticThompsonSampling(),
    GittinsIndex(gamma=0.9),
]


@pytest.mark.parametrize("agent", BANDIT_AGENTS, ids=lambda a: a.name)
def test_bandit_agents_beat_random_on_an_easy_bandit(agent: _BanditLearner) -> None:
    vec = _bandit_vec([0.1, 0.2, 0.9], trials=200, n_pulls=50)
    random_total = run_trials(RandomBandit(), vec, 50, seed=1).sum(axis=1).mean()
    total = run_trials(agent, vec, 50, seed=1).sum(axis=1).mean()
    assert random_total == pytest.approx(20.0, abs=1.5)
    assert total > random_total + 12.0, (agent.name, total, random_total)


def test_argmax_breaks_ties_at_random() -> None:
    rng = np.random.default_rng(0)
    picks = argmax_random_ties(np.tile([1.0, 3.0, 3.0, 0.0], (2000, 1)), rng)
    assert set(picks.tolist()) == {1, 2} and 800 < np.count_nonzero(picks == 1) < 1200


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UCB1(c=-1.0), "c must be a non-negative number, got -1.0"),
        (lambda: EpsilonGreedyBandit(epsilon=1.5), "epsilon must be in \\[0, 1\\], got 1.5"),
        (lambda: GittinsIndex(gamma=1.0), "gamma must be a discount in \\(0, 1\\), got 1.0"),
        (lambda: BEB(beta=float("nan")), "beta must be a non-negative number, got nan"),
        (lambda: gittins_index(0, 1, 0.9), "Beta parameters must be positive, got a=0"),
    ],
)
def test_bad_constants_are_rejected_with_the_value(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_mdp_agent_on_a_bandit_is_rejected() -> None:
    vec = _bandit_vec([0.5, 0.5], trials=1)
    with pytest.raises(ValueError, match="observation space of BernoulliBandit-v0 is Box"):
        PSRL().begin_adaptation(vec, 0)


# ----------------------------------------------------------------------------- MDPs
def test_value_iteration_matches_a_hand_solved_two_state_mdp() -> None:
    # Action 0 stays; action 1 moves to the other state (from state 0 only with probability 0.75).
    # Rewards: R[0] = (0.5, 0), R[1] = (1, 0). By hand, backwards from V_3 = 0:
    #   t=2: Q = [[0.5, 0], [1, 0]],         V_2 = [0.5, 1]
    #   t=1: Q = [[1, 0.875], [2, 0.5]],     V_1 = [1, 2]       (0.875 = 0.25 * 0.5 + 0.75 * 1)
    #   t=0: Q = [[1.5, 1.75], [3, 1]],      V_0 = [1.75, 3]    (1.75 = 0.25 * 1 + 0.75 * 2)
    P = np.array([[[1.0, 0.0], [0.25, 0.75]], [[0.0, 1.0], [1.0, 0.0]]])
    R = np.array([[0.5, 0.0], [1.0, 0.0]])
    q = finite_horizon_q(P[None], R[None], 3)[0]
    np.testing.assert_allclose(q[2], [[0.5, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(q[1], [[1.0, 0.875], [2.0, 0.5]])
    np.testing.assert_allclose(q[0], [[1.5, 1.75], [3.0, 1.0]])
    with pytest.raises(ValueError, match="horizon must be a positive int, got 0"):
        finite_horizon_q(P[None], R[None], 0)


def test_psrl_learns_the_observed_statistics_and_skips_the_unseen_last_transition() -> None:
    fam = TabularMDPFamily(split_sizes=SMALL)
    vec = metarl.make_vec(fam, fam.test[:2], envs_per_task=2)
    adaptation = PSRL().begin_adaptation(vec, seed=0)
    policy = adaptation.policy()
    assert isinstance(policy, _MDPPolicy)
    obs, _ = vec.reset(seed=0)
    for _ in range(3 * fam.max_episode_steps):
        a = policy(obs)
        obs, r, term, trunc, _ = vec.step(a)
        policy.observe(a, r, term, trunc, np.ones(vec.num_envs, dtype=bool))
    assert np.all(policy.visits.sum(axis=(1, 2)) == 30)
    assert np.all(policy.counts.sum(axis=(1, 2, 3)) == 27)  # 9 observed transitions per episode
    assert np.all(policy.t == 0) and np.all(policy.episode_start)


MDP_AGENTS = [GreedyMDP(), EpsilonGreedyMDP(epsilon=0.1), PSRL(), BEB(beta=0.5)]


@pytest.mark.parametrize("agent", MDP_AGENTS, ids=lambda a: a.name)
def test_mdp_agents_beat_random(agent: _MDPLearner) -> None:
    fam = TabularMDPFamily(split_sizes={"train": 0, "validation": 0, "test": 100})
    vec = metarl.make_vec(fam, fam.test)
    random_total = run_trials(RandomMDP(), vec, 10, seed=2).sum(axis=1).mean()
    total = run_trials(agent, vec, 10, seed=2).sum(axis=1).mean()
    assert random_total == pytest.approx(100.0, abs=10.0)  # E[mu] = 1 per step
    assert total > random_total + 30.0, (agent.name, total, random_total)


def test_classical_learners_run_in_metarl_evaluate() -> None:
    fam = TabularMDPFamily(split_sizes=SMALL)
    result = metarl.evaluate(PSRL(), fam, rounds=3, episodes_per_round=1, n_tasks=4, seed=1)
    assert result.returns.shape == (4, 3) and result.adaptation_unit == "episode"
    bandit = BernoulliBanditFamily(split_sizes=SMALL)
    result = metarl.evaluate(UCB1(), bandit, rounds=5, episodes_per_round=1, n_tasks=4, seed=1)
    assert set(np.unique(result.returns)) <= {0.0, 1.0}


def test_bandit_table_scores_prefixes_and_renders_markdown() -> None:
    table = bandit_table(
        {"random": RandomBandit(), "UCB1": lambda s: UCB1(c=0.1 * s["k"])},
        pulls=(3, 6),
        arms=(2,),
        n_trials=20,
    )
    assert [c.setting for c in table.cells[:2]] == [{"n": 3, "k": 2}, {"n": 3, "k": 2}]
    assert table.cell("random", {"n": 6, "k": 2}).n_trials == 20
    text = table.to_markdown()
    assert "| n = 3, k = 2 |" in text and "UCB1" in text
    assert type(table).from_dict(table.to_dict()).to_markdown() == text


def test_paired_gap_averages_repeated_trials_per_test_task(script_module) -> None:
    """scripts/rl2_common.py's paired gap: with ``repeats`` each test task is played that many times
    by both learners with the same seeds, and the gap is the mean of the per-task differences."""
    from metarl.evaluation import bootstrap_ci

    common = script_module("rl2_common")
    specs = {"greedy": GreedyBandit(), "UCB1": UCB1(c=0.2), "random": RandomBandit()}
    table = bandit_table(specs, pulls=(6,), arms=(3,), n_trials=8, seed=1)
    family = BernoulliBanditFamily(n_arms=3, n_pulls=6, split_sizes=SMALL)
    best = max((c for c in table.cells if c.learner != "greedy"), key=lambda c: c.mean).learner
    gap = common.paired_gap(table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", seed=5, repeats=3)
    per_task = {}
    for name in ("greedy", best):
        vec = metarl.make_vec(family, family.split("test"))
        runs = [run_trials(specs[name], vec, 6, seed=5 + r * 8).sum(axis=1) for r in range(3)]
        per_task[name] = np.mean(runs, axis=0)
    mean, low, high = bootstrap_ci(per_task["greedy"] - per_task[best], seed=5)
    assert gap["other"] == best and gap["other_is_best"] and gap["repeats"] == 3
    assert gap["gap"] == pytest.approx(mean) and gap["gap_ci"] == pytest.approx([low, high])
    assert gap["other_mean"] == pytest.approx(per_task[best].mean())
    one = common.paired_gap(table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", seed=5)
    assert one["repeats"] == 1 and one["gap"] != pytest.approx(gap["gap"])
    with pytest.raises(ValueError, match="repeats must be a positive int, got 0"):
        common.paired_gap(table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", repeats=0)
    # against a named learner (a target's): the same pairing with that learner's totals
    vec = metarl.make_vec(family, family.split("test"))
    rand = np.mean(
        [run_trials(specs["random"], vec, 6, seed=5 + r * 8).sum(axis=1) for r in range(3)], axis=0
    )
    named = common.paired_gap(
        table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", seed=5, repeats=3, against="random"
    )
    assert named["other"] == "random" and not named["other_is_best"]
    assert named["gap"] == pytest.approx((per_task["greedy"] - rand).mean())
    with pytest.raises(ValueError, match=r"no learner 'PSRL' in the table at \{'n': 6, 'k': 3\}; it has"):
        common.paired_gap(table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", against="PSRL")
    md = common.gaps_markdown([gap, named]).splitlines()
    assert len(md) == 4 and "| n = 6, k = 3 | greedy | random: " in md[3] and "(best other)" in md[2]
    assert "| trials per test task |" in md[0] and gap["split"] == "test"


def test_paired_gap_plays_the_split_its_table_was_scored_on(script_module) -> None:
    """A table scored on the validation tasks (to choose among models) gets its paired gap on those
    tasks too, not on the test tasks."""
    common = script_module("rl2_common")
    specs = {"greedy": GreedyBandit(), "UCB1": UCB1(c=0.2)}
    sizes = {"train": 0, "validation": 8, "test": 8}
    family = BernoulliBanditFamily(n_arms=3, n_pulls=6, split_sizes=sizes)
    assert family.split("validation") != family.split("test")
    per_split, gaps = {}, []
    for split in ("validation", "test"):
        table = bandit_table(specs, pulls=(6,), arms=(3,), n_trials=8, split=split, seed=1)
        assert table.split == split
        gap = common.paired_gap(
            table, specs, {"n": 6, "k": 3}, family, rl2_name="greedy", seed=5, against="UCB1"
        )
        vec = metarl.make_vec(family, family.split(split))
        want = {name: run_trials(specs[name], vec, 6, seed=5).sum(axis=1) for name in ("greedy", "UCB1")}
        assert gap["gap"] == pytest.approx((want["greedy"] - want["UCB1"]).mean())
        per_split[split] = gap["gap"]
        gaps.append(gap)
        assert gap["split"] == split
    assert per_split["validation"] != pytest.approx(per_split["test"])
    # the table of gaps names the split its trials were played on
    assert "| trials per validation task |" in common.gaps_markdown(gaps[:1]).splitlines()[0]
    mixed = common.gaps_markdown(gaps).splitlines()
    assert "| trials per task (split) |" in mixed[0]
    assert "| 1 (validation) |" in mixed[2] and "| 1 (test) |" in mixed[3]
    legacy = {key: value for key, value in gaps[1].items() if key != "split"}  # a gap recorded before
    assert "| trials per test task |" in common.gaps_markdown([legacy]).splitlines()[0]


def test_per_episode_eval_scores_a_longer_trial_beside_the_classical_agents(
    script_module, tmp_path, monkeypatch
) -> None:
    """scripts/rl2_common.py's per-episode eval on a family other than the run's own (the MDP model
    of n = 2 episodes scored over trials of 3), on the validation split: every learner plays the
    same tasks, one round per episode, as :func:`metarl.evaluate` scores it directly."""
    from metarl.agents.rl2 import RL2Config, RL2Learner
    from metarl.agents.rl2_train import train
    from metarl.evaluation import evaluate

    common = script_module("rl2_common")
    monkeypatch.setattr(common, "BENCH_DIR", tmp_path)
    shape = {"n_states": 3, "n_actions": 2, "max_episode_steps": 3}
    config = RL2Config.from_dict(
        {
            "family": "TabularMDP-v0",
            "family_kwargs": {**shape, "n_episodes": 2, "split_sizes": SMALL},
            "trials_per_update": 4,
            "hidden_size": 8,
            "ppo_epochs": 1,
            "num_minibatches": 1,
            "total_env_steps": 24,
            "seed": 2,
        }
    )
    train(config, tmp_path / "run", progress=False, max_updates=1)
    family = TabularMDPFamily(**shape, n_episodes=3, split_sizes=SMALL)
    record = common.per_episode_eval(
        tmp_path / "run", name="eps", others={"PSRL": PSRL()}, seed=4, family=family, split="validation"
    )
    assert record["split"] == "validation" and record["episodes_per_trial"] == 3
    rl2, psrl = record["results"]
    assert [r["learner"] for r in record["results"]] == ["RL2", "PSRL"]
    for r in record["results"]:
        assert r["split"] == "validation" and len(r["task_ids"]) == 2 and np.shape(r["returns"]) == (2, 3)
    want = evaluate(PSRL(), family, split="validation", rounds=3, episodes_per_round=1, seed=4)
    np.testing.assert_allclose(psrl["returns"], want.returns)
    # one trial: the same as scoring the loaded model directly, episode by episode
    loaded = RL2Learner.load(tmp_path / "run")
    direct = evaluate(loaded, family, split="validation", rounds=3, episodes_per_round=1, seed=4)
    np.testing.assert_allclose(rl2["returns"], direct.returns)
    assert {p.name for p in tmp_path.glob("eps.*")} == {"eps.json", "eps.md", "eps.png"}
    assert "| 3 |" in (tmp_path / "eps.md").read_text()


def test_mdp_eval_scores_the_split_it_is_asked_for(script_module, tmp_path, monkeypatch) -> None:
    """scripts/rl2_tabular_mdp.py eval --split validation: the table and the paired gaps to PSRL
    are played on the validation tasks, not the test tasks, and the record says so."""
    import json
    import sys

    from metarl.agents.rl2 import RL2Config
    from metarl.agents.rl2_train import train

    script = script_module("rl2_tabular_mdp")
    monkeypatch.setattr(script, "BENCH_DIR", tmp_path)
    config = RL2Config.from_dict(
        {
            "family": "TabularMDP-v0",
            "family_kwargs": {"n_episodes": 10},
            "trials_per_update": 2,
            "hidden_size": 8,
            "ppo_epochs": 1,
            "num_minibatches": 1,
            "total_env_steps": 200,
            "seed": 1,
        }
    )
    train(config, tmp_path / "run", progress=False, max_updates=1)
    records = {}
    for split in ("validation", "test"):
        argv = ["rl2_tabular_mdp.py", "eval", "--run", f"10={tmp_path / 'run'}", "--trials", "6"]
        monkeypatch.setattr(sys, "argv", [*argv, "--split", split, "--name", split])
        script.main()
        records[split] = json.loads((tmp_path / f"{split}.json").read_text())
    for split, record in records.items():
        assert record["split"] == split and record["table"]["split"] == split
        assert record["paired_gaps"] and all(gap["split"] == split for gap in record["paired_gaps"])
    psrl = {
        split: next(c["mean"] for c in r["table"]["cells"] if c["learner"] == "PSRL")
        for split, r in records.items()
    }
    assert psrl["validation"] != pytest.approx(psrl["test"])  # other tasks
