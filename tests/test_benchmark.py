"""The benchmark runner end to end: ``metarl benchmark --suite nav2d --quick``, resume, report, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metarl.benchmark import list_suites, load_suite
from metarl.cli import app

runner = CliRunner()
REQUIRED_SUITES = {"nav2d", "bandits", "tabular-mdp", "cheetah-vel", "cheetah-dir", "ml1-reach"}


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("metarl: error:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick nav2d run, from a directory where no trained checkpoint can match."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = runner.invoke(
            app, ["benchmark", "--suite", "nav2d", "--quick", "--out", str(out), "--no-progress"]
        )
    assert result.exit_code == 0, result.output
    return out


def _rerun(out: Path) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out.parent)
        result = runner.invoke(
            app, ["benchmark", "--suite", "nav2d", "--quick", "--out", str(out), "--no-progress"]
        )
    assert result.exit_code == 0, result.output
    return result.output


def test_shipped_suites_load() -> None:
    assert REQUIRED_SUITES <= set(list_suites())
    for name in REQUIRED_SUITES:
        suite = load_suite(name)
        assert suite.learners and suite.families and suite.seeds
        assert suite.quick().is_quick


def test_quick_nav2d_writes_results_report_and_plots(quick_run: Path) -> None:
    data = json.loads((quick_run / "results.json").read_text())
    assert data["format"] == "metarl.BenchmarkResults" and data["format_version"] == 1
    assert data["suite"]["quick"] and data["suite"]["seeds"] == [0]
    assert data["provenance"]["commit"] and data["provenance"]["machine"]["cores"]
    labels = {c["learner"]["label"] for c in data["cells"]}
    assert labels == {"random", "oracle", "trilateration", "pretrained", "scratch", "oracle-ppo"}
    (skip,) = [s for s in data["skipped"] if s["learner"] == "maml-trpo"]
    assert skip["reason"]  # reported, not silently dropped
    nav = data["metrics"]["families"]["Navigation2D-v0"]
    assert nav["oracle"]["normalized"][-1]["mean"]["estimate"] == pytest.approx(1.0)
    assert nav["random"]["normalized"] is not None
    assert nav["trilateration"]["to_fraction_of_oracle"]["episodes"]["mean"] == pytest.approx(4.0)
    md = (quick_run / "results.md").read_text()
    assert "## Navigation2D-v0" in md and "maml-trpo" in md and "Skipped" in md
    assert (quick_run / "curves_Navigation2D-v0.png").stat().st_size > 0
    assert (quick_run / "normalized.png").stat().st_size > 0
    assert len(list((quick_run / "cells").glob("*.json"))) == 6


def test_resume_skips_done_cells_and_reruns_missing_or_truncated(quick_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    cells = out / "cells"
    before = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    original = json.loads((cells / "random__Navigation2D-v0__seed0.json").read_text())
    (cells / "random__Navigation2D-v0__seed0.json").unlink()
    text = (cells / "oracle__Navigation2D-v0__seed0.json").read_text()
    (cells / "oracle__Navigation2D-v0__seed0.json").write_text(text[: len(text) // 2])  # a crash mid-write
    output = _rerun(out)
    assert "oracle__Navigation2D-v0__seed0.json is corrupt" in output
    after = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    rerun = {name for name in after if after[name] != before.get(name)}
    assert rerun == {"random__Navigation2D-v0__seed0.json", "oracle__Navigation2D-v0__seed0.json"}
    again = json.loads((cells / "random__Navigation2D-v0__seed0.json").read_text())
    assert again["result"]["returns"] == original["result"]["returns"]  # same seed, same numbers
    results = json.loads((out / "results.json").read_text())
    assert len(results["cells"]) == 6


def test_report_rerenders_and_compares(quick_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    for path in [out / "results.md", *out.glob("*.png")]:
        path.unlink()
    result = runner.invoke(app, ["report", str(out / "results.json")])
    assert result.exit_code == 0, result.output
    assert "Navigation2D-v0" in result.output
    assert (out / "results.md").exists() and (out / "curves_Navigation2D-v0.png").exists()
    assert (out / "normalized.png").exists()
    other = tmp_path / "other.json"
    shutil.copy(out / "results.json", other)
    result = runner.invoke(
        app, ["report", str(out / "results.json"), str(other), "--out", str(tmp_path / "cmp")]
    )
    assert result.exit_code == 0, result.output
    assert "Comparison of 2 benchmark runs" in result.output and (tmp_path / "cmp" / "comparison.md").exists()


def test_truncated_results_file_is_detected(quick_run: Path, tmp_path: Path) -> None:
    text = (quick_run / "results.json").read_text()
    bad = tmp_path / "results.json"
    bad.write_text(text[: len(text) // 3])
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2
    assert "is not valid JSON" in _error_line(result.output)


def test_results_of_another_format_version_are_refused(quick_run: Path, tmp_path: Path) -> None:
    data = json.loads((quick_run / "results.json").read_text())
    data["format_version"] = 99
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    line = _error_line(result.output)
    assert "format version 99" in line and "reads version 1" in line


def test_unknown_suite_names_the_available_ones() -> None:
    result = runner.invoke(app, ["benchmark", "--suite", "nope", "--quick"])
    assert result.exit_code == 2
    line = _error_line(result.output)
    assert "'nope'" in line and "nav2d" in line and "tabular-mdp" in line


def _suite_file(tmp_path: Path, **changes: object) -> Path:
    data = {"format_version": 1, "name": "mini", "families": ["Navigation2D-v0"], "learners": ["random"]}
    data.update(changes)
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data))
    return path


def test_unknown_learner_names_the_known_ones(tmp_path: Path) -> None:
    path = _suite_file(tmp_path, learners=["random", "maml-sgd"])
    result = runner.invoke(app, ["benchmark", "--suite", str(path)])
    assert result.exit_code == 2
    line = _error_line(result.output)
    assert "'maml-sgd'" in line and "pretrained" in line and "oracle-ppo" in line


def test_unknown_family_names_the_registered_ones(tmp_path: Path) -> None:
    path = _suite_file(tmp_path, families=["Navigation3D-v0"])
    result = runner.invoke(app, ["benchmark", "--suite", str(path)])
    assert result.exit_code == 2
    line = _error_line(result.output)
    assert "'Navigation3D-v0'" in line and "Navigation2D-v0" in line


def test_suite_of_another_format_version_is_refused(tmp_path: Path) -> None:
    path = _suite_file(tmp_path, format_version=7)
    result = runner.invoke(app, ["benchmark", "--suite", str(path)])
    assert result.exit_code == 2
    assert "suite format version 7" in _error_line(result.output)


def test_a_cell_from_another_configuration_is_refused(quick_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    path = _suite_file(
        tmp_path, name="nav2d", learners=["random"], n_tasks=3, rounds=2, episodes_per_round=4, seeds=[0]
    )
    result = runner.invoke(app, ["benchmark", "--suite", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2
    assert "another configuration" in _error_line(result.output)


def test_unknown_learner_label_filter_is_refused() -> None:
    result = runner.invoke(app, ["benchmark", "--suite", "nav2d", "--quick", "--learners", "random,maml"])
    assert result.exit_code == 2
    line = _error_line(result.output)
    assert "'maml'" in line and "oracle-ppo" in line


def test_fast_intervals_match_rliable_bootstrap() -> None:
    import numpy as np

    from metarl.benchmark import _fast_intervals
    from metarl.metrics import interval_estimates

    scores = np.random.default_rng(1).random((3, 40)) ** 3
    fast, slow = _fast_intervals(scores, 2000), interval_estimates(scores, reps=2000)
    for key in ("mean", "iqm"):
        assert fast[key]["estimate"] == pytest.approx(slow[key].estimate)
        assert fast[key]["low"] == pytest.approx(slow[key].low, abs=0.02)
        assert fast[key]["high"] == pytest.approx(slow[key].high, abs=0.02)


def test_classical_and_long_trials_report_per_round_count(tmp_path: Path) -> None:
    """Learners with their own round count (100-pull trials) get their own table and trial totals."""
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["benchmark", "--suite", "bandits", "--quick", "--out", str(out),
         "--learners", "random,gittins,ucb1", "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    md = (out / "results.md").read_text()
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block
    data = json.loads((out / "results.json").read_text())
    fam = data["metrics"]["families"]["BernoulliBandit-v0"]
    assert fam["gittins"]["trial"]["episodes"] == 5 and "trial" not in fam["random"]
    assert "total per trial" in md or "total: mean" in md
