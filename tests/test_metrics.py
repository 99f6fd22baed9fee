"""Adaptation-speed metrics against hand-computed answers."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from metarl.evaluation import EvalResult
from metarl.metrics import (
    experience,
    experience_to_reach,
    family_aggregate,
    interval_estimates,
    learner_metrics,
    normalized_scores,
    reference_returns,
    rounds_to_reach,
)


def _result(
    returns: list[list[float]], *, unit: str = "gradient step", seed: int = 0, learner: str = "x"
) -> EvalResult:
    returns_arr = np.asarray(returns, dtype=float)
    n, rounds = returns_arr.shape
    steps = np.tile(np.arange(rounds) * 50.0, (n, 1))  # every round: 50 env steps per task
    return EvalResult(
        family_id="Navigation2D-v0",
        split="test",
        learner=learner,
        adaptation_unit=unit,
        seed=seed,
        episodes_per_round=5,
        task_ids=[f"t{i}" for i in range(n)],
        returns=returns_arr,
        env_steps_before=steps,
        adapt_seconds_per_task=np.arange(rounds, dtype=float) * 0.5,
    )


def test_experience_counts_episodes_and_steps_per_session() -> None:
    grad = _result([[0, 1, 2]])
    episodes, steps = experience(grad)
    np.testing.assert_array_equal(episodes, [0, 5, 10])
    np.testing.assert_array_equal(steps, [[0, 50, 100]])
    # Context learners: each of the 5 sub-envs is a trial that has seen r episodes, 10 steps each.
    ctx = _result([[0, 1, 2]], unit="episode")
    episodes, steps = experience(ctx)
    np.testing.assert_array_equal(episodes, [0, 1, 2])
    np.testing.assert_array_equal(steps, [[0, 10, 20]])


def test_normalized_scores_by_hand() -> None:
    scores = normalized_scores(
        np.array([-50.0, -10.0, 0.0]), np.array([-100.0, -100.0, 5.0]), np.array([0.0, 0.0, 5.0])
    )
    # (-50 + 100) / 100 = 0.5; (-10 + 100) / 100 = 0.9; oracle == random -> undefined.
    np.testing.assert_allclose(scores[:2], [0.5, 0.9])
    assert np.isnan(scores[2])


def test_rounds_and_experience_to_reach_by_hand() -> None:
    np.testing.assert_array_equal(
        rounds_to_reach(np.array([[1, 5, 9], [0, 0, 0]]), np.array([5, 1])), [1, -1]
    )
    res = _result([[-100, -40, -20, -10], [-100, -100, -100, -100]])
    # Task 0: own final -10, start (random) -100 -> level -100 + 0.9 * 90 = -19 -> first at round 3.
    own = experience_to_reach(res, res.returns[:, -1], np.array([-100.0, -100.0]))
    np.testing.assert_array_equal(own["episodes"], [15, 0])  # task 1: final == start, reached at once
    np.testing.assert_array_equal(own["env_steps"], [150, 0])
    # Towards an oracle at 0: level -10 -> round 3 for task 0, never for task 1.
    orc = experience_to_reach(res, np.zeros(2), np.full(2, -100.0))
    assert orc["episodes"][0] == 15 and np.isnan(orc["episodes"][1])
    half = experience_to_reach(res, np.zeros(2), np.full(2, -100.0), fraction=0.5)
    assert half["episodes"][0] == 5  # level -50 reached at round 1


def test_interval_estimates_mean_and_iqm_by_hand() -> None:
    scores = np.arange(1.0, 9.0).reshape(2, 4)  # 8 values 1..8
    est = interval_estimates(scores, reps=200, seed=0)
    assert est["mean"].estimate == pytest.approx(4.5)
    assert est["iqm"].estimate == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    skewed = np.array([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0]])
    est = interval_estimates(skewed, reps=200, seed=0)
    assert est["mean"].estimate == pytest.approx(105.0 / 8)
    assert est["iqm"].estimate == pytest.approx(1.0)  # the outlier and the zeros are trimmed
    for interval in est.values():
        assert interval.low <= interval.estimate <= interval.high
    # Deterministic with the same seed, zero width for constant scores, NaN columns dropped.
    assert interval_estimates(skewed, reps=200, seed=3) == interval_estimates(skewed, reps=200, seed=3)
    const = interval_estimates(np.full((2, 3), 7.0))
    assert const["iqm"].low == const["iqm"].high == 7.0
    with_nan = interval_estimates(np.array([[1.0, np.nan], [3.0, 5.0]]), reps=100)
    assert with_nan["mean"].estimate == pytest.approx(2.0)


def test_learner_metrics_end_to_end_by_hand() -> None:
    learner = [_result([[-100, -40, -10], [-60, -30, -20]], seed=s) for s in (0, 1)]
    random = [_result([[-100, -100, -100], [-80, -80, -80]], learner="random")]
    oracle = [_result([[0, 0, 0], [-20, -20, -20]], learner="oracle")]
    np.testing.assert_array_equal(reference_returns(random, learner[0].task_ids), [-100, -80])
    m = learner_metrics(learner, random=random, oracle=oracle, reps=100)
    assert m["episodes"] == [0, 5, 10]
    assert m["returns"][0]["mean"]["estimate"] == pytest.approx(-80.0)
    # Normalised: task 0 -> 0, 0.6, 0.9; task 1 -> 1/3, 5/6, 1.
    assert m["normalized"][2]["mean"]["estimate"] == pytest.approx(0.95)
    assert m["normalized"][0]["mean"]["estimate"] == pytest.approx(1 / 6)
    # To 90% of the oracle: task 0 level -10 at round 2 (10 episodes); task 1 level -26 at round 2.
    assert m["to_fraction_of_oracle"]["episodes"]["mean"] == pytest.approx(10.0)
    assert m["to_fraction_of_oracle"]["reached"] == 4
    assert m["adapt_seconds_per_task"] == [0.0, 0.5, 1.0]
    agg = family_aggregate({"A": np.array([0.5, 0.7]), "B": np.array([0.1, 0.3])}, reps=100)
    assert agg["mean"]["estimate"] == pytest.approx(0.4)


def test_references_must_use_the_same_tasks() -> None:
    other = _result([[0, 0]])
    other.task_ids = ["elsewhere"]
    with pytest.raises(ValueError, match="same held-out tasks"):
        reference_returns([other], ["t0"])


def test_interval_estimates_leave_the_global_rng_alone() -> None:
    # cast: get_state() returns the legacy tuple (NumPy's stubs type the no-argument call as a dict)
    before = cast("tuple[Any, ...]", np.random.get_state())[1].copy()  # noqa: NPY002
    interval_estimates(np.arange(12.0).reshape(3, 4), reps=50, seed=1)
    np.testing.assert_array_equal(cast("tuple[Any, ...]", np.random.get_state())[1], before)  # noqa: NPY002
