"""Checkpoints: atomic writes, keeping the last ``K``, and finding the latest valid one to resume.

A checkpoint is a plain dict of tensors, state dicts, strings and numbers, written with
:func:`torch.save` and read back with ``torch.load(weights_only=True)``: nothing is unpickled but
tensors and primitive containers. RNG states are stored as a JSON string (NumPy's bit-generator
state, whose 128-bit integers JSON keeps exactly) and a ``uint8`` tensor (a :class:`torch.Generator`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "numpy_rng_from_state",
    "numpy_rng_state",
    "save_checkpoint",
]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def numpy_rng_state(rng: np.random.Generator) -> str:
    """The generator's bit-generator state as JSON text."""
    return json.dumps(rng.bit_generator.state)


def numpy_rng_from_state(text: str) -> np.random.Generator:
    """A generator restored from :func:`numpy_rng_state` output."""
    state = json.loads(text)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files ``ckpt_<iteration>.pt`` in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m[1]), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    directory: str | os.PathLike[str], iteration: int, payload: dict[str, Any], keep: int = 3
) -> Path:
    """Write ``payload`` to ``directory/ckpt_<iteration>.pt`` atomically and keep the newest ``keep``.

    The file is written under a temporary name in the same directory, flushed to disk and renamed
    with :func:`os.replace`, so a crash leaves either the old set of checkpoints or the new one.
    """
    if keep < 1:
        raise ValueError(f"keep must be a positive int, got {keep!r}")
    if iteration < 0:
        raise ValueError(f"iteration must be non-negative, got {iteration!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{iteration:07d}.pt"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a metarl checkpoint (expected a dict, got {type(data).__name__})")
    return data


def load_latest_checkpoint(
    directory: str | os.PathLike[str], required_keys: tuple[str, ...] = ()
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``directory`` that loads and has ``required_keys``; ``None`` if none.

    Truncated or corrupt files (e.g. from a crash on a file system without atomic rename) are
    skipped in favour of the next older one.
    """
    for path in reversed(list_checkpoints(directory)):
        try:
            data = load_checkpoint(path)
        except Exception:
            continue
        if all(k in data for k in required_keys):
            return path, data
    return None
