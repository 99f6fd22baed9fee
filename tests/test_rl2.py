"""RL²: trial inputs, hidden-state handling, GAE, PPO loss, determinism, checkpoints."""

from __future__ import annotations

import csv
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from metarl import Task, collect, evaluate, make_family, make_vec
from metarl.agents import checkpoint as ckpt
from metarl.agents import rl2 as rl2_module
from metarl.agents.rl2 import (
    RL2,
    RL2ActorCritic,
    RL2Config,
    RL2Learner,
    RL2Policy,
    TrialBatch,
    aux_reward_loss,
    collect_trials,
    ppo_loss,
    trial_gae,
)
from metarl.agents.rl2_train import latest_checkpoint, load_run, train
from metarl.agents.rl2_trials import TrialInputs, TrialVecEnv

torch.set_num_threads(1)

#: Small splits keep family set-up (the splits are drawn on first use) out of the test time.
SPLITS = {"train": 8, "validation": 8, "test": 16}


def small_config(**changes: object) -> RL2Config:
    base = {
        "family": "BernoulliBandit-v0",
        "family_kwargs": {"n_arms": 3, "n_pulls": 5, "split_sizes": SPLITS},
        "trials_per_update": 8,
        "hidden_size": 16,
        "ppo_epochs": 2,
        "num_minibatches": 2,
        "total_env_steps": 1000,
        "checkpoint_every": 1,
        "keep_checkpoints": 2,
        "seed": 3,
    }
    return RL2Config.from_dict({**base, **changes})


# ----------------------------------------------------------------------------- trial inputs
def test_trial_inputs_across_episode_boundaries() -> None:
    """Discrete obs and actions one-hot; prev action/reward/done exactly those of the last step."""
    family = make_family(
        "TabularMDP-v0", n_states=4, n_actions=3, n_episodes=2, max_episode_steps=3, split_sizes=SPLITS
    )
    task = family.test[0]
    env = TrialVecEnv(family, num_trials=1, episodes_per_trial=2)
    ref = make_vec(family, [task])  # the same sub-env stepped directly, for the expected values
    x = env.reset([task], seed=11)
    obs, _ = ref.reset(seed=11)
    actions = [2, 0, 1, 1, 2, 0]
    prev_a, prev_r, prev_d = np.zeros(3), 0.0, 0.0
    for t, a in enumerate(actions):
        expected = np.concatenate([np.eye(4)[obs[0]], prev_a, [prev_r, prev_d]]).astype(np.float32)
        np.testing.assert_array_equal(x[0], expected)
        step = env.step(np.array([a]))
        obs, rew, term, trunc, _ = ref.step(np.array([a]))
        prev_a, prev_r, prev_d = np.eye(3)[a], float(rew[0]), float(term[0] | trunc[0])
        assert step.active[0]
        assert step.episode_done[0] == (t in (2, 5))
        assert step.trial_done[0] == (t == 5)
        x = step.inputs
    # at t=3 the input was the first state of episode 2 (state 0) with the done flag raised
    assert env.episodes_done[0] == 2


def test_trial_inputs_box_actions_normalised() -> None:
    family = make_family("Navigation2D-v0")
    env = TrialVecEnv(family, num_trials=2, episodes_per_trial=2)
    x = env.reset(family.test[:2], seed=0)
    assert x.shape == (2, env.inputs.input_dim) and env.inputs.input_dim == 2 + 2 + 2
    np.testing.assert_array_equal(x[:, 2:], 0.0)
    u = np.array([[0.5, -3.0], [1.0, 0.2]], dtype=np.float32)
    step = env.step(u)
    # the env moved by 0.1 * clip(u, -1, 1); the previous-action input is clip(u, -1, 1)
    np.testing.assert_allclose(step.inputs[:, :2], [[0.05, -0.1], [0.1, 0.02]], rtol=1e-6)
    np.testing.assert_allclose(step.inputs[:, 2:4], [[0.5, -1.0], [1.0, 0.2]])
    np.testing.assert_allclose(step.inputs[:, 4], step.rewards.astype(np.float32))


def test_trial_inputs_reject_unsupported_space() -> None:
    import gymnasium as gym

    with pytest.raises(TypeError, match="MultiBinary"):
        TrialInputs(gym.spaces.MultiBinary(3), gym.spaces.Discrete(2))


# ----------------------------------------------------------------------------- hidden state
@pytest.mark.parametrize("separate_value", [False, True])
def test_hidden_state_persists_within_trial_and_resets_between_trials(separate_value: bool) -> None:
    agent = RL2(
        small_config(
            family="TabularMDP-v0",
            family_kwargs={"n_episodes": 3, "max_episode_steps": 4, "split_sizes": SPLITS},
            separate_value=separate_value,
        )
    )
    gen = torch.Generator().manual_seed(0)
    tasks = list(agent.family.test[:8])
    assert agent.env is not None  # sampler="local": the in-process trial env
    batch = collect_trials(agent.model, agent.env, tasks, seed=5, generator=gen)
    assert batch.mask.all() and batch.episode_done.sum(1).eq(3).all()
    with torch.no_grad():
        _, values, _ = agent.model(batch.inputs)  # one GRU pass over the whole trial from a zero state
        torch.testing.assert_close(values, batch.values, rtol=0, atol=1e-5)
        # resetting the state at the episode boundary (step 4) would give different values
        _, cut, _ = agent.model(batch.inputs[:, 4:])
        assert not torch.allclose(cut[:, 0], batch.values[:, 4], atol=1e-4)
    # a new trial starts from a zero state
    batch2 = collect_trials(agent.model, agent.env, tasks, seed=6, generator=gen)
    with torch.no_grad():
        _, v0, _ = agent.model(batch2.inputs[:, :1], agent.model.initial_state(8))
    torch.testing.assert_close(v0[:, 0], batch2.values[:, 0], rtol=0, atol=1e-6)


def test_rl2_policy_state_persists_across_rounds_and_ignores_inactive() -> None:
    agent = RL2(small_config())
    learner = agent.learner()
    family = agent.family
    vec = make_vec(family, family.test[:4])
    adaptation = learner.begin_adaptation(vec, seed=0)
    policy = adaptation.policy()
    assert isinstance(policy, RL2Policy) and not policy.hidden.any()
    rounds = [collect(vec, adaptation.policy(), 1, seed=r) for r in range(3)]
    assert adaptation.policy() is policy
    # rebuild the inputs of the 3 episodes and run the GRU over them from zero
    xs, prev_a, prev_r, prev_d = [], np.zeros((4, 3)), np.zeros(4), np.zeros(4)
    for b in rounds:
        xs.append(policy.inputs.build(b.observations[:, 0], prev_a, prev_r, prev_d))
        prev_a, prev_r, prev_d = np.eye(3)[b.actions[:, 0]], b.rewards[:, 0], np.ones(4)
    with torch.no_grad():
        _, _, h = agent.model(torch.from_numpy(np.stack(xs, 1)))
    torch.testing.assert_close(policy.hidden, h, rtol=0, atol=1e-6)
    # inactive sub-envs keep their state
    before = (policy.hidden.clone(), policy.prev_actions.copy(), policy.prev_rewards.copy())
    acts = policy(np.zeros((4, 1), dtype=np.float32))
    policy.observe(
        acts, np.ones(4), np.ones(4, bool), np.zeros(4, bool), np.array([True, False, True, False])
    )
    torch.testing.assert_close(policy.hidden[:, [1, 3]], before[0][:, [1, 3]], rtol=0, atol=0)
    assert not torch.equal(policy.hidden[:, [0, 2]], before[0][:, [0, 2]])
    np.testing.assert_array_equal(policy.prev_actions[[1, 3]], before[1][[1, 3]])
    np.testing.assert_array_equal(policy.prev_rewards[[1, 3]], before[2][[1, 3]])
    # a new adaptation starts from a zero state
    assert not learner.begin_adaptation(vec, seed=0).policy().hidden.any()


# ----------------------------------------------------------------------------- mathematics
def test_trial_gae_against_hand_computation() -> None:
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3], [0.5, 0.4, 7.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv, ret = trial_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: delta = [1 + .9*.4 - .5, 0 + .9*.3 - .4, 2 - .3] = [.86, -.13, 1.7]; A_t = delta_t + .72 A_{t+1}
    a2 = 1.7
    a1 = -0.13 + 0.72 * a2
    a0 = 0.86 + 0.72 * a1
    # row 1 ends after step 1: no bootstrap from the padding, delta_1 = 0 - .4
    b1 = -0.4
    b0 = 0.86 + 0.72 * b1
    expected = torch.tensor([[a0, a1, a2], [b0, b1, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)


def test_ppo_clipped_loss_on_hand_made_numbers() -> None:
    ratios = torch.tensor([1.5, 0.5, 1.0, 0.5, 3.0])
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0, 5.0])
    mask = torch.tensor([True, True, True, True, False])  # the last step is padding
    loss, stats = ppo_loss(
        ratios.log(),
        torch.zeros(5),
        adv,
        torch.tensor([1.0, 2.0, 3.0, 1.0, 50.0]),
        torch.ones(5),
        torch.tensor([1.0, 1.0, 1.0, 1.0, 9.0]),
        mask,
        clip_coef=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
    )
    # min(r A, clip(r) A): [min(1.5, 1.2), min(.5, .8), -2, min(-.5, -.8)] = [1.2, .5, -2, -.8]
    pg = -(1.2 + 0.5 - 2.0 - 0.8) / 4
    v = 0.5 * (0 + 1 + 4 + 0) / 4
    assert stats["pg_loss"] == pytest.approx(pg)
    assert stats["v_loss"] == pytest.approx(v)
    assert stats["entropy"] == pytest.approx(1.0)
    assert stats["clip_frac"] == pytest.approx(3 / 4)
    assert float(loss) == pytest.approx(pg + 0.5 * v - 0.01)


# ----------------------------------------------------------------------------- reproducibility
def _params(agent: RL2) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.model.parameters()]


def test_same_seed_gives_bit_identical_parameters() -> None:
    runs = []
    for seed in (3, 3, 4):
        agent = RL2(small_config(seed=seed))
        agent.train_step()
        agent.train_step()
        runs.append(_params(agent))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


