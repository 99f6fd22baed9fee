"""The ``metarl`` command line: list, evaluate, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

import metarl
from metarl.cli import app

runner = CliRunner()


def flat(output: str) -> str:
    """Output with typer's error box and line wrapping removed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_list_shows_every_family_with_what_varies_and_split_sizes() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "Navigation2D-v0" in result.output and "goal" in result.output and "100/20/40" in result.output
    rows = json.loads(runner.invoke(app, ["list", "--json"]).output)
    assert {row["id"] for row in rows} == set(metarl.list_families())
    nav = next(row for row in rows if row["id"] == "Navigation2D-v0")
    assert nav["split_sizes"] == {"train": 100, "validation": 20, "test": 40} and nav["batched"] is True


def test_evaluate_prints_the_table_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "nav.json"
    args = ["evaluate", "--family", "Navigation2D-v0", "--learner", "trilateration", "--n-tasks", "3"]
    result = runner.invoke(app, [*args, "--rounds", "2", "--episodes-per-round", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| 1 | 1 |" in result.output
    loaded = metarl.EvalResult.from_json(out)
    assert loaded.returns.shape == (3, 2) and loaded.returns[:, 1].mean() > loaded.returns[:, 0].mean()
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()


def test_bad_input_gets_one_line_errors(tmp_path: Path) -> None:
    typo, negative = tmp_path / "typo.json", tmp_path / "negative.json"
    typo.write_text(json.dumps({"inner_lrr": 0.1}))
    negative.write_text(json.dumps({"inner_lr": -1}))
    cases = [
        (["evaluate", "--family", "Navigaton2D-v0"], "did you mean 'Navigation2D-v0'"),
        (["evaluate", "--family", "Navigation2D-v0", "--learner", "nope"], "unknown learner 'nope'"),
        (["evaluate", "--family", "Navigation2D-v0", "--split", "dev"], "unknown split 'dev'"),
        (["report", str(tmp_path / "missing.json")], "cannot read results file"),
        (
            ["train", "maml-trpo", "--family", "Navigation2D-v0", "--config", str(tmp_path / "x.json")],
            "does not exist",
        ),
        (["train", "ppo", "--family", "Navigation2D-v0"], "unknown agent 'ppo'"),
        (["evaluate", "--family", "Nope-v0"], "unknown family 'Nope-v0'; registered families:"),
        (
            ["train", "maml-trpo", "--family", "Navigation2D-v0", "--config", str(typo)],
            f"{str(typo)!r} (with the command line's overrides): unknown MAML-TRPO config key(s) ['inner_lrr']",
        ),
        (["train", "maml-trpo", "--family", "Navigation2D-v0", "--config", str(negative)], "got -1"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        assert message in flat(result.output), (args, result.output)
        assert "Traceback" not in result.output, result.output


def test_compare_runs_exit_codes(tmp_path: Path) -> None:
    for name, value in (("a", "0.5"), ("b", "0.5"), ("c", "0.25")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "progress.csv").write_text(
            f"iteration,post_return,wall_s\n1,{value},{len(name)}\n"
        )
    same = runner.invoke(app, ["compare-runs", str(tmp_path / "a"), str(tmp_path / "b")])
    assert same.exit_code == 0 and "identical" in same.output, same.output
    differ = runner.invoke(app, ["compare-runs", str(tmp_path / "a"), str(tmp_path / "c")])
    assert differ.exit_code == 1 and "column 'post_return': 0.5 against 0.25" in differ.output
    ignored = runner.invoke(
        app, ["compare-runs", str(tmp_path / "a"), str(tmp_path / "c"), "--ignore", "post_return"]
    )
    assert ignored.exit_code == 0, ignored.output
    (tmp_path / "b" / "progress.csv").write_text("iteration,post_return\n1,0.5\n2,0.75\n")
    longer = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert runner.invoke(app, ["compare-runs", *longer]).exit_code == 0
    strict = runner.invoke(app, ["compare-runs", *longer, "--require-same-length"])
    assert strict.exit_code == 1 and "differ in length: 1 against 2 rows" in strict.output
    missing = runner.invoke(
        app, ["compare-runs", str(tmp_path / "a"), str(tmp_path / "a"), "--file", "validation.csv"]
    )
    assert missing.exit_code == 2 and "holding validation.csv" in flat(missing.output)
