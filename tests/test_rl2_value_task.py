"""RL² with a privileged critic (``RL2Config.value_task``): the value is told the task, the policy is not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from metarl import Task, evaluate, make_family
from metarl.agents import rl2 as rl2_module
from metarl.agents.rl2 import RL2, RL2ActorCritic, RL2Config, trial_gae
from metarl.agents.rl2_train import load_run, train

torch.set_num_threads(1)

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
        "value_task": True,
    }
    return RL2Config.from_dict({**base, **changes})


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
    agent = RL2(small_config(value_norm=True))
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
    config = small_config()
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


def test_warm_start_refuses_a_different_critic(tmp_path) -> None:
    train(small_config(value_task=False), tmp_path / "src", progress=False, max_updates=1)
    with pytest.raises(ValueError, match="value_task: False there, True here"):
        train(small_config(), tmp_path / "warm", progress=False, max_updates=0, init_from=tmp_path / "src")


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