@pytest.mark.parametrize("separate_value", [False, True])
def test_save_load_round_trip_gives_identical_actions(tmp_path, separate_value: bool) -> None:
    config = small_config(separate_value=separate_value)
    agent = train(config, tmp_path / "run", progress=False, max_updates=2)
    loaded = RL2Learner.load(tmp_path / "run")
    kw: dict[str, Any] = {"n_tasks": 16, "rounds": 5, "episodes_per_round": 1, "seed": 7}
    family = make_family(config.family, **config.family_kwargs)
    a = evaluate(agent.learner(), family, **kw)
    b = evaluate(loaded, family, **kw)
    np.testing.assert_array_equal(a.returns, b.returns)
    torch.testing.assert_close(loaded.model.state_dict(), agent.model.state_dict(), rtol=0, atol=0)
    assert (tmp_path / "run" / "config.json").exists() and (tmp_path / "run" / "progress.csv").exists()


def test_resume_continues_bit_identically_and_skips_corrupt(tmp_path) -> None:
    config = small_config()
    straight = train(config, tmp_path / "a", progress=False, max_updates=3)
    train(config, tmp_path / "b", progress=False, max_updates=2)
    with pytest.raises(FileExistsError):
        train(config, tmp_path / "b", progress=False, max_updates=1)
    resumed = train(config, tmp_path / "b", resume=True, progress=False, max_updates=1)
    assert resumed.updates == straight.updates == 3
    assert all(torch.equal(a, b) for a, b in zip(_params(straight), _params(resumed), strict=True))
    ckpts = sorted((tmp_path / "b" / "checkpoints").glob("ckpt_*.pt"))
    assert len(ckpts) == config.keep_checkpoints
    ckpts[-1].write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="skipping unreadable"):
        found = latest_checkpoint(tmp_path / "b")
    assert found is not None and found[0] == ckpts[-2]
    with pytest.warns(UserWarning):
        assert load_run(tmp_path / "b").updates == 2


@pytest.mark.parametrize("missing", [1, 2, 3])
def test_resume_over_a_log_from_before_a_column_was_added(tmp_path, missing: int) -> None:
    # runs logged by an older metarl lack the last columns of progress.csv (aux_loss, before that
    # learning_rate, and before that load_avg_1min); a resume must keep their rows and write a log
    # whose every row matches its header
    config = small_config(aux_reward_coef=0.5)  # so that every column has a value
    train(config, tmp_path / "run", progress=False, max_updates=2)
    path = tmp_path / "run" / "progress.csv"
    rows = list(csv.reader(path.open()))
    assert rows[0][-3:] == ["load_avg_1min", "learning_rate", "aux_loss"]
    path.write_text("".join(",".join(r[:-missing]) + "\n" for r in rows))
    train(config, tmp_path / "run", resume=True, progress=False, max_updates=1)
    rows = list(csv.reader(path.open()))
    assert rows[0][-1] == "aux_loss" and all(len(r) == len(rows[0]) for r in rows)
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[1][-missing:] == [""] * missing and "" not in rows[3]
    assert not list((tmp_path / "run").glob("*.old*"))


def test_warm_start_takes_the_weights_only_and_is_recorded(tmp_path) -> None:
    source_cfg = small_config(value_norm=True)
    source = train(source_cfg, tmp_path / "src", progress=False, max_updates=2)
    # another learning rate, trial length and seed: only the network has to agree
    config = small_config(
        value_norm=True,
        learning_rate=1e-4,
        seed=9,
        family_kwargs={"n_arms": 3, "n_pulls": 7, "split_sizes": SPLITS},
    )
    warm = train(config, tmp_path / "warm", progress=False, max_updates=0, init_from=tmp_path / "src")
    torch.testing.assert_close(warm.model.state_dict(), source.model.state_dict(), rtol=0, atol=0)
    assert warm.updates == 0 and warm.env_steps == 0 and not warm.optimizer.state
    assert warm.init_from == {
        "path": str(latest_checkpoint(tmp_path / "src")[0]),  # type: ignore[index]
        "updates": 2,
        "env_steps": source.env_steps,
        "train_seconds": round(source.train_seconds, 1),
        "earlier": [],
    }
    # the record survives checkpoints and resumes; on resume the run's own weights are loaded, so
    # two updates in two calls equal two in one
    straight = train(config, tmp_path / "a", progress=False, max_updates=2, init_from=tmp_path / "src")
    train(config, tmp_path / "b", progress=False, max_updates=1, init_from=tmp_path / "src")
    resumed = train(
        config, tmp_path / "b", resume=True, progress=False, max_updates=1, init_from=tmp_path / "src"
    )
    assert resumed.init_from == warm.init_from and resumed.updates == 2
    assert load_run(tmp_path / "b").init_from == warm.init_from
    assert all(torch.equal(a, b) for a, b in zip(_params(straight), _params(resumed), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(_params(resumed), _params(source), strict=True))
    # a network of another shape or kind is refused, naming what differs (a GRU may grow, not shrink)
    with pytest.raises(ValueError, match=r"hidden_size: 16 there, 8 here\) \(hidden_size may only grow\)"):
        train(
            small_config(value_norm=True, hidden_size=8),
            tmp_path / "h",
            progress=False,
            init_from=tmp_path / "src",
        )
    arms = small_config(value_norm=True, family_kwargs={"n_arms": 4, "n_pulls": 5, "split_sizes": SPLITS})
    with pytest.raises(ValueError, match="other shapes"):
        train(arms, tmp_path / "k", progress=False, init_from=tmp_path / "src")
    with pytest.raises(FileNotFoundError, match="no readable RL² checkpoint"):
        train(config, tmp_path / "x", progress=False, init_from=tmp_path / "nothing")
    # a checkpoint written before a config field existed (here separate_value) takes its default
    _, state = latest_checkpoint(tmp_path / "src")  # type: ignore[misc]
    old = json.loads(state["config"])
    del old["separate_value"]
    ckpt.save_checkpoint(tmp_path / "old" / "checkpoints", 2, {**state, "config": json.dumps(old)})
    assert train(config, tmp_path / "o", progress=False, max_updates=0, init_from=tmp_path / "old").init_from


def test_warm_start_lineage_follows_a_chain_of_warm_starts(tmp_path, script_module) -> None:
    from metarl.agents.rl2_train import warm_start_lineage

    config = small_config()
    a = train(config, tmp_path / "a", progress=False, max_updates=1)
    b = train(config, tmp_path / "b", progress=False, max_updates=2, init_from=tmp_path / "a")
    train(config, tmp_path / "c", progress=False, max_updates=3, init_from=tmp_path / "b")
    rec = lambda run, agent: {  # noqa: E731
        "path": str(latest_checkpoint(tmp_path / run)[0]),  # type: ignore[index]
        "updates": agent.updates,
        "env_steps": agent.env_steps,
        "train_seconds": round(agent.train_seconds, 1),
    }
    _, state = latest_checkpoint(tmp_path / "c")  # type: ignore[misc]
    assert warm_start_lineage(state) == [rec("b", b), rec("a", a)]
    assert warm_start_lineage(latest_checkpoint(tmp_path / "a")[1]) == []  # type: ignore[index]
    # a record written before lineages were kept is followed through the source checkpoint's file,
    # and a source that is gone is reported as unknown, not as "no source"
    old = {**state, "init_from": json.dumps(rec("b", b))}
    assert warm_start_lineage(old) == [rec("b", b), rec("a", a)]
    gone = {**state, "init_from": json.dumps({**rec("b", b), "path": str(tmp_path / "gone.pt")})}
    assert warm_start_lineage(gone) == [
        {**rec("b", b), "path": str(tmp_path / "gone.pt"), "earlier_unknown": True}
    ]
    # the runs table of the RL² scripts shows every stage
    common = script_module("rl2_common")
    row = common.runs_markdown({"n=5": common.training_record(tmp_path / "c")}).splitlines()[-1]
    assert "| 120 + 80 + 40 | 3 + 2 + 1 |" in row and row.count("warm-started from") == 2
    assert row.startswith("| n=5 | n_arms=3, n_pulls=5, split_sizes=")
    assert common.trained_on({"family_kwargs": {"n_pulls": 100, "n_arms": 5}}) == "n_arms=5, n_pulls=100"
    assert common.trained_on({"family_kwargs": {}, "episodes_per_trial": 3}) == "episodes_per_trial=3"


# ----------------------------------------------------------------------------- value normalisation
def test_value_norm_statistics_and_preserved_outputs() -> None:
    from metarl.agents.rl2 import VALUE_NORM_DECAY, RL2ActorCritic

    model = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, value_norm=True,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    x = torch.randn(5, 7, 4, generator=torch.Generator().manual_seed(1))
    assert model.return_stats() == (0.0, 1.0)  # no statistics yet: the head is in return units
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2, 2:] = False  # padding must not count
    batches = []
    for k in range(3):
        returns = 50.0 + 20.0 * torch.randn(3, 4, generator=torch.Generator().manual_seed(10 + k))
        returns[~mask] = 1e6
        before = model(x)[1]
        model.update_return_stats(returns, mask)
        torch.testing.assert_close(model(x)[1], before, rtol=1e-5, atol=1e-4)  # outputs preserved
        batches.append(returns[mask].double())
    # debiased moving averages: batch k has weight proportional to decay ** (last - k)
    w = torch.tensor([VALUE_NORM_DECAY**2, VALUE_NORM_DECAY, 1.0], dtype=torch.float64)
    m1 = sum(wk * b.mean() for wk, b in zip(w, batches, strict=True)) / w.sum()
    m2 = sum(wk * (b * b).mean() for wk, b in zip(w, batches, strict=True)) / w.sum()
    mean, std = model.return_stats()
    assert mean == pytest.approx(float(m1), rel=1e-12)
    assert std == pytest.approx(float((m2 - m1 * m1).sqrt()), rel=1e-9)
    assert 40 < mean < 60 and 10 < std < 30
    with pytest.raises(RuntimeError, match="value_norm=True"):
        RL2ActorCritic(4, 3, discrete=True, hidden_size=8).update_return_stats(batches[0], mask)


