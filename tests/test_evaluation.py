"""The meta-test runner, driven by scripted learners whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import metarl
from metarl import EvalResult, bootstrap_ci
from metarl.agents.scripted import Navigation2DOracle, Navigation2DTrilateration, RandomLearner, trilaterate
from metarl.evaluation import AdaptationUnit


def oracle_return(goal: np.ndarray) -> float:
    pos, total = np.zeros(2), 0.0
    for _ in range(100):
        pos = pos + np.clip(goal - pos, -0.1, 0.1)
        d = float(np.linalg.norm(pos - goal))
        total -= d
        if d < 0.01:
            break
    return total


def test_trilateration() -> None:
    goal = np.array([0.3, -0.2])
    points = np.array([[0.1, 0.0], [0.0, 0.1], [-0.1, 0.0]])
    np.testing.assert_allclose(trilaterate(points, np.linalg.norm(points - goal, axis=1)), goal)


def test_scripted_learner_reaches_the_oracle_after_one_round() -> None:
    fam = metarl.make_family("Navigation2D-v0")
    res = metarl.evaluate(Navigation2DTrilateration(), fam, n_tasks=10, rounds=3, episodes_per_round=2)
    expected = np.array([oracle_return(t.array("goal")) for t in fam.test[:10]])
    np.testing.assert_allclose(res.returns[:, 1], expected, atol=1e-5)
    np.testing.assert_allclose(res.returns[:, 2], expected, atol=1e-5)
    assert (res.returns[:, 0] < expected - 1.0).all()
    assert res.episodes_before.tolist() == [0, 2, 4]
    assert res.env_steps_before[:, 1].tolist() == [200.0] * 10
    oracle = metarl.evaluate(Navigation2DOracle(), fam, n_tasks=10, rounds=1, episodes_per_round=1)
    np.testing.assert_allclose(oracle.returns[:, 0], expected, atol=1e-5)


def test_random_learner_is_reproducible_and_does_not_adapt() -> None:
    a = metarl.evaluate(RandomLearner(), "Navigation2D-v0", n_tasks=5, rounds=2, episodes_per_round=4, seed=3)
    b = metarl.evaluate(RandomLearner(), "Navigation2D-v0", n_tasks=5, rounds=2, episodes_per_round=4, seed=3)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert a.returns.mean() < -20


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=20))
    large = bootstrap_ci(rng.normal(size=2000))
    assert small[1] < small[0] < small[2]
    assert large[2] - large[1] < small[2] - small[1]
    assert bootstrap_ci(np.array([3.0])) == (3.0, 3.0, 3.0)


def _result(learner: str, returns: np.ndarray, task_ids: list[str] | None = None) -> EvalResult:
    n, rounds = returns.shape
    return EvalResult(
        family_id="Navigation2D-v0",
        split="test",
        learner=learner,
        adaptation_unit="gradient step",
        seed=0,
        episodes_per_round=1,
        task_ids=task_ids or [f"t{i}" for i in range(n)],
        returns=returns,
        env_steps_before=np.zeros((n, rounds)),
    )


def test_paired_difference_removes_the_spread_between_tasks() -> None:
    rng = np.random.default_rng(0)
    hardness = rng.normal(scale=10.0, size=(30, 1))  # shared by both learners
    noise = rng.normal(scale=0.1, size=(30, 2))
    a = _result("a", hardness + np.array([1.0, 3.0]) + noise)
    b = _result("b", hardness + np.array([1.0, 1.0]))
    rows = a.paired_difference(b)
    np.testing.assert_allclose([r["mean"] for r in rows], (a.returns - b.returns).mean(0))
    assert rows[0]["ci_low"] < 0.0 < rows[0]["ci_high"]  # no difference before adapting
    assert 1.9 < rows[1]["ci_low"] < rows[1]["mean"] < rows[1]["ci_high"] < 2.1
    # the unpaired intervals are ten times wider and overlap
    sa, sb = a.summary()[1], b.summary()[1]
    assert sa["ci_low"] < sb["ci_high"]
    assert sa["ci_high"] - sa["ci_low"] > 10 * (rows[1]["ci_high"] - rows[1]["ci_low"])


def test_paired_difference_needs_the_same_tasks_and_rounds() -> None:
    a = _result("a", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"same tasks: 'a' has Navigation2D-v0/test \(3 tasks\)"):
        a.paired_difference(_result("b", np.zeros((3, 2)), task_ids=["t0", "t1", "x"]))
    with pytest.raises(ValueError, match="same rounds: 'a' has 2, 'b' has 3"):
        a.paired_difference(_result("b", np.zeros((3, 3))))
    with pytest.raises(ValueError, match="defines no success"):
        a.paired_difference(a, metric="success")
    with pytest.raises(ValueError, match="metric must be 'returns' or 'success', got 'return'"):
        a.summary("return")


def test_result_json_round_trip_markdown_and_plot(tmp_path: Path) -> None:
    res = metarl.evaluate(
        Navigation2DTrilateration(), "Navigation2D-v0", n_tasks=4, rounds=2, episodes_per_round=1
    )
    path = tmp_path / "results.json"
    res.to_json(path)
    back = EvalResult.from_json(path)
    np.testing.assert_array_equal(back.returns, res.returns)
    assert back.task_ids == res.task_ids and back.summary() == res.summary()
    table = res.to_markdown()
    assert "| 1 | 1 |" in table and "95% CI" in table
    res.plot(tmp_path / "curve.png", others=[back])
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_bad_results_files_get_clear_errors(tmp_path: Path) -> None:
    res = metarl.evaluate(RandomLearner(), "Navigation2D-v0", n_tasks=2, rounds=1, episodes_per_round=1)
    data = res.to_dict()
    data["format_version"] = 99
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format version 99"):
        EvalResult.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        EvalResult.from_json(path)
    with pytest.raises(ValueError, match="cannot read results file"):
        EvalResult.from_json(tmp_path / "missing.json")


def test_evaluate_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"does not implement metarl\.MetaLearner"):
        metarl.evaluate(object(), "Navigation2D-v0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounds must be a positive int, got 0"):
        metarl.evaluate(RandomLearner(), "Navigation2D-v0", rounds=0)
    with pytest.raises(ValueError, match="n_tasks=99"):
        metarl.evaluate(RandomLearner(), "Navigation2D-v0", n_tasks=99)

    class Context(RandomLearner):
        adaptation_unit: AdaptationUnit = "episode"

    with pytest.raises(ValueError, match="must equal episodes_per_round"):
        metarl.evaluate(Context(), "Navigation2D-v0", episodes_per_round=2, envs_per_task=1)
