"""MAML-TRPO: the mathematics against known answers, save/load and determinism."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

import metarl
from metarl.agents.advantages import baseline_features, discounted_returns, fit_linear_baseline, gae
from metarl.agents.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from metarl.agents.maml_hvp import BatchedOuterStep, subsample_steps
from metarl.agents.maml_train import (
    build,
    checkpoint_payload,
    load_algorithm,
    meta_iteration,
    train,
    validate,
)
from metarl.agents.maml_trpo import (
    MAMLTRPO,
    MAMLTRPOConfig,
    TaskTensors,
    adapt,
    cli_train,
    inner_loss,
    load_learner,
    map_tasks,
)
from metarl.agents.policies import GaussianMLPPolicy, PolicySampler, batched_forward, make_policy
from metarl.agents.scripted import Navigation2DOracle, Navigation2DTrilateration, RandomLearner
from metarl.agents.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    conjugate_gradient_with_product,
    flat_grad,
    flatten,
    hessian_vector_product,
    unflatten,
)

torch.set_num_threads(1)


def tiny_problem(seed: int = 0, K: int = 2, N: int = 6) -> tuple[GaussianMLPPolicy, TaskTensors, TaskTensors]:
    """A float64 policy (2 -> 5 -> 2, tanh) and random inner / validation data for K tasks."""
    g = torch.Generator().manual_seed(seed)
    policy = GaussianMLPPolicy(2, 2, (5,), "tanh", init_std=0.7).double()
    policy.reset_parameters(g)
    with torch.no_grad():
        for p in policy.parameters():  # non-zero biases, so every term is exercised
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))

    def data() -> TaskTensors:
        w = torch.ones(K, N, dtype=torch.float64) / N
        w[:, -1] = 0.0  # one padded step per task
        w = w / w.sum(1, keepdim=True)
        rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
        return TaskTensors(rnd(K, N, 2), rnd(K, N, 2), rnd(K, N), w)

    return policy, data(), data()


def config(**kw: object) -> MAMLTRPOConfig:
    return MAMLTRPOConfig(**{"inner_lr": 0.3, **kw})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- trpo helpers
def test_conjugate_gradient_solves_spd_system() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)
    x3, ax3 = conjugate_gradient_with_product(lambda v: a @ v, b, iters=3)  # stopped early
    torch.testing.assert_close(ax3, a @ x3, rtol=1e-9, atol=1e-9)


def test_flatten_round_trip() -> None:
    ts = [torch.arange(6.0).reshape(2, 3), torch.tensor([7.0])]
    assert [torch.equal(a, b) for a, b in zip(unflatten(flatten(ts), ts), ts, strict=True)] == [True, True]


def test_line_search_never_accepts_a_step_violating_the_kl_bound() -> None:
    # The full step improves the loss most but has KL 0.05 > 0.01; the KL grows as fraction^2.
    tried: list[tuple[float, float]] = []

    def evaluate(fraction: float) -> tuple[float, float]:
        kl = 0.05 * fraction**2
        tried.append((fraction, kl))
        return -fraction, kl

    result = backtracking_line_search(evaluate, 0.0, 0.01, max_steps=15, ratio=0.8)
    assert result.accepted and result.kl <= 0.01 and result.loss < 0.0
    assert all(kl > 0.01 for _, kl in tried[:-1])  # everything before the accepted step violated it
    assert result.fraction == pytest.approx(0.8**4)  # the first fraction with 0.05 f^2 <= 0.01
    # No improving step within the bound: nothing is accepted.
    none = backtracking_line_search(lambda f: (1.0, 0.0), 0.0, 0.01, max_steps=5)
    assert not none.accepted and none.fraction == 0.0


def test_line_search_inside_meta_step_respects_kl_bound() -> None:
    policy, inner, valid = tiny_problem()
    algo = MAMLTRPO(policy, config(max_kl=1e-4))
    stats = algo.meta_step([inner], valid)
    assert stats["kl"] <= 1e-4


# ------------------------------------------------------------------ second-order derivatives of MAML
@pytest.mark.parametrize("batching", ["loop", "vmap", "batched"])
def test_kl_hvp_through_the_inner_step_matches_finite_differences(batching: str) -> None:
    policy, inner, valid = tiny_problem()
    algo = MAMLTRPO(policy, config(task_batching=batching))
    theta = algo.meta_parameters()
    _, _, old_dist = algo.objective([inner], valid, None, create_graph=False)
    theta0 = flatten([p.detach() for p in theta]).clone()
    v = torch.randn(theta0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # Move away from theta0 so the KL gradient is not zero and its Hessian is evaluated generically.
    point = theta0 + 0.05 * v.flip(0)

    def kl_grad(at: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        MAMLTRPO._set(theta, at)
        _, kl, _ = algo.objective([inner], valid, old_dist, create_graph=True)
        return flat_grad(kl, theta)

    MAMLTRPO._set(theta, point)
    _, kl, _ = algo.objective([inner], valid, old_dist, create_graph=True)
    hv = hessian_vector_product(kl, theta)(v)
    eps = 1e-5
    fd = (kl_grad(point + eps * v) - kl_grad(point - eps * v)) / (2 * eps)
    torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-8)


def post_adaptation_loss(policy: GaussianMLPPolicy, inner: TaskTensors, valid: TaskTensors, alpha: float,
                         create_graph: bool) -> torch.Tensor:  # fmt: skip
    """J(theta) = mean_k L_val,k(theta - alpha grad L_in,k(theta)) with a REINFORCE validation loss."""
    adapted = adapt(
        policy, policy.params(), {n: alpha for n in policy.params()}, [inner], create_graph=create_graph
    )
    return map_tasks(lambda p, d: inner_loss(policy, p, TaskTensors(*d)), adapted, tuple(valid)).mean()


def test_meta_gradient_matches_finite_differences_and_first_order_drops_exactly_the_hessian_term() -> None:
    policy, inner, valid = tiny_problem()
    alpha = 0.3
    theta = list(policy.parameters())
    meta_grad = flat_grad(post_adaptation_loss(policy, inner, valid, alpha, True), theta)
    theta0 = flatten([p.detach() for p in theta]).clone()
    fd = torch.zeros_like(theta0)
    eps = 1e-6
    with torch.no_grad():
        for i in range(theta0.numel()):
            vals = []
            for sign in (1.0, -1.0):
                e = torch.zeros_like(theta0)
                e[i] = sign * eps
                MAMLTRPO._set(theta, theta0 + e)
                with torch.enable_grad():
                    vals.append(post_adaptation_loss(policy, inner, valid, alpha, False).item())
            fd[i] = (vals[0] - vals[1]) / (2 * eps)
    MAMLTRPO._set(theta, theta0)
    torch.testing.assert_close(meta_grad, fd, rtol=1e-6, atol=1e-8)

    # First order: the gradient of L_val at theta'_k, averaged; the dropped term is
    # -alpha * H_in,k(theta) grad L_val,k(theta'_k) averaged over tasks.
    fo_grad = flat_grad(post_adaptation_loss(policy, inner, valid, alpha, False), theta)
    second = torch.zeros_like(theta0)
    K = inner.obs.shape[0]
    for k in range(K):
        adapted = adapt(
            policy, policy.params(), {n: alpha for n in policy.params()}, [inner], create_graph=False
        )
        adapted_k = {n: p[k].detach().requires_grad_(True) for n, p in adapted.items()}
        g_val = flat_grad(inner_loss(policy, adapted_k, valid.task(k)), list(adapted_k.values()))
        h_in = hessian_vector_product(inner_loss(policy, policy.params(), inner.task(k)), theta)
        second += -alpha * h_in(g_val) / K
    torch.testing.assert_close(meta_grad - fo_grad, second, rtol=1e-8, atol=1e-10)
    assert second.abs().max() > 1e-4  # the term is not trivially zero here


def test_one_inner_step_is_a_hand_written_sgd_step_on_reinforce() -> None:
    policy, inner, _ = tiny_problem()
    alpha = 0.1
    adapted = adapt(policy, policy.params(), {n: alpha for n in policy.params()}, [inner], create_graph=False)
    first, last = policy.mlp[0], policy.mlp[2]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)  # 2 -> 5 -> 2, tanh
    for k in range(inner.obs.shape[0]):
        w1, w2 = first.weight, last.weight
        b1, b2 = first.bias, last.bias
        mean = torch.tanh(inner.obs[k] @ w1.T + b1) @ w2.T + b2
        std = torch.exp(policy.log_std)
        logp = torch.distributions.Normal(mean, std).log_prob(inner.actions[k]).sum(-1)
        loss = -(inner.weights[k] * logp * inner.advantages[k]).sum()
        names = ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "log_std"]
        params = [w1, b1, w2, b2, policy.log_std]
        grads = torch.autograd.grad(loss, params)
        for name, p, g in zip(names, params, grads, strict=True):
            torch.testing.assert_close(adapted[name][k], p - alpha * g, rtol=1e-12, atol=1e-12)


def test_vmap_batched_and_loop_batching_agree() -> None:
    policy, inner, valid = tiny_problem()
    out = {}
    for batching in ("loop", "vmap", "batched"):
        algo = MAMLTRPO(policy, config(task_batching=batching))
        loss, kl, _ = algo.objective([inner], valid, None, create_graph=True)
        grad = flat_grad(loss, algo.meta_parameters(), retain_graph=True)
        v = torch.ones_like(grad)
        out[batching] = (loss.detach(), grad, hessian_vector_product(kl, algo.meta_parameters())(v))
    for other in ("vmap", "batched"):
        for a, b in zip(out["loop"], out[other], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def float32_problem(
    K: int = 3, N: int = 40
) -> tuple[GaussianMLPPolicy, TaskTensors, TaskTensors, TaskTensors]:
    """A float32 (8, 8) relu policy and two inner batches and a validation batch with padding."""
    g = torch.Generator().manual_seed(3)
    policy = GaussianMLPPolicy(3, 2, (8, 8), "relu", init_std=0.8)
    policy.reset_parameters(g)

    def data() -> TaskTensors:
        n_valid = torch.tensor([N, N - 7, N - 15][:K])
        w = (torch.arange(N).expand(K, N) < n_valid[:, None]).float() / n_valid[:, None]
        rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        return TaskTensors(rnd(K, N, 3), rnd(K, N, 2), rnd(K, N) * (w > 0), w)

    return policy, data(), data(), data()


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [0, 1, 2])
def test_batched_outer_step_matches_double_backprop_of_the_loop(first_order: bool, inner_steps: int) -> None:
    """Gauss-Newton gradient and KL Hessian products (at the old policy) equal the loop's autograd ones."""
    policy, in1, in2, valid = float32_problem()
    inner = [in1, in2][:inner_steps]
    algo = MAMLTRPO(policy, config(task_batching="loop", first_order=first_order))
    theta = algo.meta_parameters()
    loss, kl, _ = algo.objective(inner, valid, None, create_graph=not first_order)
    grad = flat_grad(loss, theta, retain_graph=True)
    hvp = hessian_vector_product(kl, theta, 1e-3)
    outer = BatchedOuterStep(
        policy, {n: 0.3 for n in policy.params()}, inner, valid, second_order=not first_order
    )
    loss_b, grad_b = outer.loss_and_gradient()
    assert loss_b == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(grad_b, grad, rtol=1e-5, atol=1e-6)
    for seed in range(2):
        v = torch.randn(grad.shape, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(outer.kl_hvp(v, 1e-3), hvp(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
def test_training_with_a_later_step_scale_takes_smaller_second_steps_on_every_path(first_order: bool) -> None:
    """later_step_scale in training: the second inner step has size alpha * scale, and the batched
    Gauss-Newton gradient and KL products differentiate through those very steps."""
    from metarl.agents.maml_hvp import InnerSteps

    policy, in1, in2, valid = float32_problem()
    sizes = {n: 0.3 for n in policy.params()}
    start = policy.params()
    by_hand = adapt(policy, start, sizes, [in1], create_graph=False)
    by_hand = adapt(policy, by_hand, {n: 0.15 for n in sizes}, [in2], create_graph=False)
    scaled = adapt(policy, start, sizes, [in1, in2], create_graph=False, later_step_scale=0.5)
    inner = InnerSteps(policy, sizes, 3, second_order=not first_order, later_step_scale=0.5)
    inner.step(in1)
    stepped = inner.step(in2)
    for n, p in by_hand.items():
        torch.testing.assert_close(scaled[n], p)
        torch.testing.assert_close(stepped[n], p)
    assert inner.step_alphas[0][0] == 0.3 and inner.step_alphas[1][0] == 0.15

    algo = MAMLTRPO(policy, config(task_batching="loop", first_order=first_order, later_step_scale=0.5))
    theta = algo.meta_parameters()
    loss, kl, _ = algo.objective([in1, in2], valid, None, create_graph=not first_order)
    grad = flat_grad(loss, theta, retain_graph=True)
    hvp = hessian_vector_product(kl, theta, 1e-3)
    outer = BatchedOuterStep(policy, sizes, [in1, in2], valid, second_order=not first_order, inner=inner,
                             later_step_scale=0.5)  # fmt: skip
    loss_b, grad_b = outer.loss_and_gradient()
    assert loss_b == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(grad_b, grad, rtol=1e-5, atol=1e-6)
    v = torch.randn(grad.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(outer.kl_hvp(v, 1e-3), hvp(v), rtol=1e-5, atol=1e-6)
    equal = BatchedOuterStep(policy, sizes, [in1, in2], valid, second_order=not first_order)
    assert not torch.allclose(equal.loss_and_gradient()[1], grad_b)
    with pytest.raises(ValueError, match="later_step_scale"):
        BatchedOuterStep(policy, sizes, [in1, in2], valid, second_order=not first_order, inner=inner)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [0, 1, 2])
def test_batched_meta_sgd_gradient_and_kl_products_match_the_loops_autograd(
    first_order: bool, inner_steps: int
) -> None:
    """Meta-SGD on the batched path: the step sizes' block of the Gauss-Newton gradient and KL
    products (``d theta' / d alpha = -s_i diag(g_i)``) equals double backprop through the loop's
    inner steps, with the second step halved; with no inner step the step sizes get nothing."""
    policy, in1, in2, valid = float32_problem()
    inner = [in1, in2][:inner_steps]
    cfg = dict(first_order=first_order, meta_sgd=True, later_step_scale=0.5)
    loop = MAMLTRPO(policy, config(task_batching="loop", **cfg))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # distinct step sizes per entry, so a mixed-up index shows
        for a in loop.step_sizes.values():
            a.mul_(0.5 + torch.rand(a.shape, generator=g))
    theta = loop.meta_parameters()
    # the loop's first order holds each inner gradient constant but still differentiates w.r.t. alpha
    loss, kl, _ = loop.objective(inner, valid, None, create_graph=not first_order)
    grad = flat_grad(loss, theta, retain_graph=True)
    hvp = hessian_vector_product(kl, theta, 1e-3)
    batched = MAMLTRPO(policy, config(task_batching="batched", **cfg))
    batched.step_sizes = loop.step_sizes
    outer = BatchedOuterStep(policy, batched._batched_step_sizes(), inner, valid, second_order=not first_order,
                             later_step_scale=0.5)  # fmt: skip
    assert outer.learned_step_sizes
    loss_b, grad_b = outer.loss_and_gradient()
    assert loss_b == pytest.approx(loss.item(), rel=1e-5)
    n_theta = sum(p.numel() for p in policy.parameters())
    assert grad_b.shape == grad.shape == (2 * n_theta,)
    torch.testing.assert_close(grad_b, grad, rtol=1e-5, atol=1e-6)
    for seed in range(2):
        v = torch.randn(grad.shape, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(outer.kl_hvp(v, 1e-3), hvp(v), rtol=1e-5, atol=1e-6)
    if inner_steps == 0:
        assert torch.count_nonzero(grad_b[n_theta:]) == 0
    else:
        assert torch.count_nonzero(grad_b[n_theta:]) > 0


@pytest.mark.parametrize("meta_sgd", [False, True])
def test_batched_meta_step_takes_the_loops_step(meta_sgd: bool) -> None:
    # float64: conjugate gradient on this tiny, nearly singular KL Hessian amplifies float32 rounding
    policy, inner, _, valid = float32_problem()
    policy = policy.double()
    inner, valid = (TaskTensors(*(x.double() for x in d)) for d in (inner, valid))
    results = {}
    for batching in ("loop", "batched"):
        algo = MAMLTRPO(copy.deepcopy(policy), config(task_batching=batching, max_kl=1e-3, meta_sgd=meta_sgd))
        stats = algo.meta_step([inner], valid)
        results[batching] = (stats, flatten(algo.meta_parameters()).detach())
    (s_loop, p_loop), (s_b, p_b) = results["loop"], results["batched"]
    assert s_b["ls_tries"] == s_loop["ls_tries"] and s_b["accepted"] == 1.0
    for key in ("loss_before", "loss_after", "kl", "grad_norm"):
        assert s_b[key] == pytest.approx(s_loop[key], rel=1e-4, abs=1e-7), key
    torch.testing.assert_close(p_b, p_loop, rtol=1e-5, atol=1e-6)


def test_hvp_subsample_uses_a_renormalised_subset_of_the_validation_and_inner_steps() -> None:
    policy, inner, _, valid = float32_problem()
    sub = subsample_steps(valid, 0.5, torch.Generator().manual_seed(0))
    assert sub.obs.shape[1] == 20
    torch.testing.assert_close(sub.weights.sum(1), torch.ones(3))
    sizes = {n: 0.3 for n in policy.params()}
    outer = BatchedOuterStep(policy, sizes, [inner], valid, second_order=True, hvp_data=sub)
    on_subset = BatchedOuterStep(policy, sizes, [inner], sub, second_order=True)
    v = torch.randn(outer.loss_and_gradient()[1].shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(outer.kl_hvp(v), on_subset.kl_hvp(v))
    torch.testing.assert_close(outer.loss_and_gradient()[1], BatchedOuterStep(
        policy, sizes, [inner], valid, second_order=True).loss_and_gradient()[1])  # fmt: skip
    # A = I - alpha H_in from a subset of the inner steps: the same product when the "subset" is
    # the whole batch; otherwise a different, still symmetric positive semi-definite, matrix
    same = BatchedOuterStep(
        policy, sizes, [inner], valid, second_order=True, hvp_data=sub, hvp_inner_data=[inner]
    )
    torch.testing.assert_close(same.kl_hvp(v), outer.kl_hvp(v))
    sub_in = subsample_steps(inner, 0.5, torch.Generator().manual_seed(2))
    both = BatchedOuterStep(
        policy, sizes, [inner], valid, second_order=True, hvp_data=sub, hvp_inner_data=[sub_in]
    )
    u = torch.randn(v.shape, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(both.kl_hvp(v), outer.kl_hvp(v))
    torch.testing.assert_close(u @ both.kl_hvp(v), v @ both.kl_hvp(u), rtol=1e-4, atol=1e-7)
    assert v @ both.kl_hvp(v) >= 0 and u @ both.kl_hvp(u) >= 0
    torch.testing.assert_close(both.loss_and_gradient()[1], outer.loss_and_gradient()[1])
    algo = MAMLTRPO(policy, config(task_batching="batched", hvp_subsample=0.2, max_kl=1e-3))
    assert algo.meta_step([inner], valid, torch.Generator().manual_seed(0))["kl"] <= 1e-3
    with pytest.raises(ValueError, match="hvp_subsample"):
        config(task_batching="loop", hvp_subsample=0.2)  # needs task_batching="batched"


def test_meta_sgd_kl_products_on_subsampled_steps_stay_symmetric_positive_semi_definite() -> None:
    """hvp_subsample with Meta-SGD: the subset's products are the full products when the subset is
    the whole batch, and otherwise a symmetric positive semi-definite matrix over (theta, alpha)."""
    policy, inner, _, valid = float32_problem()
    sizes = {n: torch.full_like(p, 0.3) for n, p in policy.params().items()}
    full = BatchedOuterStep(policy, sizes, [inner], valid, second_order=True)
    same = BatchedOuterStep(policy, sizes, [inner], valid, second_order=True, hvp_inner_data=[inner])
    sub = BatchedOuterStep(
        policy, sizes, [inner], valid, second_order=True,
        hvp_data=subsample_steps(valid, 0.5, torch.Generator().manual_seed(0)),
        hvp_inner_data=[subsample_steps(inner, 0.5, torch.Generator().manual_seed(1))],
    )  # fmt: skip
    g = torch.Generator().manual_seed(2)
    v, u = (torch.randn(full.loss_and_gradient()[1].shape, generator=g) for _ in range(2))
    torch.testing.assert_close(same.kl_hvp(v), full.kl_hvp(v))
    assert not torch.allclose(sub.kl_hvp(v), full.kl_hvp(v))
    torch.testing.assert_close(u @ sub.kl_hvp(v), v @ sub.kl_hvp(u), rtol=1e-4, atol=1e-7)
    assert v @ sub.kl_hvp(v) >= 0 and u @ sub.kl_hvp(u) >= 0
    algo = MAMLTRPO(policy, config(task_batching="batched", meta_sgd=True, hvp_subsample=0.5, max_kl=1e-3))
    stats = algo.meta_step([inner], valid, torch.Generator().manual_seed(0))
    assert stats["accepted"] == 1.0 and stats["kl"] <= 1e-3
    with pytest.raises(ValueError, match="all numbers or all tensors"):
        BatchedOuterStep(policy, {**sizes, "log_std": 0.3}, [inner], valid, second_order=True)


@pytest.mark.parametrize("hvp_subsample", [1.0, 0.5])
def test_meta_step_reusing_the_iterations_inner_steps_takes_the_same_step(hvp_subsample: float) -> None:
    """The inner steps taken to sample (their graphs kept) give the outer step it would recompute."""
    policy, in1, in2, valid = float32_problem()
    results = []
    for reuse in (False, True):
        algo = MAMLTRPO(copy.deepcopy(policy), config(task_batching="batched", hvp_subsample=hvp_subsample))
        inner = algo.inner_steps(valid.obs.shape[0])
        assert inner is not None
        adapted = [inner.step(in1), inner.step(in2)]
        expected = algo.adapted_params([in1, in2], valid.obs.shape[0], create_graph=False)
        for n, p in expected.items():
            torch.testing.assert_close(adapted[-1][n], p)
        stats = algo.meta_step([in1, in2], valid, torch.Generator().manual_seed(0), inner if reuse else None)
        results.append((stats, flatten(algo.meta_parameters()).detach()))
    (s0, p0), (s1, p1) = results
    assert s1 == s0
    assert torch.equal(p1, p0)
    algo = MAMLTRPO(copy.deepcopy(policy), config(task_batching="batched"))
    one_step = algo.inner_steps(valid.obs.shape[0])
    assert one_step is not None
    one_step.step(in1)
    with pytest.raises(ValueError, match="inner has 1 steps"):
        algo.meta_step([in1, in2], valid, None, one_step)
    assert MAMLTRPO(policy, config(task_batching="loop")).inner_steps(3) is None


def test_meta_sgd_learns_step_sizes() -> None:
    policy, inner, valid = tiny_problem()
    algo = MAMLTRPO(policy, config(meta_sgd=True))
    before = {n: v.detach().clone() for n, v in algo.step_sizes.items()}
    stats = algo.meta_step([inner], valid)
    assert stats["accepted"] == 1.0
    assert any(not torch.equal(before[n], algo.step_sizes[n]) for n in before)


# ------------------------------------------------------------------------------- baseline and GAE
def test_linear_baseline_fit_matches_numpy_least_squares() -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(3, 7, 2))
    mask = np.ones((3, 7), dtype=bool)
    mask[1, 5:] = False
    feats = baseline_features(obs).reshape(21, -1)
    y = rng.normal(size=21)
    m = mask.reshape(-1)
    reg = 1e-3
    coef = fit_linear_baseline(feats, y, m, reg=reg)
    F = feats.shape[1]
    a = np.vstack([feats[m], np.sqrt(reg) * np.eye(F)])
    b = np.concatenate([y[m], np.zeros(F)])
    np.testing.assert_allclose(coef, np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-8, atol=1e-10)
    # the features: obs, obs^2, t/100 and its powers, ones
    np.testing.assert_allclose(
        baseline_features(obs)[0, 3], [*obs[0, 3], *obs[0, 3] ** 2, 0.03, 0.0009, 0.000027, 1]
    )


def test_gae_against_a_hand_computation() -> None:
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 0.0]])
    values = np.array([[0.5, 1.0, 1.5], [2.0, 1.0, 0.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    terms = np.array([[False, False, False], [False, True, False]])  # episode 0 truncated, 1 terminated
    final_values = np.array([4.0, 9.0])
    adv = gae(rewards, values, mask, terms, final_values, gamma, lam)
    d0 = [1 + 0.9 * 1.0 - 0.5, 2 + 0.9 * 1.5 - 1.0, 3 + 0.9 * 4.0 - 1.5]  # bootstrap 4.0 after truncation
    a02 = d0[2]
    a01 = d0[1] + 0.72 * a02
    a00 = d0[0] + 0.72 * a01
    d1 = [1 + 0.9 * 1.0 - 2.0, -1 + 0.0 - 1.0]  # no bootstrap after termination
    a11 = d1[1]
    a10 = d1[0] + 0.72 * a11
    np.testing.assert_allclose(adv, [[a00, a01, a02], [a10, a11, 0.0]], rtol=1e-12)
    # lambda = 1 with zero values: discounted returns (plus the bootstrap for the truncated one)
    ret = discounted_returns(rewards, mask, gamma)
    np.testing.assert_allclose(ret[1], [1 - 0.9, -1, 0])


# ----------------------------------------------------------------------------- policies and config
def test_per_task_sampler_matches_per_subenv_forward() -> None:
    policy = make_policy(metarl.make_family("Navigation2D-v0").make_env().observation_space,
                         metarl.make_family("Navigation2D-v0").make_env().action_space, (8,), "relu",
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    K, ept = 3, 2
    params = {
        n: p.detach() + 0.1 * torch.arange(K).view(K, *[1] * p.dim()) for n, p in policy.named_parameters()
    }
    obs = np.random.default_rng(0).normal(size=(K * ept, 2)).astype(np.float32)
    sampler = PolicySampler(
        policy, params, torch.Generator().manual_seed(0), envs_per_task=ept, deterministic=True
    )
    actions = sampler(obs)
    for i in range(K * ept):
        mean = torch.func.functional_call(
            policy, {n: p[i // ept] for n, p in params.items()}, (torch.tensor(obs[i]),)
        )[0]
        np.testing.assert_allclose(actions[i], mean.numpy(), rtol=1e-6, atol=1e-6)


def test_later_meta_test_steps_use_the_scaled_step_size() -> None:
    """later_step_scale: the first meta-test step has size alpha, every later one alpha * scale."""
    from metarl.agents.advantages import task_advantages
    from metarl.agents.maml_trpo import MAMLLearner, task_tensors
    from metarl.rollout import collect

    fam = metarl.make_family("Navigation2D-v0")
    env = fam.make_env()
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh",
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    cfg = config(inner_lr=0.3, later_step_scale=0.5)
    vec = metarl.make_vec(fam, fam.train[:2], envs_per_task=2)
    start = {n: p.detach().expand(2, *p.shape) for n, p in policy.named_parameters()}
    episodes = [
        collect(
            vec, PolicySampler(policy, start, torch.Generator().manual_seed(i), envs_per_task=2), 4, seed=i
        )
        for i in range(2)
    ]
    data = [
        task_tensors(e, task_advantages(e, cfg.gamma, cfg.gae_lambda, cfg.baseline_reg)) for e in episodes
    ]

    def after_two_steps(learner: MAMLLearner) -> dict[str, torch.Tensor]:
        adaptation = learner.begin_adaptation(vec, seed=0)
        for e in episodes:
            adaptation.update(e)
        return adaptation.params

    def by_hand(second: float) -> dict[str, torch.Tensor]:
        params = {n: p.detach().requires_grad_(True) for n, p in start.items()}
        one = adapt(policy, params, {n: 0.3 for n in params}, [data[0]], create_graph=False)
        one = {n: p.detach().requires_grad_(True) for n, p in one.items()}
        return adapt(policy, one, {n: second for n in params}, [data[1]], create_graph=False)

    scaled = after_two_steps(MAMLLearner(policy, {n: 0.3 for n in start}, cfg))
    plain = after_two_steps(MAMLLearner(policy, {n: 0.3 for n in start}, cfg, later_step_scale=1.0))
    for n, p in by_hand(0.15).items():
        torch.testing.assert_close(scaled[n], p.detach())
    for n, p in by_hand(0.3).items():
        torch.testing.assert_close(plain[n], p.detach())
    assert not torch.allclose(scaled["mlp.0.weight"], plain["mlp.0.weight"])
    with pytest.raises(ValueError, match="later_step_scale"):
        config(later_step_scale=0.0)
    with pytest.raises(ValueError, match="later_step_scale"):
        MAMLLearner(policy, {n: 0.3 for n in start}, cfg, later_step_scale=-1.0)
    vec.close()


def test_config_rejects_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="bogus"):
        MAMLTRPOConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="meta_batch_size"):
        MAMLTRPOConfig(meta_batch_size=-3)
    with pytest.raises(ValueError, match="hidden_sizes"):
        MAMLTRPOConfig(hidden_sizes=(64, -1))
    assert MAMLTRPOConfig.from_dict(json.loads(MAMLTRPOConfig().to_json())) == MAMLTRPOConfig()


# ---------------------------------------------------------------- checkpoints, resume, determinism
def tiny_config(tmp_path: object, **kw: object) -> MAMLTRPOConfig:
    base = dict(meta_batch_size=3, episodes_per_task=2, hidden_sizes=(8, 8), meta_iterations=2,
                run_dir=str(tmp_path), checkpoint_every=1, keep_checkpoints=2)  # fmt: skip
    return MAMLTRPOConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_save_load_round_trip_gives_identical_parameters_and_actions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(tmp_path, meta_sgd=True)
    algo, gen = build(cfg)
    family = metarl.make_family(cfg.family)
    vec = metarl.make_vec(family, family.train[:3], envs_per_task=2)
    meta_iteration(algo, vec, np.random.default_rng(0), gen)
    path = save_checkpoint(
        tmp_path / "ck", 1, checkpoint_payload(algo, family, 1, 0, np.random.default_rng(0), gen)
    )
    loaded = load_algorithm(path)
    for (n, a), (_, b) in zip(
        algo.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    for n in algo.step_sizes:
        assert torch.equal(algo.step_sizes[n], loaded.step_sizes[n])
    obs = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    act = [
        PolicySampler(a.policy, a.policy.params(), torch.Generator().manual_seed(5))(obs)
        for a in (algo, loaded)
    ]
    np.testing.assert_array_equal(act[0], act[1])


def test_checkpoints_keep_last_k_and_resume_skips_corrupt_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, 5):
        save_checkpoint(tmp_path, i, {"format": "x", "i": torch.tensor(i)}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_0000003.pt", "ckpt_0000004.pt"]
    (tmp_path / "ckpt_0000004.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint.*ckpt_0000004\.pt"):
        path, data = load_latest_checkpoint(tmp_path)  # type: ignore[misc]
    assert path.name == "ckpt_0000003.pt" and int(data["i"]) == 3


def test_same_seed_twice_is_bit_identical_after_two_iterations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = train(tiny_config(tmp_path / "a"), progress=False)
    b = train(tiny_config(tmp_path / "b"), progress=False)
    for (n, x), (_, y) in zip(a.policy.state_dict().items(), b.policy.state_dict().items(), strict=True):
        assert torch.equal(x, y), n


def test_resume_continues_the_same_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = train(tiny_config(tmp_path / "a"), progress=False)
    # one iteration, then resume for the second: the same parameters as the uninterrupted run
    train(tiny_config(tmp_path / "c", meta_iterations=1), progress=False)
    c = train(tiny_config(tmp_path / "c"), resume=True, progress=False)
    for (n, x), (_, y) in zip(a.policy.state_dict().items(), c.policy.state_dict().items(), strict=True):
        assert torch.equal(x, y), n


def test_validation_meta_tests_keep_the_best_and_do_not_change_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plain = train(tiny_config(tmp_path / "plain", meta_iterations=3), progress=False)
    validated = train(tiny_config(tmp_path / "val", meta_iterations=3, eval_every=1), progress=False)
    for (n, x), (_, y) in zip(
        plain.policy.state_dict().items(), validated.policy.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), n  # the validation episodes draw nothing from the training streams
    assert not (tmp_path / "plain" / "validation.csv").exists()
    with (tmp_path / "val" / "validation.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    after = [float(r["return_step1"]) for r in rows]
    best = load_checkpoint(tmp_path / "val" / "best.pt")
    assert best["iteration"] == 1 + int(np.argmax(after))
    assert best["validation_return"] == max(after)
    # best.pt is an ordinary checkpoint: it reloads, and re-validating it gives the logged scores
    algo = load_algorithm(tmp_path / "val" / "best.pt")
    family = metarl.make_family(algo.config.family)
    assert validate(algo, family) == pytest.approx(
        [float(rows[best["iteration"] - 1][f"return_step{k}"]) for k in range(2)], abs=1e-9
    )
    with pytest.raises(ValueError, match="eval_every"):
        tiny_config(tmp_path, eval_every=-1)


def test_cli_train_and_load_learner_meta_test_on_navigation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(
        json.dumps({"meta_iterations": 1, "meta_batch_size": 2, "episodes_per_task": 2, "hidden_sizes": [8]})
    )
    run_dir = cli_train("Navigation2D-v0", cfg_file, False, tmp_path / "run", 3)
    learner = load_learner(run_dir)
    assert learner.config.seed == 3 and learner.config.hidden_sizes == (8,)
    result = metarl.evaluate(learner, "Navigation2D-v0", n_tasks=2, rounds=3, episodes_per_round=2)
    assert result.returns.shape == (2, 3) and np.isfinite(result.returns).all()
    cfg_file.write_text(json.dumps({"meta_iteration": 1}))
    with pytest.raises(ValueError, match="meta_iteration"):
        cli_train("Navigation2D-v0", cfg_file, False, tmp_path / "run2", None)


# --------------------------------------------------------------------- normalised action boxes
def test_normalized_actions_parametrise_the_gaussian_in_units_of_the_box() -> None:
    low, high = np.array([-0.1, 0.0]), np.array([0.1, 2.0])
    scaled = GaussianMLPPolicy(3, 2, (8,), "tanh", init_std=0.5, action_bounds=(low, high))
    plain = GaussianMLPPolicy(3, 2, (8,), "tanh", init_std=0.5)
    plain.load_state_dict(scaled.state_dict())  # same parameters, no scaling
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    (m, ls), (m0, ls0) = scaled(obs), plain(obs)
    half, center = torch.tensor([0.1, 1.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(m, center + half * m0)
    torch.testing.assert_close(ls, ls0 + torch.log(half))
    # the log-density of an environment action is the normalised one minus log|half| (a constant)
    acts = torch.randn(5, 2, generator=torch.Generator().manual_seed(1)) * half + center
    torch.testing.assert_close(
        scaled.log_prob((m, ls), acts),
        plain.log_prob((m0, ls0), (acts - center) / half) - torch.log(half).sum(),
    )
    # so the REINFORCE gradient is the normalised-space one (rllab's normalize(env))
    g1 = torch.autograd.grad(scaled.log_prob(scaled(obs), acts).sum(), list(scaled.parameters()))
    g0 = torch.autograd.grad(
        plain.log_prob(plain(obs), (acts - center) / half).sum(), list(plain.parameters())
    )
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b)
    params = {n: p.detach().expand(4, *p.shape) for n, p in scaled.named_parameters()}
    for a, b in zip(batched_forward(scaled, params, obs.expand(4, 5, 3)), scaled(obs), strict=True):
        torch.testing.assert_close(a, b.expand(4, 5, 2))


def test_normalize_actions_needs_a_bounded_box_and_reaches_sampler_workers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gymnasium as gym

    from metarl.agents.policies import TaskPolicyFactory

    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,))
    with pytest.raises(ValueError, match="bounded"):
        make_policy(gym.spaces.Box(-1, 1, (3,)), unbounded, (8,), normalize_actions=True)
    cfg = tiny_config(tmp_path, normalize_actions=True, meta_iterations=1)
    algo, _ = build(cfg)
    assert isinstance(algo.policy, GaussianMLPPolicy) and algo.policy.action_half is not None
    torch.testing.assert_close(algo.policy.action_half, torch.full((2,), 0.1))
    env = metarl.make_family(cfg.family).make_env()

    class Context:  # what a sampler worker passes to the factory
        observation_space, action_space = env.observation_space, env.action_space
        envs_per_task, task_indices = 1, [0]

        @staticmethod
        def task_seeds() -> list[int]:
            return [0]

    sampler = TaskPolicyFactory((8, 8), "tanh", normalize_actions=True)(
        {n: p.detach() for n, p in algo.policy.named_parameters()}, Context()
    )
    assert sampler.policy.action_half is not None
    torch.testing.assert_close(sampler.policy.action_half, algo.policy.action_half)
    train(cfg, progress=False)  # trains end to end


def test_optim_threads_apply_to_the_updates_and_are_restored(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from metarl.agents import maml_trpo

    seen: list[int] = []
    real = maml_trpo.MAMLTRPO.meta_step

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(maml_trpo.MAMLTRPO, "meta_step", spy)
    before = torch.get_num_threads()
    train(tiny_config(tmp_path, meta_iterations=1, optim_threads=2), progress=False)
    assert seen == [2] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="optim_threads"):
        tiny_config(tmp_path, optim_threads=0)


class _Constant:
    """A policy that always asks for ``value`` in every action dimension."""

    def __init__(self, value: float, clip_actions: bool) -> None:
        self.value, self.clip_actions = value, clip_actions

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return np.full((observations.shape[0], 6), self.value, dtype=np.float32)


@pytest.mark.parametrize("clip", [False, True])
def test_clip_actions_steps_the_clipped_action_and_records_the_sampled_one(clip: bool) -> None:
    family = metarl.make_family("HalfCheetahVel-v0", max_episode_steps=3)
    vec = metarl.make_vec(family, family.train[:1], envs_per_task=1)
    batch = metarl.collect(vec, _Constant(3.0, clip), 1, seed=0)
    np.testing.assert_array_equal(batch.actions[batch.mask], 3.0)  # what the policy sampled
    # HalfCheetahVel's control cost is 0.05 * sum(a^2) of the action the env stepped
    ref_env = family.make_env(family.train[0])
    ref_env.reset(seed=0)
    stepped = np.full(6, 1.0 if clip else 3.0, dtype=np.float32)
    expected = [float(ref_env.step(stepped)[1]) for _ in range(3)]
    np.testing.assert_allclose(batch.rewards[0, :3], expected, rtol=0, atol=1e-9)
    vec.close()


def test_clip_actions_defaults_to_on_but_old_saved_configs_load_without_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert MAMLTRPOConfig().clip_actions is True
    saved = tiny_config(tmp_path).to_dict()
    del saved["clip_actions"]  # a config written before the option existed
    assert MAMLTRPOConfig.from_saved(saved).clip_actions is False
    assert MAMLTRPOConfig.from_dict(saved).clip_actions is True
    with pytest.raises(ValueError, match="clip_actions"):
        MAMLTRPOConfig(clip_actions="yes")  # type: ignore[arg-type]


def test_resume_refuses_a_run_sampled_with_other_clipping(tmp_path) -> None:  # type: ignore[no-untyped-def]
    train(tiny_config(tmp_path, meta_iterations=1, clip_actions=False), progress=False)
    with pytest.raises(ValueError, match=r"clip_actions=False.*clip_actions=True"):
        train(tiny_config(tmp_path), resume=True, progress=False)


def test_bench_maml_train_command_names_the_runs_saved_config(tmp_path, script_module) -> None:  # type: ignore[no-untyped-def]
    bench = script_module("bench_maml")
    run = tmp_path / "run"
    config = tiny_config(run, meta_iterations=1, eval_every=1, nonlinearity="relu")
    train(config, progress=False)
    want = f"metarl train maml-trpo --family Navigation2D-v0 --config {run / 'config.json'}"
    ckpt = next((run / "checkpoints").glob("ckpt_*.pt"))
    assert bench._train_command("Navigation2D-v0", str(run), "default") == want
    assert bench._train_command("Navigation2D-v0", str(ckpt), "default") == want  # a selected checkpoint
    assert bench._train_command("Navigation2D-v0", str(run / "best.pt"), "default") == want
    assert bench._train_command("Navigation2D-v0", str(tmp_path / "missing"), "default") == "default"
    # the saved file holds every setting: it rebuilds the run's config exactly
    assert MAMLTRPOConfig.from_dict(json.loads((run / "config.json").read_text())) == config


def test_bench_maml_readme_pairs_each_maml_learner_with_each_baseline(script_module) -> None:
    bench = script_module("bench_maml")
    fam = metarl.make_family("Navigation2D-v0")
    results = [
        metarl.evaluate(learner, fam, n_tasks=4, rounds=2, episodes_per_round=1, seed=3)
        for learner in (Navigation2DTrilateration(), RandomLearner(), Navigation2DOracle())
    ]
    lines = bench._paired_lines(results[:1], results[1:])
    rows = [line for line in lines if line.startswith("| trilateration minus")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| trilateration minus random",
        "| trilateration minus oracle",
    ]
    want = results[0].paired_difference(results[2])[1]
    assert f"{want['mean']:+.1f} [{want['ci_low']:+.1f}, {want['ci_high']:+.1f}]" in rows[1]
    assert bench._paired_lines(results[:1], []) == []
    two = [
        line.split(" | ")[0] for line in bench._paired_lines(results[:2], results[2:]) if " minus " in line
    ]
    assert two == ["| trilateration minus random", "| trilateration minus oracle", "| random minus oracle"]
    assert len([line for line in bench._paired_lines(results[:2], []) if " minus " in line]) == 1


def test_bench_maml_names_every_maml_run_distinctly(script_module) -> None:
    """Results are keyed by learner name: two runs with the same training settings once shared a
    name and one of them was dropped from results.json."""
    import typer

    bench = script_module("bench_maml")
    plain = {"inner_steps": 1, "inner_lr": 0.1}
    assert bench.maml_learner_names([plain], ["runs/a"]) == ["maml-trpo"]
    assert bench.maml_learner_names([plain, {**plain, "meta_sgd": True}], ["runs/a", "runs/b"]) == [
        "maml-trpo (1-step training, inner step 0.1)",
        "maml-trpo (1-step training, inner step 0.1, Meta-SGD)",
    ]
    assert bench.maml_learner_names(
        [plain, plain], ["runs/seed0", "x/seed1/checkpoints/ckpt_0000010.pt"]
    ) == [
        "maml-trpo (1-step training, inner step 0.1, seed0)",
        "maml-trpo (1-step training, inner step 0.1, seed1 ckpt_0000010.pt)",
    ]
    with pytest.raises(typer.BadParameter, match="same run twice"):
        bench.maml_learner_names([plain, plain], ["runs/a", "runs/a"])


def test_bench_maml_select_scores_the_best_logged_checkpoints_on_validation(tmp_path, script_module) -> None:  # type: ignore[no-untyped-def]
    import typer

    bench = script_module("bench_maml")
    run = tmp_path / "run"
    train(tiny_config(run, meta_iterations=4, eval_every=1, keep_checkpoints=4), progress=False)
    with (run / "validation.csv").open() as fh:
        logged = {int(r["iteration"]): float(r["return_step1"]) for r in csv.DictReader(fh)}
    top2 = sorted(sorted(logged, key=lambda it: -logged[it])[:2])
    kw = dict(
        family="Navigation2D-v0", steps=2, top=2, eval_seed=1, later_step_scale=0.5, episodes_per_step=2
    )
    bench.select(run=[str(run)], out=str(tmp_path / "sel"), **kw)
    data = json.loads((tmp_path / "sel.json").read_text())
    rows = data["candidates"]
    assert sorted(r["iteration"] for r in rows) == top2  # the two best by the logged validation return
    assert all(r["logged_validation_return"] == logged[r["iteration"]] for r in rows)
    assert all(
        len(r["returns"]) == 3 and r["score"] == pytest.approx(np.mean(r["returns"][1:])) for r in rows
    )
    assert data["selected"] == max(rows, key=lambda r: r["score"])
    # the winner reloads the way evaluate loads a checkpoint file
    _, info = bench._load(data["selected"]["checkpoint"])
    assert info["iteration"] == data["selected"]["iteration"] and (tmp_path / "sel.md").exists()
    with pytest.raises(typer.BadParameter, match=r"--run .*missing: no checkpoints"):
        bench.select(run=[str(run), str(tmp_path / "missing")], out=str(tmp_path / "sel2"), **kw)
