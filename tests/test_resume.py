"""Reliability of training runs: exact resume after SIGKILL, corrupt and foreign checkpoints,
same seed twice, for MAML-TRPO and RL².

The SIGKILL tests run ``python -m metarl.cli train ...`` in subprocesses: an uninterrupted run, and
a run killed once it has written a checkpoint and logged iterations past it, then resumed with
``--resume``. The final state dicts (read with ``weights_only=True``) and every logged value that is
not a wall-clock measurement must be equal bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.agents.checkpoint import (
    CheckpointError,
    CheckpointFormatError,
    list_checkpoints,
    load_checkpoint,
    rewind_csv_log,
    save_checkpoint,
)
from metarl.agents.maml_train import CHECKPOINT_FORMAT as MAML_FORMAT
from metarl.agents.maml_train import load_algorithm
from metarl.agents.maml_train import train as maml_train
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.rl2 import RL2Config
from metarl.agents.rl2_train import CHECKPOINT_FORMAT as RL2_FORMAT
from metarl.agents.rl2_train import load_run
from metarl.agents.rl2_train import train as rl2_train
from metarl.runlog import TIMING_COLUMNS, compare_logs

torch.set_num_threads(1)


MAML_CFG: dict[str, Any] = {"meta_batch_size": 2, "episodes_per_task": 2, "hidden_sizes": [8],
                            "meta_iterations": 12, "checkpoint_every": 2, "keep_checkpoints": 2,
                            "eval_every": 3}  # fmt: skip
#: 40 env steps per update (8 trials x 5 pulls): 32 updates, a checkpoint every 4.
RL2_CFG: dict[str, Any] = {
    "family_kwargs": {"n_arms": 3, "n_pulls": 5, "split_sizes": {"train": 8, "validation": 8, "test": 16}},
    "trials_per_update": 8,
    "hidden_size": 16,
    "ppo_epochs": 2,
    "num_minibatches": 2,
    "total_env_steps": 1280,
    "checkpoint_every": 4,
    "keep_checkpoints": 2,
}


# ------------------------------------------------------------------------------------ helpers
def read_log(path: Path) -> list[dict[str, str]]:
    """The CSV log's rows without the timing columns (values kept as the exact text written)."""
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(fh)]