def test_separate_value_gru_keeps_policy_and_value_gradients_apart() -> None:
    from metarl.agents.rl2 import RL2ActorCritic

    gen = torch.Generator().manual_seed(0)
    shared = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, generator=gen)
    model = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, separate_value=True, generator=gen)
    assert model.v_gru is not None and shared.v_gru is None
    x = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(1))
    logits, values, h = model(x)
    assert h.shape == (1, 5, 16) and model.initial_state(5).shape == (1, 5, 16)
    # the policy depends on the policy GRU only, the value on the value GRU only
    pi_grads = torch.autograd.grad(logits.sum(), [*model.gru.parameters(), *model.v_gru.parameters()],
                                   allow_unused=True)  # fmt: skip
    n = len(list(model.gru.parameters()))
    assert all(g is not None and g.abs().sum() > 0 for g in pi_grads[:n])
    assert all(g is None for g in pi_grads[n:])
    v_grads = torch.autograd.grad(values.sum(), [*model.gru.parameters(), *model.v_gru.parameters()],
                                  allow_unused=True)  # fmt: skip
    assert all(g is None for g in v_grads[:n])
    assert all(g is not None and g.abs().sum() > 0 for g in v_grads[n:])
    # stepping with the concatenated state reproduces the whole-sequence pass
    with torch.no_grad():
        state, step_logits, step_values = model.initial_state(5), [], []
        for t in range(6):
            lt, vt, state = model(x[:, t : t + 1], state)
            step_logits.append(lt)
            step_values.append(vt)
        torch.testing.assert_close(torch.cat(step_logits, 1), logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat(step_values, 1), values, rtol=0, atol=1e-6)
        torch.testing.assert_close(state, h, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"separate_value must be true or false, got 1"):
        small_config(separate_value=1)


def test_value_norm_training_measures_the_value_loss_in_normalised_units(tmp_path) -> None:
    # Monte Carlo returns of order 100: without normalisation the value loss is of order 1e3, with it
    # of order 1
    kwargs = {"family_kwargs": {"n_arms": 3, "n_pulls": 200, "split_sizes": SPLITS}, "total_env_steps": 10_000,
              "gamma": 1.0, "gae_lambda": 1.0}  # fmt: skip
    plain = RL2(small_config(**kwargs)).train_step()
    normed_agent = train(
        small_config(value_norm=True, **kwargs), tmp_path / "run", progress=False, max_updates=2
    )
    assert plain["v_loss"] > 500.0
    assert math.isfinite(normed_agent.model.return_stats()[1]) and normed_agent.model.return_stats()[0] > 20.0
    log = list(csv.DictReader((tmp_path / "run" / "progress.csv").open()))
    assert all(float(r["v_loss"]) < 5.0 for r in log)
    # the statistics are part of the checkpoint and come back on load
    loaded = load_run(tmp_path / "run")
    assert loaded.model.return_stats() == normed_agent.model.return_stats()
    torch.testing.assert_close(loaded.model.state_dict(), normed_agent.model.state_dict(), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"value_norm must be true or false, got 'yes'"):
        small_config(value_norm="yes")


def test_target_kl_stops_the_epochs_at_the_first_minibatch_over_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ppo_epochs x num_minibatches = 8 minibatches; a tiny target stops after the first (whose KL is 0:
    # the policy has not moved yet), a loose one runs them all, and None (the default) never stops
    steps = {}
    for target in (None, 1e-12, 10.0):
        agent = RL2(small_config(ppo_epochs=4, num_minibatches=2, learning_rate=0.01, target_kl=target))
        calls: list[int] = []
        step = agent.optimizer.step
        monkeypatch.setattr(
            agent.optimizer,
            "step",
            lambda *a, _step=step, _calls=calls, **k: (_calls.append(1), _step(*a, **k))[1],
        )
        stats = agent.train_step()
        steps[target] = len(calls)
        assert math.isfinite(stats["pg_loss"])
    assert steps == {None: 8, 1e-12: 1, 10.0: 8}
    with pytest.raises(ValueError, match=r"target_kl must be positive or None, got 0.0"):
        small_config(target_kl=0.0)
    with pytest.raises(ValueError, match=r"target_kl.*'0.01'"):
        small_config(target_kl="0.01")


def test_learning_rate_and_entropy_anneal_linearly_in_env_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # total_env_steps=1000, 8 trials x 5 pulls = 40 steps per update: the rate applied at an update
    # is the schedule at the steps done before it
    agent = RL2(small_config(learning_rate=0.01, learning_rate_final=0.002, ent_coef=0.1, ent_coef_final=0.0))
    seen: list[float] = []
    step = agent.optimizer.step

    def recording_step(*a: Any, **k: Any) -> Any:
        seen.append(agent.optimizer.param_groups[0]["lr"])
        return step(*a, **k)

    monkeypatch.setattr(agent.optimizer, "step", recording_step)
    for k in range(3):
        stats = agent.train_step()
        frac = 40 * k / 1000
        assert stats["learning_rate"] == pytest.approx(0.01 + frac * (0.002 - 0.01))
        assert stats["ent_coef"] == pytest.approx(0.1 * (1 - frac))
    assert seen == pytest.approx([0.01] * 4 + [0.01 - 0.04 * 0.008] * 4 + [0.01 - 0.08 * 0.008] * 4)
    agent.env_steps = 5000  # past the end: the final values hold
    assert agent._learning_rate() == pytest.approx(0.002) and agent._ent_coef() == 0.0
    constant = RL2(small_config(learning_rate=0.01))
    constant.env_steps = 500
    assert constant._learning_rate() == 0.01
    with pytest.raises(ValueError, match=r"learning_rate_final must be >= 0 or None, got -0.1"):
        small_config(learning_rate_final=-0.1)


def test_task_sampler_redraws_held_out_tasks() -> None:
    from metarl.agents.rl2_trials import TaskSampler

    family = make_family("BernoulliBandit-v0", n_arms=3, n_pulls=5, split_sizes=SPLITS)
    fresh = family.sample(2, np.random.default_rng(0))
    # equal-parameter copies, as a draw that lands on a held-out task would give
    copies = [type(t).from_dict(t.to_dict()) for t in (family.test[0], family.validation[3])]
    draws = iter([copies[0], fresh[0], copies[1], fresh[1]])
    family.sample = lambda n, rng: [next(draws)]  # type: ignore[method-assign]
    assert TaskSampler(family)(2, np.random.default_rng(1)) == fresh
    family.sample = lambda n, rng: [copies[0]]  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="cannot sample tasks outside the held-out splits"):
        TaskSampler(family)(1, np.random.default_rng(1))


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"trials_per_update.*-1"):
        small_config(trials_per_update=-1)
    with pytest.raises(ValueError, match=r"unknown RL2 config keys.*'hiden_size'"):
        RL2Config.from_dict({"hiden_size": 3})
    with pytest.raises(ValueError, match="episodes_per_trial=7 disagrees"):
        RL2(small_config(episodes_per_trial=7))
    assert math.isfinite(RL2(small_config()).train_step()["trial_return"])


def test_cli_train_reads_config_file_and_resumes(tmp_path) -> None:
    import json as _json

    from metarl.agents.rl2 import cli_train, load_learner

    data = {k: v for k, v in _json.loads(small_config().to_json()).items() if k != "family"}
    cfg = tmp_path / "rl2.json"
    cfg.write_text(_json.dumps(data))
    out = cli_train(
        "BernoulliBandit-v0", cfg, run_dir=tmp_path / "run", overrides={"total_env_steps": 40}, progress=False
    )
    assert load_run(out).updates == 1  # 8 trials x 5 pulls = 40 steps per update
    out = cli_train(
        "BernoulliBandit-v0",
        cfg,
        run_dir=tmp_path / "run",
        overrides={"total_env_steps": 40},
        resume=True,
        progress=False,
    )
    assert load_run(out).updates == 1  # already done: resuming adds nothing
    # the positional form metarl.cli uses: (family, config, resume, run_dir, seed)
    out2 = cli_train(
        "BernoulliBandit-v0", cfg, False, tmp_path / "seeded", 5, overrides={"total_env_steps": 40}
    )
    assert load_run(out2).config.seed == 5
    ckpt = sorted((out2 / "checkpoints").glob("ckpt_*.pt"))[-1]
    assert isinstance(load_learner(ckpt), RL2Learner) and isinstance(load_learner(out2), RL2Learner)
    with pytest.raises(ValueError, match="disagrees with the config file"):
        cfg.write_text(_json.dumps({**data, "family": "TabularMDP-v0"}))
        cli_train("BernoulliBandit-v0", cfg, run_dir=tmp_path / "other", progress=False)


# ----------------------------------------------------------------------------- auxiliary reward loss
def test_aux_reward_loss_is_the_taken_actions_squared_error() -> None:
    predictions = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]])
    actions = torch.tensor([[2, 0], [1, 1]])
    rewards = torch.tensor([[1.0, 1.0], [5.0, -1.0]])
    mask = torch.tensor([[True, True], [True, False]])  # the last step is padding
    expected = ((2.0 - 1.0) ** 2 + (3.0 - 1.0) ** 2 + (7.0 - 5.0) ** 2) / 3
    assert float(aux_reward_loss(predictions, actions, rewards, mask)) == pytest.approx(expected)


def test_aux_reward_head_is_off_by_default_and_trains_the_gru_when_on(tmp_path) -> None:
    plain = RL2(small_config())
    assert plain.model.aux is None and not any(k.startswith("aux.") for k in plain.model.state_dict())
    aux = RL2(small_config(aux_reward_coef=0.5))
    # the head is built last: every other parameter starts as without it
    shared = {k: v for k, v in aux.model.state_dict().items() if not k.startswith("aux.")}
    torch.testing.assert_close(shared, plain.model.state_dict(), rtol=0, atol=0)
    # its loss reaches the GRU through the whole trial
    assert aux.env is not None  # sampler="local": the in-process trial env
    batch = collect_trials(aux.model, aux.env, aux.sampler(8, np.random.default_rng(0)), seed=1,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    _, _, _, predicted = aux.model.forward_with_aux(batch.inputs)
    assert predicted is not None and predicted.shape == (8, batch.inputs.shape[1], 3)
    aux_reward_loss(predicted, batch.actions, batch.rewards, batch.mask).backward()
    weight = aux.model.gru.weight_ih_l0
    assert isinstance(weight, torch.Tensor) and weight.grad is not None
    assert float(weight.grad.abs().sum()) > 0
    assert aux.model.pi.weight.grad is None
    # a training step logs it, and the run's CSV has the column
    trained = train(small_config(aux_reward_coef=0.5), tmp_path / "run", progress=False, max_updates=2)
    rows = list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))
    assert len(rows) == 2 and all(float(r["aux_loss"]) > 0 for r in rows)
    assert trained.model.aux is not None
    # the per-task sampler's workers act without the head
    per_task = small_config(aux_reward_coef=0.5, sampler="local-per-task")
    assert train(per_task, tmp_path / "per_task", progress=False, max_updates=1).updates == 1


