"""Provenance of benchmark results: the command, seed, commit, machine and date that produced them."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "machine_info", "provenance_markdown", "run_metadata"]


def git_commit(cwd: str | Path | None = None) -> str:
    """The checkout's HEAD commit, with ``-dirty`` when tracked files are modified."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """CPU model, core count, OS, Python and key library versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("numpy", "torch", "gymnasium", "mujoco"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": cpu,
        "load_average_1_5_15min": load,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def run_metadata(seed: int | None = None, command: str | None = None) -> dict[str, Any]:
    """Everything a reader needs to reproduce a benchmark table."""
    return {
        "command": command if command is not None else " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": seed,
        "commit": git_commit(),
        "machine": machine_info(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def provenance_markdown(meta: Mapping[str, Any]) -> str:
    """One Markdown sentence saying what produced a table, from :func:`run_metadata`'s record:
    command, seed (when there is one), commit, date and machine."""
    machine = meta.get("machine", {})
    seed = f" (seed {meta['seed']})" if meta.get("seed") is not None else ""
    return (
        f"Produced by `{meta.get('command', '?')}`{seed} at commit `{meta.get('commit', '?')}` on "
        f"{meta.get('date', '?')} ({machine.get('cpu', '?')}, {machine.get('cores', '?')} cores)."
    )