def assert_same_state(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts / lists of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def final_checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(list_checkpoints(run_dir / "checkpoints")[-1], map_location="cpu", weights_only=True)


def cli(agent: str, family: str, config: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start ``metarl train`` in a subprocess (one torch thread; output to files beside the run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = (run_dir.parent / f"{run_dir.name}{'-'.join(extra)}.log").open("wb")
    cmd = [sys.executable, "-m", "metarl.cli", "train", agent, "--family", family, "--config", str(config),
           "--run-dir", str(run_dir), "--seed", "7", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def last_logged(run_dir: Path, column: str) -> int:
    """The highest iteration in the CSV log so far (0 if none; a half-written line is ignored)."""
    try:
        lines = (run_dir / "progress.csv").read_text().splitlines()
    except FileNotFoundError:
        return 0
    best = 0
    for line in lines[1:]:
        head = line.split(",", 1)[0]
        if head.isdigit() and line.count(",") >= 10:
            best = max(best, int(head))
    return best


def kill_past_a_checkpoint(proc: subprocess.Popen[bytes], run_dir: Path, column: str) -> None:
    """SIGKILL ``proc`` once a checkpoint exists and the log holds iterations past it (so resuming
    must redo, and not re-log, those), while the run is still going."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ckpts = list_checkpoints(run_dir / "checkpoints")
        if ckpts and last_logged(run_dir, column) > int(ckpts[-1].stem.split("_")[1]):
            break
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before it could be killed"
        time.sleep(0.005)
    else:
        pytest.fail("no checkpoint appeared in time")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL, "the run finished before the kill landed"


def kill_and_resume(
    tmp_path: Path, agent: str, family: str, cfg: dict[str, Any], column: str
) -> tuple[Path, Path]:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(cfg))
    straight = cli(agent, family, config, tmp_path / "straight")
    killed = cli(agent, family, config, tmp_path / "killed")
    kill_past_a_checkpoint(killed, tmp_path / "killed", column)
    assert straight.wait(120) == 0
    resumed = cli(agent, family, config, tmp_path / "killed", "--resume")
    assert resumed.wait(120) == 0, (tmp_path / "killed--resume.log").read_text()
    return tmp_path / "straight", tmp_path / "killed"


# ------------------------------------------------------------------------ 1. resume after SIGKILL
def test_maml_trpo_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    straight, killed = kill_and_resume(tmp_path, "maml-trpo", "Navigation2D-v0", MAML_CFG, "iteration")
    a, b = final_checkpoint(straight), final_checkpoint(killed)
    assert a["iteration"] == b["iteration"] == MAML_CFG["meta_iterations"]
    for key in ("policy", "step_sizes", "rng", "env_steps", "task_split"):
        assert_same_state(a[key], b[key], key)
    assert {**json.loads(a["config"]), "run_dir": ""} == {**json.loads(b["config"]), "run_dir": ""}
    rows = read_log(straight / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, MAML_CFG["meta_iterations"] + 1))
    assert read_log(killed / "progress.csv") == rows
    # validation meta-tests (every 3 iterations) are logged once each and pick the same best
    val = read_log(straight / "validation.csv")
    assert [int(r["iteration"]) for r in val] == [3, 6, 9, 12]
    assert read_log(killed / "validation.csv") == val
    best_a = torch.load(straight / "best.pt", weights_only=True)
    best_b = torch.load(killed / "best.pt", weights_only=True)
    assert best_a["iteration"] == best_b["iteration"]
    assert_same_state(best_a["policy"], best_b["policy"], "best policy")


def test_rl2_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    straight, killed = kill_and_resume(tmp_path, "rl2", "BernoulliBandit-v0", RL2_CFG, "update")
    a, b = final_checkpoint(straight), final_checkpoint(killed)
    assert a["updates"] == b["updates"] == 32
    for key in ("model", "optimizer", "torch_rng", "numpy_rng", "env_steps", "config"):
        assert_same_state(a[key], b[key], key)
    rows = read_log(straight / "progress.csv")
    assert [int(r["update"]) for r in rows] == list(range(1, 33))
    assert read_log(killed / "progress.csv") == rows


# --------------------------------------------------------------- 2. corrupt and foreign checkpoints
def maml_config(run_dir: Path, **kw: Any) -> MAMLTRPOConfig:
    base = {**MAML_CFG, "hidden_sizes": (8,), "meta_iterations": 4, "checkpoint_every": 1}
    return MAMLTRPOConfig.from_dict({**base, "run_dir": str(run_dir), **kw})


def rl2_config(**kw: Any) -> RL2Config:
    return RL2Config.from_dict({**RL2_CFG, "family": "BernoulliBandit-v0", "total_env_steps": 160,
                                "checkpoint_every": 1, **kw})  # fmt: skip


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_maml_truncated_checkpoint_is_reported_and_resume_falls_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = maml_train(maml_config(run), progress=False)
    before = {k: v.clone() for k, v in done.policy.state_dict().items()}
    rows = read_log(run / "progress.csv")
    newest = list_checkpoints(run / "checkpoints")[-1]
    truncate(newest)
    with pytest.raises(CheckpointError, match=newest.name):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match=rf"skipping unreadable checkpoint.*{newest.name}"):
        again = maml_train(maml_config(run), resume=True, progress=False)  # redoes the last iteration
    assert_same_state(before, again.policy.state_dict())
    assert read_log(run / "progress.csv") == rows
    assert_same_state(final_checkpoint(run)["policy"], before)


def test_rl2_truncated_checkpoint_is_reported_and_resume_falls_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = rl2_train(rl2_config(), run, progress=False)
    before = {k: v.clone() for k, v in done.model.state_dict().items()}
    rows = read_log(run / "progress.csv")
    newest = list_checkpoints(run / "checkpoints")[-1]
    truncate(newest)
    with pytest.warns(UserWarning, match=rf"skipping unreadable checkpoint.*{newest.name}"):
        again = rl2_train(rl2_config(), run, resume=True, progress=False)
    assert again.updates == 4
    assert_same_state(before, again.model.state_dict())
    assert read_log(run / "progress.csv") == rows


def rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = torch.load(path, map_location="cpu", weights_only=True)
    change(data)
    torch.save(data, path)


@pytest.mark.parametrize("agent", ["maml-trpo", "rl2"])
def test_checkpoint_of_another_format_version_names_file_and_versions(agent: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    if agent == "maml-trpo":
        maml_train(maml_config(run, meta_iterations=1), progress=False)
        fmt = MAML_FORMAT
        load: Callable[[str | os.PathLike[str]], object] = load_algorithm
        resume: Callable[[], Any] = lambda: maml_train(maml_config(run), resume=True, progress=False)  # noqa: E731
    else:
        rl2_train(rl2_config(total_env_steps=40), run, progress=False)
        fmt, load = RL2_FORMAT, load_run
        resume = lambda: rl2_train(rl2_config(), run, resume=True, progress=False)  # noqa: E731
    path = list_checkpoints(run / "checkpoints")[-1]
    name = fmt.rpartition("/")[0]
    assert load_checkpoint(path)["metarl_version"] == "0.1.0"

    # a checkpoint written before metarl_version was recorded still loads (format is what matters)
    rewrite(path, lambda d: d.pop("metarl_version"))
    load(path)

    rewrite(path, lambda d: d.update(format=f"{name}/2", metarl_version="9.9"))
    message = rf"{path.name}: {name} version 2 \(written by metarl 9\.9\); this metarl \(0\.1\.0\) reads {name} version 1"
    for attempt in (lambda: load(path), lambda: load(run), resume):
        with pytest.raises(CheckpointFormatError, match=message):
            attempt()

    rewrite(path, lambda d: d.pop("format"))
    with pytest.raises(CheckpointFormatError, match=rf"{path.name}: no checkpoint format field"):
        load(path)


class _NotATensor:
    """A class that a full unpickler would rebuild (running its code); ``weights_only`` refuses it."""


def test_checkpoints_load_without_unpickling_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "ckpt_0000001.pt"
    torch.save({"format": MAML_FORMAT, "payload": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*ckpt_0000001\.pt"):
        load_checkpoint(path)


def test_rewind_csv_log_drops_later_rows_and_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("iteration,x\n1,0.5\n2,0.25\n3,0.125\n4,0.0")
    rewind_csv_log(path, "iteration", 2)
    assert path.read_text().splitlines() == ["iteration,x", "1,0.5", "2,0.25"]
    path.write_text("iteration,x,y\n1,0.5,1\n2,0.2")  # killed mid-row: "2,0.2" lacks y
    rewind_csv_log(path, "iteration", 5)
    assert path.read_text().splitlines() == ["iteration,x,y", "1,0.5,1"]
    rewind_csv_log(tmp_path / "missing.csv", "iteration", 1)
    assert not (tmp_path / "missing.csv").exists()


def test_rewind_csv_log_upgrades_a_log_from_before_columns_were_added(tmp_path: Path) -> None:
    # an older version wrote the header and rows 1-2; a newer one, with column y added at the end,
    # appended rows 3-4 (one value longer) before crashing after its checkpoint of row 3
    path = tmp_path / "progress.csv"
    path.write_text("iteration,x\n1,0.5\n2,0.25\n3,0.125,7\n4,0.0,8\n")
    rewind_csv_log(path, "iteration", 3, ["iteration", "x", "y"])
    assert path.read_text().splitlines() == ["iteration,x,y", "1,0.5,", "2,0.25,", "3,0.125,7"]
    assert [p.name for p in tmp_path.iterdir()] == ["progress.csv"]


def test_rewind_csv_log_keeps_a_log_with_other_columns_beside(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    old = "iteration,z,x\n1,9,0.5\n2,9,0.25\n"
    path.write_text(old)
    (tmp_path / "progress.csv.old").write_text("an earlier backup\n")
    with pytest.warns(UserWarning, match=r"progress\.csv: its columns \['iteration', 'z', 'x'\] differ"):
        rewind_csv_log(path, "iteration", 1, ["iteration", "x", "y"])
    assert (tmp_path / "progress.csv.old.1").read_text() == old  # nothing the run wrote is lost
    assert (tmp_path / "progress.csv.old").read_text() == "an earlier backup\n"
    assert path.read_text().splitlines() == ["iteration,x,y", "1,0.5,"]


def test_save_checkpoint_keeps_last_k_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    for i in range(1, 6):
        save_checkpoint(tmp_path, i, {"format": "x/1", "i": torch.tensor(i)}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_0000004.pt", "ckpt_0000005.pt"]


# ----------------------------------------------------------------------- 3. same seed, same results
def test_maml_trpo_same_seed_twice_same_log_and_checkpoint(tmp_path: Path) -> None:
    for name in ("a", "b"):
        maml_train(maml_config(tmp_path / name, meta_iterations=2, eval_every=1), progress=False)
    assert read_log(tmp_path / "a" / "progress.csv") == read_log(tmp_path / "b" / "progress.csv")
    for log in ("progress.csv", "validation.csv"):
        same = compare_logs(tmp_path / "a", tmp_path / "b", log)
        assert same.identical and same.shared_rows == same.rows_a == same.rows_b > 0, same.to_text()
    a, b = final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b")
    for key in ("policy", "step_sizes", "rng", "env_steps"):
        assert_same_state(a[key], b[key], key)


def test_rl2_same_seed_twice_same_log_and_checkpoint(tmp_path: Path) -> None:
    for name in ("a", "b"):
        rl2_train(rl2_config(total_env_steps=80), tmp_path / name, progress=False)
    assert read_log(tmp_path / "a" / "progress.csv") == read_log(tmp_path / "b" / "progress.csv")
    a, b = final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b")
    for key in ("model", "optimizer", "torch_rng", "numpy_rng", "env_steps"):
        assert_same_state(a[key], b[key], key)
    assert compare_logs(tmp_path / "a", tmp_path / "b").identical
    shutil.rmtree(tmp_path / "b")
    rl2_train(rl2_config(total_env_steps=80, seed=8), tmp_path / "b", progress=False)
    assert read_log(tmp_path / "a" / "progress.csv") != read_log(tmp_path / "b" / "progress.csv")
    other = compare_logs(tmp_path / "a", tmp_path / "b")
    assert not other.identical and other.first is not None and other.first[0] == "1"
    assert other.shared_rows == 2 and set(other.columns).isdisjoint(TIMING_COLUMNS)


# --------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_the_old_file_on_a_crash_and_gives_normal_permissions(tmp_path: Path) -> None:
    """A failing writer leaves the previous file intact and no temporary behind; a new file gets
    the permissions of ``open`` (0o666 less the umask), not mkstemp's owner-only 0o600."""
    from metarl.fileio import atomic_write, atomic_write_text

    target = tmp_path / "results.json"
    atomic_write_text(target, "old")

    def crash(fh: Any) -> None:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    mask = os.umask(0o027)
    try:
        atomic_write_text(target, "new")
    finally:
        os.umask(mask)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


# --------------------------------------------------------------- comparing two runs' logs
def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_compare_logs_skips_timing_and_one_sided_columns_and_finds_the_first_difference(
    tmp_path: Path,
) -> None:
    header = ["update", "env_steps", "trial_return", "wall_seconds", "aux_loss"]
    a = write_csv(
        tmp_path / "a.csv", header, [[1, 10, "1.5", 0.1, 0], [2, 20, "2.25", 0.2, 0], [3, 30, "3.0", 0.3, 0]]
    )
    b = write_csv(tmp_path / "b.csv", header[:4], [[1, 10, "1.5", 9.9], [2, 20, "2.25", 9.8]])
    same = compare_logs(a, b)
    assert same.identical and (same.rows_a, same.rows_b, same.shared_rows) == (3, 2, 2)
    assert same.columns == ["env_steps", "trial_return"] and same.only_a == ["aux_loss"] and same.only_b == []
    assert "identical" in same.to_text()
    c = write_csv(
        tmp_path / "c.csv", header[:4], [[1, 10, "1.5", 0.1], [2, 20, "2.5", 0.2], [3, 31, "3.5", 0.3]]
    )
    diff = compare_logs(a, c)
    assert not diff.identical and diff.differing_rows == 2
    assert diff.first == ("2", "trial_return", "2.25", "2.5")
    assert diff.max_abs_diff == {"trial_return": 0.5, "env_steps": 1.0}
    assert "first at update 2, column 'trial_return': 2.25 against 2.5" in diff.to_text("a", "c")
    # a value printed differently is a difference, even if it parses to the same number
    d = write_csv(tmp_path / "d.csv", header[:3], [[1, 10, "1.50"]])
    assert compare_logs(a, d).first == ("1", "trial_return", "1.5", "1.50")
    # rows matched on the key, not on position; no shared key is not "identical"
    e = write_csv(tmp_path / "e.csv", header[:3], [[3, 30, "3.0"], [1, 10, "1.5"]])
    assert compare_logs(a, e).identical
    # a half-written last line (a run killed mid-write) is a difference, not a crash
    cut = tmp_path / "cut.csv"
    cut.write_text("update,env_steps,trial_return\n1,10,1.5\n2,20\n")
    assert compare_logs(a, cut).first == ("2", "trial_return", "2.25", None)
    f = write_csv(tmp_path / "f.csv", header[:3], [[7, 70, "7.0"]])
    assert not compare_logs(a, f).identical and "nothing compared" in compare_logs(a, f).to_text()


def test_compare_logs_rejects_missing_empty_and_mismatched_logs(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", ["update", "x"], [[1, 0]])
    with pytest.raises(FileNotFoundError, match=re.escape("holding progress.csv")):
        compare_logs(tmp_path, a)
    with pytest.raises(FileNotFoundError, match=re.escape("'nope.csv' does not exist; expected a CSV log")):
        compare_logs(a, "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=re.escape("empty.csv' is empty")):
        compare_logs(a, tmp_path / "empty.csv")
    maml = write_csv(tmp_path / "maml.csv", ["iteration", "x"], [[1, 0]])
    with pytest.raises(ValueError, match=re.escape("keyed on different columns ('update' and 'iteration')")):
        compare_logs(a, maml)


def test_timing_columns_are_columns_the_trainers_write() -> None:
    from metarl.agents import maml_train, rl2_train

    written = set(maml_train._CSV_FIELDS) | set(rl2_train._CSV_FIELDS)
    assert written >= TIMING_COLUMNS, sorted(TIMING_COLUMNS - written)