def test_aux_reward_head_warm_starts_either_way_and_needs_discrete_actions(tmp_path) -> None:
    source = train(small_config(), tmp_path / "src", progress=False, max_updates=1)
    warm = train(small_config(aux_reward_coef=0.5), tmp_path / "warm", progress=False, max_updates=0,
                 init_from=tmp_path / "src")  # fmt: skip
    fresh = RL2(small_config(aux_reward_coef=0.5)).model.state_dict()
    for key, value in warm.model.state_dict().items():
        # the policy comes from the source, the new head as a fresh run would start it
        torch.testing.assert_close(
            value, (fresh if key.startswith("aux.") else source.model.state_dict())[key]
        )
    back = train(
        small_config(), tmp_path / "back", progress=False, max_updates=0, init_from=tmp_path / "warm"
    )
    assert back.model.aux is None
    torch.testing.assert_close(back.model.state_dict(), source.model.state_dict(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="aux_reward_coef must be >= 0, got -1"):
        small_config(aux_reward_coef=-1.0)
    nav = {"family": "Navigation2D-v0", "family_kwargs": {"split_sizes": SPLITS}, "episodes_per_trial": 2}
    with pytest.raises(
        ValueError, match=r"aux_reward_coef=0\.5 needs a discrete action space; Navigation2D-v0"
    ):
        RL2(small_config(**nav, aux_reward_coef=0.5))


# ----------------------------------------------------------------------------- time-aware value
def test_value_time_head_starts_at_zero_and_values_use_the_steps_left() -> None:
    from metarl.agents.rl2 import RL2ActorCritic

    plain = RL2(small_config())
    timed = RL2(small_config(value_time=True))
    # T is the bound on a trial's steps: 5 one-pull episodes of at most 2 steps
    assert plain.model.v_time is None and timed.model.value_horizon == timed.max_trial_steps == 10
    # built last and zero: every other parameter starts as without it, and so do the values
    shared = {k: v for k, v in timed.model.state_dict().items() if not k.startswith("v_time.")}
    torch.testing.assert_close(shared, plain.model.state_dict(), rtol=0, atol=0)
    x = torch.randn(4, 5, plain.inputs.input_dim, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(timed.model(x)[1], plain.model(x)[1], rtol=0, atol=0)
    # v(h) + (1 - t / T) u(h), with t counted from t0
    model = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, value_horizon=10,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert model.v_time is not None
    with torch.no_grad():
        model.v_time.weight.normal_(generator=torch.Generator().manual_seed(2))
        model.v_time.bias.fill_(0.3)
        x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(3))
        out, _ = model.gru(x)
        v, u = model.v(out).squeeze(-1), model.v_time(out).squeeze(-1)
        left = torch.tensor([1.0 - 4 / 10, 1.0 - 5 / 10, 1.0 - 6 / 10])
        torch.testing.assert_close(model(x, t0=4)[1], v + left * u)
        # a step at a time with its own t0 gives the whole-sequence values
        h, steps = model.initial_state(2), []
        for t in range(3):
            _, vt, h = model(x[:, t : t + 1], h, 4 + t)
            steps.append(vt)
        torch.testing.assert_close(torch.cat(steps, 1), model(x, t0=4)[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="value_horizon must be a positive int"):
        RL2ActorCritic(4, 3, discrete=True, hidden_size=8, value_horizon=0)
    with pytest.raises(ValueError, match="value_time must be true or false, got 1"):
        small_config(value_time=1)


def test_value_time_head_is_rescaled_by_value_norm_and_learns(tmp_path) -> None:
    from metarl.agents.rl2 import RL2ActorCritic

    model = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, value_norm=True, value_horizon=6,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert model.v_time is not None
    with torch.no_grad():
        model.v_time.weight.normal_(generator=torch.Generator().manual_seed(2))
        model.v_time.bias.fill_(-0.7)
    x = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 4, dtype=torch.bool)
    for k in range(3):  # the statistics move, the values in return units stay
        before = model(x)[1]
        model.update_return_stats(
            50.0 + 20.0 * torch.randn(3, 4, generator=torch.Generator().manual_seed(k)), mask
        )
        torch.testing.assert_close(model(x)[1], before, rtol=1e-5, atol=1e-4)
    # trained, the head leaves zero; the per-task sampler's workers build it too
    for sampler in ("local", "local-per-task"):
        run = train(small_config(value_time=True, value_norm=True, sampler=sampler), tmp_path / sampler,
                    progress=False, max_updates=2)  # fmt: skip
        assert run.model.v_time is not None and float(run.model.v_time.weight.detach().abs().sum()) > 0


def test_values_recorded_while_acting_match_the_update_pass_with_value_time() -> None:
    # the trial step the values were computed at during collection is the one of the update's pass
    agent = RL2(small_config(value_time=True))
    assert agent.model.v_time is not None
    with torch.no_grad():
        agent.model.v_time.weight.normal_(generator=torch.Generator().manual_seed(2))
        agent.model.v_time.bias.fill_(1.0)
    assert agent.env is not None  # sampler="local": the in-process trial env
    batch = collect_trials(agent.model, agent.env, agent.sampler(8, np.random.default_rng(0)), seed=1,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    with torch.no_grad():
        _, values, _, _ = agent.model.forward_with_aux(batch.inputs)
    torch.testing.assert_close(values[batch.mask], batch.values[batch.mask], rtol=0, atol=1e-5)


def test_value_time_head_warm_starts_either_way(tmp_path) -> None:
    source = train(small_config(), tmp_path / "src", progress=False, max_updates=1)
    warm = train(small_config(value_time=True), tmp_path / "warm", progress=False, max_updates=0,
                 init_from=tmp_path / "src")  # fmt: skip
    src = source.model.state_dict()
    for key, value in warm.model.state_dict().items():
        # the source's network, and a time head at zero: the source's values exactly
        torch.testing.assert_close(value, torch.zeros_like(value) if key.startswith("v_time.") else src[key])
    back = train(
        small_config(), tmp_path / "back", progress=False, max_updates=0, init_from=tmp_path / "warm"
    )
    assert back.model.v_time is None
    torch.testing.assert_close(back.model.state_dict(), src, rtol=0, atol=0)


# ------------------------------------------------------------------- the policy's clock input
def _clock_weights(model: RL2ActorCritic) -> None:
    """Nonzero weights on the clock input (the GRUs' last input column), so it moves the policy."""
    with torch.no_grad():
        for gru in [g for g in (model.gru, model.v_gru) if g is not None]:
            weight = gru.weight_ih_l0
            assert isinstance(weight, torch.Tensor)
            weight[:, -1].normal_(generator=torch.Generator().manual_seed(5))


def test_policy_time_feeds_the_fraction_of_the_trial_left_to_the_gru() -> None:
    from metarl.agents.rl2 import RL2ActorCritic

    agent = RL2(small_config(policy_time=True))
    plain = RL2(small_config())
    model = agent.model
    assert model.time_horizon == agent.max_trial_steps == 10 and plain.model.time_horizon is None
    assert model.gru.input_size == model.input_dim + 1 == plain.model.gru.input_size + 1
    _clock_weights(model)
    x = torch.randn(2, 3, model.input_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # the GRU reads [x | 1 - t / T]: compare with the GRU fed that input by hand
        clock = torch.tensor([1 - 4 / 10, 1 - 5 / 10, 1 - 6 / 10]).expand(2, 3).unsqueeze(-1)
        out, _ = model.gru(torch.cat([x, clock], -1))
        torch.testing.assert_close(model(x, t0=4)[0], model.pi(out), rtol=0, atol=1e-6)
        assert not torch.allclose(model(x, t0=0)[0], model(x, t0=4)[0])
        # another trial length for the clock (meta-testing longer trials): 1 - t / 50
        out50, _ = model.gru(
            torch.cat([x, 1 - torch.tensor([4.0, 5, 6]).expand(2, 3).unsqueeze(-1) / 50], -1)
        )
        torch.testing.assert_close(model(x, t0=4, horizon=50)[0], model.pi(out50), rtol=0, atol=1e-6)
        # a start step per row equals running the rows one at a time
        per_row = model(x, t0=torch.tensor([0, 4]))[0]
        torch.testing.assert_close(per_row[0], model(x[:1], t0=0)[0][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(per_row[1], model(x[1:], t0=4)[0][0], rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="RL² inputs have 7 entries per step, the model expects 6"):
            model(torch.zeros(1, 1, model.input_dim + 1))
    with pytest.raises(ValueError, match="time_horizon must be a positive int"):
        RL2ActorCritic(4, 3, discrete=True, hidden_size=8, time_horizon=0)
    with pytest.raises(ValueError, match="policy_time must be true or false, got 'yes'"):
        small_config(policy_time="yes")


@pytest.mark.parametrize("sampler", ["local", "local-per-task"])
def test_log_probs_recorded_while_acting_match_the_update_pass_with_policy_time(sampler: str) -> None:
    # the clock the policy acted on step by step is the one of the update's whole-trial pass
    agent = RL2(small_config(policy_time=True, separate_value=True, sampler=sampler))
    _clock_weights(agent.model)
    _check_recorded_against_update_pass(agent, _collect_eight_trials(agent, sampler))


def _collect_eight_trials(agent: RL2, sampler: str) -> TrialBatch:
    """Eight trials of ``agent``'s sampler (the in-process trial env or the per-task one)."""
    tasks = agent.sampler(8, np.random.default_rng(0))
    if sampler == "local":
        assert agent.env is not None  # sampler="local": the in-process trial env
        return collect_trials(
            agent.model, agent.env, tasks, seed=1, generator=torch.Generator().manual_seed(1)
        )
    return agent._trial_sampler().collect(agent.model, tasks, seed=1)


def _check_recorded_against_update_pass(agent: RL2, batch: TrialBatch) -> None:
    """The log-probs and values recorded while acting step by step are those of the update's
    whole-trial pass, and a training step runs."""
    with torch.no_grad():
        params, values, _, _ = agent.model.forward_with_aux(batch.inputs)
    log_probs = agent.model.distribution(params).log_prob(batch.actions)
    torch.testing.assert_close(log_probs[batch.mask], batch.log_probs[batch.mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(values[batch.mask], batch.values[batch.mask], rtol=0, atol=1e-5)
    assert math.isfinite(agent.train_step()["trial_return"])


def test_meta_test_policy_counts_each_trial_s_steps_over_the_tested_trial_length() -> None:
    from metarl.agents.rl2 import RL2Learner, RL2Policy

    agent = RL2(small_config(policy_time=True))
    _clock_weights(agent.model)
    learner = RL2Learner(agent.model, agent.config)
    # meta-tested on trials of 7 pulls (trained on 5): the clock counts down over the 14 steps
    # those 7 one-pull episodes of at most 2 steps may take
    family = make_family("BernoulliBandit-v0", n_arms=3, n_pulls=7, split_sizes=SPLITS)
    assert learner.trial_steps(family) == 14
    vec = make_vec(family, family.test[:2])
    policy = learner.begin_adaptation(vec, seed=0).policy()
    assert isinstance(policy, RL2Policy) and policy.horizon == 14
    obs = np.zeros((2, 1), dtype=np.float32)
    seen = []
    for t in range(3):
        x = torch.from_numpy(
            agent.inputs.build(obs, policy.prev_actions, policy.prev_rewards, policy.prev_dones)
        )
        h0, steps = policy.hidden.clone(), policy.steps.copy()
        actions = policy(obs)
        assert policy._pending is not None
        seen.append((x, h0, steps, policy._pending[0].clone()))
        active = np.array([True, t != 1])  # the second trial waits at step 1
        policy.observe(actions, np.ones(2), np.ones(2, bool), np.zeros(2, bool), active)
    np.testing.assert_array_equal(policy.steps, [3, 2])
    # at step 2 the policy's GRU read each row's own clock, 1 - t / 14
    x, h, steps, h_new = seen[2]
    np.testing.assert_array_equal(steps, [2, 1])
    with torch.no_grad():
        clock = torch.tensor([[1 - 2 / 14], [1 - 1 / 14]])
        _, expected = agent.model.gru(torch.cat([x, clock], -1)[:, None], h)
        _, unclocked = agent.model.gru(torch.cat([x, torch.ones(2, 1)], -1)[:, None], h)
    torch.testing.assert_close(h_new, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(h_new, unclocked)
    # the whole meta-test runs, and without the family's trial length it asks for one
    assert evaluate(learner, family, split="test", n_tasks=2, rounds=7, episodes_per_round=1, seed=0)
    nav = make_family("Navigation2D-v0", split_sizes=SPLITS)
    with pytest.raises(ValueError, match="Navigation2D-v0 defines no episodes_per_trial"):
        learner.trial_steps(nav)


def test_policy_time_warm_starts_from_a_run_without_it_with_the_same_policy(tmp_path) -> None:
    source = train(small_config(separate_value=True), tmp_path / "src", progress=False, max_updates=1)
    warm = train(small_config(separate_value=True, policy_time=True), tmp_path / "warm", progress=False,
                 max_updates=0, init_from=tmp_path / "src")  # fmt: skip
    src, ours = source.model.state_dict(), warm.model.state_dict()
    for key in ("gru.weight_ih_l0", "v_gru.weight_ih_l0"):  # the clock's column is new and zero
        torch.testing.assert_close(ours[key][:, :-1], src[key], rtol=0, atol=0)
        assert not ours[key][:, -1].any()
    x = torch.randn(3, 5, source.inputs.input_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(warm.model(x, t0=2), source.model(x, t0=2), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="its policy reads a clock \\(policy_time\\), this run's does not"):
        train(small_config(separate_value=True), tmp_path / "back", progress=False, max_updates=0,
              init_from=tmp_path / "warm")  # fmt: skip


# ------------------------------------------------------------------- expected-reward training
def test_expected_reward_signal_uses_the_arm_means_of_the_pulls_and_needs_the_info() -> None:
    agent = RL2(small_config(reward_signal="expected"))
    tasks = agent.sampler(8, np.random.default_rng(0))
    assert agent.env is not None  # sampler="local": the in-process trial env
    batch = collect_trials(agent.model, agent.env, tasks, seed=1, generator=torch.Generator().manual_seed(1))
    means = torch.tensor(np.stack([t.array("arm_means") for t in tasks]), dtype=torch.float32)
    expected = torch.gather(means, 1, batch.actions)
    signal = agent._signal_rewards(batch)
    torch.testing.assert_close(signal[batch.mask], expected[batch.mask], rtol=0, atol=0)
    assert set(batch.rewards[batch.mask].tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(RL2(small_config())._signal_rewards(batch), batch.rewards, rtol=0, atol=0)
    # the per-task sampler (zero padding) and the Gymnasium backend (final_info) give the same means
    for sampler, backend in (("local-per-task", "auto"), ("local-per-task", "gymnasium")):
        other = RL2(small_config(reward_signal="expected", sampler=sampler, backend=backend))
        b = other._trial_sampler().collect(other.model, tasks, seed=1)
        torch.testing.assert_close(
            b.expected_rewards[b.mask], torch.gather(means, 1, b.actions)[b.mask], rtol=0, atol=0
        )
        assert math.isfinite(other.train_step()["trial_return"])
    with pytest.raises(ValueError, match=r"reward_signal must be 'sampled' or 'expected', got 'mean'"):
        small_config(reward_signal="mean")
    nav = RL2(small_config(family="Navigation2D-v0", family_kwargs={"split_sizes": SPLITS},
                           episodes_per_trial=1, reward_signal="expected"))  # fmt: skip
    with pytest.raises(ValueError, match=r"Navigation2D-v0 does not report it"):
        nav.train_step()


def test_expected_reward_policy_gradient_is_unbiased_with_less_variance() -> None:
    # two arms, two pulls, a tabular policy whose second pull depends on the first (action, reward):
    # enumerating every trial, the score-function gradient with reward-to-go from trial_gae
    # (gamma = lambda = 1, zero values) equals the exact gradient of the expected return with the
    # sampled rewards and with the arm means in their place; the per-trial estimates vary less
    p = torch.tensor([0.3, 0.8], dtype=torch.float64)
    theta0 = torch.tensor([0.4, -0.2], dtype=torch.float64, requires_grad=True)
    theta1 = torch.tensor([[[0.1, 0.5], [-0.3, 0.2]], [[0.7, -0.6], [0.0, 0.9]]], dtype=torch.float64,
                          requires_grad=True)  # fmt: skip
    mask = torch.ones(1, 2, dtype=torch.bool)
    zeros = torch.zeros(1, 2, dtype=torch.float64)
    exact = torch.zeros((), dtype=torch.float64)
    grads: dict[str, list[tuple[float, torch.Tensor]]] = {"sampled": [], "expected": []}
    for a1 in range(2):
        for r1 in range(2):
            for a2 in range(2):
                for r2 in range(2):
                    logp1 = torch.log_softmax(theta0, 0)[a1]
                    logp2 = torch.log_softmax(theta1[a1, r1], 0)[a2]
                    env = (p[a1] if r1 else 1 - p[a1]) * (p[a2] if r2 else 1 - p[a2])
                    prob = float((env * (logp1 + logp2).exp()).detach())
                    exact = exact + env * (logp1 + logp2).exp() * (r1 + r2)
                    for signal, rewards in (
                        ("sampled", [float(r1), float(r2)]),
                        ("expected", [p[a1], p[a2]]),
                    ):
                        _, rtg = trial_gae(
                            torch.tensor([rewards], dtype=torch.float64), zeros, mask, 1.0, 1.0
                        )
                        g = torch.autograd.grad(logp1 * rtg[0, 0] + logp2 * rtg[0, 1], (theta0, theta1),
                                                retain_graph=True)  # fmt: skip
                        grads[signal].append((prob, torch.cat([x.flatten() for x in g])))
    true = torch.cat([x.flatten() for x in torch.autograd.grad(exact, (theta0, theta1))])
    spread = {}
    for signal, items in grads.items():
        mean = sum(w * g for w, g in items)
        torch.testing.assert_close(mean, true, rtol=0, atol=1e-12)
        spread[signal] = float(sum(w * ((g - mean) ** 2).sum() for w, g in items))
    assert spread["expected"] < 0.8 * spread["sampled"]


# ------------------------------------------------------- a critic told the task (value_task)
def test_task_vector_flattens_every_parameter_in_name_order() -> None:
    task = Task.create("Toy", 0, {"b": np.array([[1.0, 2.0], [3.0, 4.0]]), "a": 0.5})
    np.testing.assert_array_equal(task.vector(), [0.5, 1.0, 2.0, 3.0, 4.0])
    assert task.vector().dtype == np.float64
    assert Task.create("Toy", 0, {}).vector().shape == (0,)
    bandit = make_family("BernoulliBandit-v0", n_arms=4, split_sizes=SPLITS).test[0]
    np.testing.assert_array_equal(bandit.vector(), bandit.array("arm_means"))
    mdp = make_family("TabularMDP-v0", n_states=3, n_actions=2, split_sizes=SPLITS).test[0]
    expected = np.concatenate([mdp.array("reward_means").ravel(), mdp.array("transitions").ravel()])
    np.testing.assert_array_equal(mdp.vector(), expected)


def test_the_policy_never_sees_the_task_and_the_value_does() -> None:
    gen = torch.Generator().manual_seed(0)
    plain = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, generator=gen)
    gen = torch.Generator().manual_seed(0)
    model = RL2ActorCritic(4, 3, discrete=True, hidden_size=8, task_dim=5, generator=gen)
    # built last: every other parameter starts as without it
    shared = {k: v for k, v in model.state_dict().items() if not k.startswith("v_task.")}
    torch.testing.assert_close(shared, plain.state_dict(), rtol=0, atol=0)
    x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(1))
    task = torch.rand(2, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    logits, values, h = model(x, task=task)
    other_logits, other_values, other_h = model(x, task=task.detach() + 1.0)
    torch.testing.assert_close(logits, other_logits, rtol=0, atol=0)
    torch.testing.assert_close(h, other_h, rtol=0, atol=0)
    assert (values - other_values).abs().min() > 0
    assert torch.autograd.grad(logits.sum(), task, allow_unused=True)[0] is None
    (grad,) = torch.autograd.grad(values.sum(), task)
    assert grad.abs().sum() > 0
    # the value is a function of the GRU state and the task: tanh(W [h, f] + b), then the head
    with torch.no_grad():
        out, _ = model.gru(x)
        assert model.v_task is not None
        mixed = torch.tanh(model.v_task(torch.cat([out, task[:, None].expand(-1, 6, -1)], -1)))
        torch.testing.assert_close(values, model.v(mixed).squeeze(-1))
    # acting without the task: the same policy, and no value rather than a wrong one
    no_task_logits, no_task_values, _ = model(x)
    torch.testing.assert_close(no_task_logits, logits, rtol=0, atol=0)
    assert torch.isnan(no_task_values).all()
    with pytest.raises(ValueError, match=r"task features must have shape \(2, 5\).*got \(2, 4\)"):
        model(x, task=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="model without a task input"):
        plain(x, task=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="task_dim must be a non-negative int"):
        RL2ActorCritic(4, 3, discrete=True, hidden_size=8, task_dim=-1)
    with pytest.raises(ValueError, match="value_task must be true or false, got 1"):
        small_config(value_task=1)


def test_training_computes_advantages_from_the_task_values(monkeypatch) -> None:
    agent = RL2(small_config(value_norm=True, value_task=True))
    assert agent.model.task_dim == 3
    seen: dict[str, Any] = {}
    real_gae, real_sample = rl2_module.trial_gae, agent.sampler.__call__

    def sample(n: int, rng: np.random.Generator) -> list[Task]:
        seen["tasks"] = real_sample(n, rng)
        return seen["tasks"]  # type: ignore[no-any-return]

    def gae(rewards, values, mask, gamma, lam):  # type: ignore[no-untyped-def]
        seen["values"] = values.clone()
        return real_gae(rewards, values, mask, gamma, lam)

    real_collect = rl2_module.collect_trials

    def collect(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["batch"] = real_collect(*args, **kwargs)
        return seen["batch"]

    monkeypatch.setattr(agent, "sampler", sample)
    monkeypatch.setattr(rl2_module, "trial_gae", gae)
    monkeypatch.setattr(rl2_module, "collect_trials", collect)
    before = {k: v.clone() for k, v in agent.model.state_dict().items()}
    stats = agent.train_step()
    assert np.isfinite(stats["v_loss"])
    batch = seen["batch"]
    assert torch.isnan(batch.values).all()  # collected without the tasks
    task_x = torch.as_tensor(np.stack([t.vector() for t in seen["tasks"]]), dtype=torch.float32)
    model = RL2ActorCritic(agent.inputs.input_dim, agent.inputs.act_dim, discrete=True, hidden_size=16,
                           value_norm=True, task_dim=3)  # fmt: skip
    model.load_state_dict(before)
    with torch.no_grad():
        expected = model(batch.inputs, task=task_x)[1]
    torch.testing.assert_close(seen["values"], expected)
    assert torch.isfinite(seen["values"]).all()


def test_value_task_runs_checkpoint_resume_and_meta_test(tmp_path) -> None:
    config = small_config(value_task=True)
    straight = train(config, tmp_path / "a", progress=False, max_updates=2)
    train(config, tmp_path / "b", progress=False, max_updates=1)
    resumed = train(config, tmp_path / "b", resume=True, progress=False, max_updates=1)
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    loaded = load_run(tmp_path / "a")
    assert loaded.model.task_dim == 3
    torch.testing.assert_close(loaded.model.state_dict(), straight.model.state_dict(), rtol=0, atol=0)
    # meta-testing needs no task: the policy acts, the value is not used
    family = make_family("BernoulliBandit-v0", n_arms=3, n_pulls=5, split_sizes=SPLITS)
    result = evaluate(loaded.learner(), family, split="test", rounds=5, episodes_per_round=1, seed=0)
    assert np.isfinite(result.returns).all()
    # the same run collected by workers (which are not given the task input) trains too
    per_task = train(config.replace(sampler="local-per-task"), tmp_path / "c", progress=False, max_updates=1)
    assert per_task.updates == 1 and all(torch.isfinite(p).all() for p in per_task.model.parameters())


@pytest.mark.parametrize("separate_value", [False, True])
def test_warm_start_into_a_wider_network_keeps_what_it_computes(tmp_path, separate_value: bool) -> None:
    """A larger hidden_size grows the source's GRUs: the same policy and values on any input, the
    source's units evolving exactly as before, and the added units learning from the first update."""
    kw: dict[str, Any] = {"value_norm": True, "separate_value": separate_value, "aux_reward_coef": 0.1}
    source = train(small_config(**kw), tmp_path / "src", progress=False, max_updates=2)
    wide_cfg = small_config(**kw, hidden_size=24, seed=5)
    wide = train(wide_cfg, tmp_path / "wide", progress=False, max_updates=0, init_from=tmp_path / "src")
    assert wide.model.hidden_size == 24 and wide.init_from is not None
    x = torch.randn(6, 9, source.model.input_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_src, v_src, h_src, aux_src = source.model.forward_with_aux(x)
        p_wide, v_wide, h_wide, aux_wide = wide.model.forward_with_aux(x)
    torch.testing.assert_close(p_wide, p_src, rtol=0, atol=1e-6)
    torch.testing.assert_close(v_wide, v_src, rtol=0, atol=1e-6)
    torch.testing.assert_close(aux_wide, aux_src, rtol=0, atol=1e-6)
    parts = 2 if separate_value else 1  # the state holds the policy GRU's units, then the value GRU's
    for i in range(parts):
        torch.testing.assert_close(
            h_wide[..., 24 * i : 24 * i + 16], h_src[..., 16 * i : 16 * (i + 1)], rtol=0, atol=1e-6
        )
        assert h_wide[..., 24 * i + 16 : 24 * (i + 1)].abs().max() > 0.01  # the added units are active
    assert wide.model.pi.weight[:, 16:].abs().max() == 0
    # one update moves the heads' weights on the added units
    wide.train_step()
    assert wide.model.pi.weight[:, 16:].abs().max() > 0 and wide.model.v.weight[:, 16:].abs().max() > 0
    # growing a network with a task-informed critic is refused (shrinking: the test above)
    train(small_config(value_task=True), tmp_path / "vt", progress=False, max_updates=1)
    with pytest.raises(ValueError, match="task-informed critic"):
        train(
            small_config(value_task=True, hidden_size=24),
            tmp_path / "vt2",
            progress=False,
            init_from=tmp_path / "vt",
        )


def test_warm_start_refuses_a_different_critic(tmp_path) -> None:
    train(small_config(), tmp_path / "src", progress=False, max_updates=1)
    with pytest.raises(ValueError, match="value_task: False there, True here"):
        train(
            small_config(value_task=True),
            tmp_path / "warm",
            progress=False,
            max_updates=0,
            init_from=tmp_path / "src",
        )


def test_task_conditioned_values_keep_the_policy_gradient_unbiased() -> None:
    # Two equally likely tasks (arm means (0.3, 0.8) and (0.8, 0.3)), two arms, two pulls, a tabular
    # policy whose second pull depends on the first (action, reward) but not on the task. With the
    # exact task-conditioned value V(h, task) as the critic, GAE's advantages from trial_gae give, in
    # expectation over every task and trial, the exact gradient of the expected return at every
    # lambda, as the exact history-only value V(h) (the same averaged over the task's posterior) does.
    tasks = torch.tensor([[0.3, 0.8], [0.8, 0.3]], dtype=torch.float64)
    theta0 = torch.tensor([0.4, -0.2], dtype=torch.float64, requires_grad=True)
    theta1 = torch.tensor([[[0.1, 0.5], [-0.3, 0.2]], [[0.7, -0.6], [0.0, 0.9]]], dtype=torch.float64,
                          requires_grad=True)  # fmt: skip
    pi0 = torch.softmax(theta0, 0).detach()
    pi1 = torch.softmax(theta1, -1).detach()

    def bern(p: torch.Tensor, r: int) -> torch.Tensor:
        return p if r else 1 - p

    # exact values: after the first pull, the expected second reward; before it, the whole trial's
    v1 = {
        (k, a1, r1): float((pi1[a1, r1] * tasks[k]).sum())
        for k in range(2)
        for a1 in range(2)
        for r1 in range(2)
    }
    v0 = {k: sum(float(pi0[a1] * bern(tasks[k, a1], r1)) * (r1 + v1[k, a1, r1]) for a1 in range(2)
                 for r1 in range(2)) for k in range(2)}  # fmt: skip

    def posterior(a1: int, r1: int) -> list[float]:
        w = [float(bern(tasks[k, a1], r1)) for k in range(2)]
        return [x / sum(w) for x in w]

    def history_values(a1: int, r1: int) -> list[float]:
        post = posterior(a1, r1)
        return [0.5 * (v0[0] + v0[1]), sum(post[k] * v1[k, a1, r1] for k in range(2))]

    mask = torch.ones(1, 2, dtype=torch.bool)
    exact = torch.zeros((), dtype=torch.float64)
    estimates: dict[tuple[str, float], list[tuple[float, torch.Tensor]]] = {}
    for k in range(2):
        for a1, r1, a2, r2 in np.ndindex(2, 2, 2, 2):
            logp1 = torch.log_softmax(theta0, 0)[a1]
            logp2 = torch.log_softmax(theta1[a1, r1], 0)[a2]
            env = 0.5 * bern(tasks[k, a1], r1) * bern(tasks[k, a2], r2)
            exact = exact + env * (logp1 + logp2).exp() * (r1 + r2)
            prob = float((env * (logp1 + logp2).exp()).detach())
            rewards = torch.tensor([[float(r1), float(r2)]], dtype=torch.float64)
            for critic, values in (("task", [v0[k], v1[k, a1, r1]]), ("history", history_values(a1, r1))):
                for lam in (0.0, 0.5, 1.0):
                    adv, _ = trial_gae(rewards, torch.tensor([values], dtype=torch.float64), mask, 1.0, lam)
                    g = torch.autograd.grad(logp1 * adv[0, 0] + logp2 * adv[0, 1], (theta0, theta1),
                                            retain_graph=True)  # fmt: skip
                    estimates.setdefault((critic, lam), []).append(
                        (prob, torch.cat([x.flatten() for x in g]))
                    )
    true = torch.cat([x.flatten() for x in torch.autograd.grad(exact, (theta0, theta1))])
    assert true.abs().max() > 0.01
    for items in estimates.values():
        assert abs(sum(w for w, _ in items) - 1.0) < 1e-12
        torch.testing.assert_close(sum(w * g for w, g in items), true, rtol=0, atol=1e-12)
    # a critic that is not a baseline (it reads the action) would bias it: the check can fail
    biased = []
    for k in range(2):
        for a1, r1, a2, r2 in np.ndindex(2, 2, 2, 2):
            logp1 = torch.log_softmax(theta0, 0)[a1]
            logp2 = torch.log_softmax(theta1[a1, r1], 0)[a2]
            prob = float(
                (0.5 * bern(tasks[k, a1], r1) * bern(tasks[k, a2], r2) * (logp1 + logp2).exp()).detach()
            )
            leaky = torch.tensor([[v0[k], float(tasks[k, a2])]], dtype=torch.float64)
            adv, _ = trial_gae(
                torch.tensor([[float(r1), float(r2)]], dtype=torch.float64), leaky, mask, 1.0, 1.0
            )
            g = torch.autograd.grad(logp1 * adv[0, 0] + logp2 * adv[0, 1], (theta0, theta1))
            biased.append((prob, torch.cat([x.flatten() for x in g])))
    assert (sum(w * g for w, g in biased) - true).abs().max() > 1e-3


# ------------------------------------------------------------------- the previous observation
def _mdp_config(**changes: object) -> RL2Config:
    kwargs = {"n_states": 4, "n_actions": 3, "n_episodes": 2, "max_episode_steps": 3, "split_sizes": SPLITS}
    return small_config(family="TabularMDP-v0", family_kwargs=kwargs, **changes)


def test_prev_obs_inputs_end_with_the_state_the_previous_action_was_taken_in() -> None:
    family = _mdp_config().make_family()
    task = family.test[1]
    env = TrialVecEnv(family, num_trials=1, episodes_per_trial=2, prev_obs=True)
    assert env.inputs.input_dim == 4 + 3 + 2 + 4
    ref = make_vec(family, [task])
    x = env.reset([task], seed=4)
    obs, _ = ref.reset(seed=4)
    prev_s = np.zeros(4)  # zeros at a trial's first step
    prev_a, prev_r, prev_d = np.zeros(3), 0.0, 0.0
    for a in [1, 2, 0, 2, 1, 0]:
        expected = np.concatenate([np.eye(4)[obs[0]], prev_a, [prev_r, prev_d], prev_s]).astype(np.float32)
        np.testing.assert_array_equal(x[0], expected)
        acted_in = np.eye(4)[obs[0]]
        x = env.step(np.array([a])).inputs
        obs, rew, term, trunc, _ = ref.step(np.array([a]))
        prev_s, prev_a, prev_r, prev_d = acted_in, np.eye(3)[a], float(rew[0]), float(term[0] | trunc[0])
    # across the episode boundary (after the third step) the row held the next episode's first
    # state as obs and the previous episode's last state as prev obs: checked in the loop above
    with pytest.raises(ValueError, match=r"these RL² inputs \(prev_obs=True\) need previous observations"):
        env.inputs.build(np.array([0]), np.zeros((1, 3)), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match=r"\(prev_obs=False\) take no previous observations"):
        TrialInputs(env.inputs.observation_space, env.inputs.action_space).build(
            np.array([0]), np.zeros((1, 3)), np.zeros(1), np.zeros(1), np.zeros((1, 4))
        )
    with pytest.raises(ValueError, match=r"must be encoded as \(1, 4\), got shape \(1, 3\)"):
        env.inputs.build(np.array([0]), np.zeros((1, 3)), np.zeros(1), np.zeros(1), np.zeros((1, 3)))


@pytest.mark.parametrize("sampler", ["local", "local-per-task"])
def test_prev_obs_log_probs_recorded_while_acting_match_the_update_pass(sampler: str) -> None:
    agent = RL2(_mdp_config(prev_obs=True, sampler=sampler))
    assert agent.model.input_dim == 13
    batch = _collect_eight_trials(agent, sampler)
    # the last four entries of each row are the previous row's state
    x = batch.inputs
    torch.testing.assert_close(x[:, 1:, 9:], x[:, :-1, :4], rtol=0, atol=0)
    assert not x[:, 0, 9:].any()
    _check_recorded_against_update_pass(agent, batch)


def test_prev_obs_meta_test_policy_feeds_the_inputs_training_feeds() -> None:
    agent = RL2(_mdp_config(prev_obs=True))
    learner = agent.learner()
    family = agent.family
    vec = make_vec(family, family.test[:4])
    adaptation = learner.begin_adaptation(vec, seed=0)
    policy = adaptation.policy()
    assert isinstance(policy, RL2Policy) and policy.prev_obs is not None
    rounds = [collect(vec, adaptation.policy(), 1, seed=r) for r in range(2)]
    # rebuild the trial's inputs as TrialVecEnv builds them and run the GRU over them from zero
    xs, eye_s, eye_a = [], np.eye(4), np.eye(3)
    prev_s, prev_a, prev_r, prev_d = np.zeros((4, 4)), np.zeros((4, 3)), np.zeros(4), np.zeros(4)
    for b in rounds:
        for t in range(b.observations.shape[1]):
            s = b.observations[:, t]
            xs.append(agent.inputs.build(s, prev_a, prev_r, prev_d, prev_s))
            prev_s, prev_a, prev_r = eye_s[s], eye_a[b.actions[:, t]], b.rewards[:, t]
            prev_d = (b.terminations[:, t] | b.truncations[:, t]).astype(float)
    with torch.no_grad():
        _, _, h = agent.model(torch.from_numpy(np.stack(xs, 1)))
    torch.testing.assert_close(policy.hidden, h, rtol=0, atol=1e-6)
    # the whole meta-test runs
    assert evaluate(learner, family, split="test", n_tasks=2, rounds=2, episodes_per_round=1, seed=0)


@pytest.mark.parametrize("policy_time", [False, True])
def test_prev_obs_warm_starts_from_a_run_without_it_with_the_same_policy(tmp_path, policy_time: bool) -> None:
    source = train(_mdp_config(separate_value=True, policy_time=policy_time), tmp_path / "src", progress=False,
                   max_updates=1)  # fmt: skip
    warm = train(_mdp_config(separate_value=True, policy_time=policy_time, prev_obs=True), tmp_path / "warm",
                 progress=False, max_updates=0, init_from=tmp_path / "src")  # fmt: skip
    src, ours = source.model.state_dict(), warm.model.state_dict()
    for key in ("gru.weight_ih_l0", "v_gru.weight_ih_l0"):  # four new zero columns after the first 9
        torch.testing.assert_close(ours[key][:, :9], src[key][:, :9], rtol=0, atol=0)
        torch.testing.assert_close(ours[key][:, 13:], src[key][:, 9:], rtol=0, atol=0)  # the clock
        assert not ours[key][:, 9:13].any()
    x = torch.randn(3, 5, 9, generator=torch.Generator().manual_seed(1))
    x_prev = torch.cat([x, torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(2))], -1)
    with torch.no_grad():
        for a, b in zip(warm.model(x_prev, t0=2), source.model(x, t0=2), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"reads the previous observation \(prev_obs\), this run's does not"):
        train(_mdp_config(separate_value=True, policy_time=policy_time), tmp_path / "back", progress=False,
              max_updates=0, init_from=tmp_path / "warm")  # fmt: skip


def test_prev_obs_is_checked_and_needs_a_matching_trial_sampler(tmp_path) -> None:
    with pytest.raises(ValueError, match="prev_obs must be true or false, got 1"):
        _mdp_config(prev_obs=1)
    from metarl.agents.rl2_sampling import TrialSampler
    from metarl.samplers import LocalSampler

    cfg = _mdp_config(prev_obs=True, sampler="local-per-task")
    family = cfg.make_family()
    with pytest.raises(ValueError, match="the trial sampler was made with prev_obs=False, the config has"):
        RL2(cfg, family, trial_sampler=TrialSampler(LocalSampler(family, 1), 2))
    # a checkpoint of a prev_obs run loads with its inputs
    run = train(cfg, tmp_path / "po", progress=False, max_updates=1)
    loaded = load_run(tmp_path / "po")
    assert loaded.config.prev_obs and loaded.model.input_dim == run.model.input_dim == 13


def test_training_script_stops_after_max_updates(tmp_path, script_module) -> None:
    import argparse

    common = script_module("rl2_common")
    (tmp_path / "cfg.json").write_text(small_config().to_json())
    parser = argparse.ArgumentParser()
    common.add_train_args(parser, "unused.json")
    args = parser.parse_args(["--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "run"),
                              "--max-updates", "2", "--no-progress"])  # fmt: skip
    out = common.run_training(args, {}, "probe")
    assert load_run(out).updates == 2 and small_config().total_env_steps > 2 * 8 * 5
    args.max_updates = 0
    with pytest.raises(SystemExit, match="--max-updates must be a positive number of updates, got 0"):
        common.run_training(args, {}, "probe")


def test_expected_final_update_follows_the_measured_steps_and_the_update_cap() -> None:
    from metarl.agents.rl2_train import expected_final_update

    # session 16's k = 5 bandit link: 21 M steps of 128 one-pull trials of 100 pulls
    assert expected_final_update(0, 0, 21_000_000, 12_800, None) == 1641
    assert expected_final_update(100, 1_280_000, 21_000_000, 12_800, None) == 1641  # resumed
    assert expected_final_update(0, 0, 21_000_000, 12_800, 884) == 884  # --max-updates
    assert expected_final_update(7, 21_000_000, 21_000_000, 12_800, None) == 7  # nothing left
    assert expected_final_update(3, 0, 100, 0, 5) == 3 + 5  # a zero-step measure cannot divide by zero


@pytest.mark.parametrize("max_updates", [None, 2])
def test_progress_bar_counts_to_the_update_the_run_stops_at(tmp_path, monkeypatch, max_updates) -> None:
    import tqdm

    totals: list[float | None] = []

    class Bar(tqdm.tqdm):  # type: ignore[type-arg]
        def update(self, n: float | None = 1) -> bool | None:
            totals.append(self.total)
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)  # the trainer imports it when it starts
    # a bandit pull is a one-step episode under a 2-step limit: 8 trials of 5 pulls take 40 steps, not 80
    agent = train(small_config(total_env_steps=200), tmp_path / "run", progress=True, max_updates=max_updates)
    assert agent.updates == (5 if max_updates is None else 2)
    assert totals == [agent.updates] * agent.updates


# ------------------------------------------------------------------- state-action pair inputs
def test_pair_inputs_file_the_previous_reward_under_its_state_action_pair() -> None:
    agent = RL2(_mdp_config(prev_obs=True, pair_inputs=True, policy_time=True))
    assert agent.model.input_dim == 13 and agent.model.gru.input_size == 13 + 2 * 4 * 3 + 1
    batch = _collect_eight_trials(agent, "local")
    x = batch.inputs.numpy()
    features = agent.model.pair_features(batch.inputs).numpy()
    assert features.shape == (8, x.shape[1], 24)
    for b in range(8):
        for t in range(x.shape[1]):
            expected = np.zeros((2, 4, 3))
            if t > 0:  # the row's previous state and action are the last step's
                s, a = int(batch.inputs[b, t - 1, :4].argmax()), int(batch.actions[b, t - 1])
                expected[0, s, a], expected[1, s, a] = 1.0, float(batch.rewards[b, t - 1])
                assert x[b, t, 4 + 3] == np.float32(batch.rewards[b, t - 1])
            np.testing.assert_allclose(features[b, t], expected.reshape(-1), rtol=0, atol=1e-6)
    # the GRU reads them between the row and the clock
    seen = []
    hook = agent.model.gru.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    with torch.no_grad():
        agent.model(batch.inputs)
    hook.remove()
    torch.testing.assert_close(seen[0][..., :13], batch.inputs, rtol=0, atol=0)
    torch.testing.assert_close(seen[0][..., 13:37], torch.from_numpy(features), rtol=0, atol=0)
    torch.testing.assert_close(seen[0][0, :, 37], 1 - torch.arange(x.shape[1]) / agent.max_trial_steps)


@pytest.mark.parametrize("sampler", ["local", "local-per-task"])
def test_pair_inputs_log_probs_recorded_while_acting_match_the_update_pass(sampler: str) -> None:
    agent = RL2(_mdp_config(prev_obs=True, pair_inputs=True, sampler=sampler))
    _check_recorded_against_update_pass(agent, _collect_eight_trials(agent, sampler))


@pytest.mark.parametrize("prev_obs", [False, True])
def test_pair_inputs_warm_start_from_a_run_without_them_with_the_same_policy(
    tmp_path, prev_obs: bool
) -> None:
    source = train(_mdp_config(separate_value=True, policy_time=True, prev_obs=prev_obs), tmp_path / "src",
                   progress=False, max_updates=1)  # fmt: skip
    warm = train(_mdp_config(separate_value=True, policy_time=True, prev_obs=True, pair_inputs=True),
                 tmp_path / "warm", progress=False, max_updates=0, init_from=tmp_path / "src")  # fmt: skip
    width = source.model.input_dim
    src, ours = source.model.state_dict(), warm.model.state_dict()
    for key in ("gru.weight_ih_l0", "v_gru.weight_ih_l0"):  # zero columns for the new entries
        torch.testing.assert_close(ours[key][:, :width], src[key][:, :width], rtol=0, atol=0)
        torch.testing.assert_close(ours[key][:, -1], src[key][:, -1], rtol=0, atol=0)  # the clock, last
        assert not ours[key][:, width:-1].any()
        assert ours[key].shape[1] == 13 + 24 + 1
    x = torch.randn(3, 5, 13, generator=torch.Generator().manual_seed(1))
    x[..., 4:7] = torch.eye(3)[torch.randint(0, 3, (3, 5), generator=torch.Generator().manual_seed(2))]
    with torch.no_grad():
        for a, b in zip(warm.model(x, t0=2), source.model(x[..., :width], t0=2), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"reads state-action pair inputs \(pair_inputs\), this run's does not"
    ):
        train(_mdp_config(separate_value=True, policy_time=True, prev_obs=True), tmp_path / "back",
              progress=False, max_updates=0, init_from=tmp_path / "warm")  # fmt: skip


def test_pair_inputs_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="pair_inputs must be true or false, got 'yes'"):
        _mdp_config(prev_obs=True, pair_inputs="yes")
    with pytest.raises(ValueError, match=r"pair_inputs=True needs prev_obs=True"):
        _mdp_config(pair_inputs=True)
    with pytest.raises(
        ValueError, match=r"pair_inputs=True needs Discrete observation and action spaces, got Box"
    ):
        nav = {"family": "Navigation2D-v0", "family_kwargs": {"split_sizes": SPLITS}, "episodes_per_trial": 2}
        RL2(small_config(**nav, prev_obs=True, pair_inputs=True))
    # a checkpoint of such a run loads with its inputs and meta-tests
    train(_mdp_config(prev_obs=True, pair_inputs=True), tmp_path / "pair", progress=False, max_updates=1)
    loaded = load_run(tmp_path / "pair")
    assert loaded.config.pair_inputs and loaded.model.pair_dims == (4, 3)
    assert evaluate(loaded.learner(), loaded.family, split="test", n_tasks=2, rounds=2, episodes_per_round=1,
                    seed=0)  # fmt: skip


# ------------------------------------------------------------------- a policy head per observation
def test_obs_head_adds_the_current_observation_s_own_head_to_the_logits(tmp_path) -> None:
    agent = RL2(_mdp_config(obs_head=True, hidden_size=8))
    model = agent.model
    assert model.pi_obs is not None and model.pi_obs.weight.shape == (4 * 3, 8)
    x = torch.zeros(2, 3, model.input_dim)
    x[0, :, 1] = 1.0  # trial 0 in state 1, trial 1 in state 3
    x[1, :, 3] = 1.0
    x[..., 4:] = torch.randn(2, 3, model.input_dim - 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base, _, _ = model(x)  # the head starts at zero: the logits are the shared head's
        torch.testing.assert_close(base, model.pi(model.gru(x)[0]), rtol=0, atol=0)
        model.pi_obs.weight.normal_(generator=torch.Generator().manual_seed(1))
        model.pi_obs.bias.normal_(generator=torch.Generator().manual_seed(2))
        logits, _, _ = model(x)
        out = model.gru(x)[0]
        w, b = model.pi_obs.weight.view(4, 3, 8), model.pi_obs.bias.view(4, 3)
        for trial, s in ((0, 1), (1, 3)):
            expected = base[trial] + out[trial] @ w[s].T + b[s]
            torch.testing.assert_close(logits[trial], expected, rtol=1e-6, atol=1e-6)
    for sampler in ("local", "local-per-task"):  # acting and the update pass agree
        agent = RL2(_mdp_config(obs_head=True, prev_obs=True, pair_inputs=True, sampler=sampler))
        assert agent.model.pi_obs is not None
        with torch.no_grad():
            agent.model.pi_obs.weight.normal_(generator=torch.Generator().manual_seed(1))
        _check_recorded_against_update_pass(agent, _collect_eight_trials(agent, sampler))


def test_obs_head_warm_starts_from_a_run_without_it_and_grows_with_the_network(tmp_path) -> None:
    source = train(_mdp_config(hidden_size=8), tmp_path / "src", progress=False, max_updates=1)
    warm = train(_mdp_config(hidden_size=8, obs_head=True), tmp_path / "warm", progress=False, max_updates=1,
                 init_from=tmp_path / "src")  # fmt: skip
    x = torch.zeros(3, 5, 9)
    x[..., :4] = torch.eye(4)[torch.randint(0, 4, (3, 5), generator=torch.Generator().manual_seed(0))]
    fresh = train(_mdp_config(hidden_size=8, obs_head=True), tmp_path / "warm0", progress=False, max_updates=0,
                  init_from=tmp_path / "src")  # fmt: skip
    with torch.no_grad():
        for a, b in zip(fresh.model(x), source.model(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert warm.model.pi_obs is not None and warm.model.pi_obs.weight.abs().sum() > 0  # it learns
    grown = train(_mdp_config(hidden_size=16, obs_head=True), tmp_path / "grown", progress=False, max_updates=0,
                  init_from=tmp_path / "warm")  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(grown.model(x)[0], warm.model(x)[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"has a head per observation \(obs_head\), this run's does not"):
        train(
            _mdp_config(hidden_size=8),
            tmp_path / "back",
            progress=False,
            max_updates=0,
            init_from=tmp_path / "warm",
        )
    with pytest.raises(ValueError, match="obs_head must be true or false, got 2"):
        _mdp_config(obs_head=2)
    with pytest.raises(
        ValueError, match=r"obs_head=True needs Discrete observation and action spaces, got Box"
    ):
        nav = {"family": "Navigation2D-v0", "family_kwargs": {"split_sizes": SPLITS}, "episodes_per_trial": 2}
        RL2(small_config(**nav, obs_head=True))
