"""Checkpoints: atomic writes, keeping the last ``K``, and finding the latest valid one to resume.

A checkpoint is a plain dict of tensors, state dicts, strings and numbers, written with
:func:`torch.save` and read back with ``torch.load(weights_only=True)``: nothing is unpickled but
tensors and primitive containers. RNG states are stored as a JSON string (NumPy's bit-generator
state, whose 128-bit integers JSON keeps exactly) and a ``uint8`` tensor (a :class:`torch.Generator`).

Every checkpoint carries a ``format`` string ``"<name>/<version>"`` (each trainer's own, e.g.
``"metarl.maml_trpo.checkpoint/1"``) and the ``metarl_version`` that wrote it. A file whose format
name or version differs from the reader's raises :class:`CheckpointFormatError` naming the file and
both versions. A file without ``format`` is rejected too: every checkpoint metarl has written carries
one, so a missing field means the file is not a metarl checkpoint, and guessing would be unsafe.

Resuming (:func:`load_latest_checkpoint`) skips unreadable files (truncated, corrupt) with a warning
naming them and falls back to the next older checkpoint; a readable checkpoint of another format is
an error, not something to skip silently. :func:`rewind_csv_log` cuts a run's CSV log back to the
checkpoint's iteration, so the iterations redone after a crash are not logged twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from metarl.fileio import atomic_write, atomic_write_text

__all__ = [
    "CheckpointError",
    "CheckpointFormatError",
    "check_format",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "numpy_rng_from_state",
    "numpy_rng_state",
    "rewind_csv_log",
    "save_checkpoint",
    "write_checkpoint",
]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a dict); names the file."""


class CheckpointFormatError(CheckpointError):
    """A readable checkpoint of another format or format version than the reader's."""


def _metarl_version() -> str:
    from metarl import __version__

    return __version__


def check_format(path: str | os.PathLike[str], data: Mapping[str, Any], expected: str) -> None:
    """Raise :class:`CheckpointFormatError` unless ``data["format"] == expected``.

    The message names the file, the format and version found (and the metarl version that wrote
    it, when recorded) and the format and version this metarl reads.
    """
    found = data.get("format")
    if found == expected:
        return
    name, _, version = expected.rpartition("/")
    here = f"this metarl ({_metarl_version()}) reads {name} version {version}"
    if not isinstance(found, str):
        raise CheckpointFormatError(
            f"{path}: no checkpoint format field (found {found!r}), so not a {name} checkpoint; {here}"
        )
    found_name, _, found_version = found.rpartition("/")
    writer = data.get("metarl_version")
    by = f" (written by metarl {writer})" if isinstance(writer, str) else " (metarl version not recorded)"
    if found_name != name:
        raise CheckpointFormatError(f"{path}: a {found!r} checkpoint{by}, not {name}; {here}")
    raise CheckpointFormatError(f"{path}: {name} version {found_version}{by}; {here}")


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
    The payload gains a ``metarl_version`` entry (the writer's version) unless it has one.
    """
    if keep < 1:
        raise ValueError(f"keep must be a positive int, got {keep!r}")
    if iteration < 0:
        raise ValueError(f"iteration must be non-negative, got {iteration!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = write_checkpoint(directory / f"ckpt_{iteration:07d}.pt", payload)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def write_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename), adding a
    ``metarl_version`` entry unless it has one; a crash leaves the previous file intact."""
    payload = {"metarl_version": _metarl_version(), **payload}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | os.PathLike[str], expected_format: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    Raises :class:`CheckpointError` naming ``path`` if the file cannot be read, and
    :class:`CheckpointFormatError` if ``expected_format`` is given and the file has another.
    """
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zip, bad pickle, disallowed global: all "unreadable"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} is not a metarl checkpoint (expected a dict, got {type(data).__name__})"
        )
    if expected_format is not None:
        check_format(path, data, expected_format)
    return data


def load_latest_checkpoint(
    directory: str | os.PathLike[str],
    required_keys: tuple[str, ...] = (),
    expected_format: str | None = None,
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``directory`` that loads and has ``required_keys``; ``None`` if none.

    Unreadable files (truncated, corrupt; e.g. from a crash on a file system without atomic rename,
    or a disk that filled up) and files missing ``required_keys`` are skipped with a warning naming
    them, in favour of the next older one. A readable file of another ``expected_format`` raises
    :class:`CheckpointFormatError`: resuming from an older checkpoint would silently drop progress.
    """
    for path in reversed(list_checkpoints(directory)):
        try:
            data = load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
            continue
        if expected_format is not None:
            check_format(path, data, expected_format)
        missing = [k for k in required_keys if k not in data]
        if missing:
            warnings.warn(f"skipping checkpoint {path}: it lacks {missing}", stacklevel=2)
            continue
        return path, data
    return None


def _unused_name(path: Path) -> Path:
    """``path`` if it does not exist, else ``path`` with ``.1``, ``.2``, ... appended."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def rewind_csv_log(
    path: str | os.PathLike[str], column: str, last: int, fieldnames: Sequence[str] | None = None
) -> None:
    """Keep only the rows of the CSV log ``path`` whose integer ``column`` is at most ``last``.

    Called when resuming from the checkpoint of iteration ``last``: rows of iterations after it (run
    before the crash, redone now) and a half-written last line (no final newline, or too few
    values) are dropped, so each iteration is logged once. The file is rewritten atomically; a
    missing file is left missing.

    ``fieldnames``, the columns the resumed run will append, becomes the file's header, so the
    appended rows match it. A log whose header is a prefix of ``fieldnames`` (written by an older
    metarl, before columns were added at the end) keeps every value: its rows are read by
    position, so rows already appended by the newer version, one value longer than the old header,
    land in the added columns. A log with other columns is kept beside as ``<name>.old`` (or
    ``.old.1``, ...) with a warning, and the new log holds the rows' values of the columns both
    share.
    """
    path = Path(path)
    if not path.exists():
        return
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the last line was cut off mid-write
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not lines[0]:
        path.unlink()
        return
    header, body = lines[0], lines[1:]
    fields = list(header if fieldnames is None else fieldnames)
    compatible = header == fields[: len(header)]
    names = fields if compatible else header
    if not compatible:
        backup = _unused_name(path.with_name(path.name + ".old"))
        path.rename(backup)
        warnings.warn(
            f"{path}: its columns {header} differ from the ones logged now {fields}; the old log is "
            f"kept as {backup} and the new one starts with the values of the columns both share",
            stacklevel=2,
        )
    rows = []
    for values in body:
        if not len(header) <= len(values) <= len(names):
            continue  # cut short, or not readable under either header
        row = dict(zip(names, values, strict=False))
        try:
            keep = int(row[column]) <= last
        except (KeyError, ValueError):
            keep = False
        if keep:
            rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def open_csv_log(
    path: str | os.PathLike[str],
    fieldnames: Sequence[str],
    column: str,
    resumed_at: int | None,
    *,
    extrasaction: Literal["raise", "ignore"] = "raise",
) -> tuple[io.TextIOWrapper, csv.DictWriter[str]]:
    """Open a run's CSV log for writing rows of ``fieldnames``; return ``(file, writer)``.

    A fresh run (``resumed_at`` is ``None``) starts a new file with its header. A run resumed from
    the checkpoint of iteration ``resumed_at`` first rewinds the log to it
    (:func:`rewind_csv_log`, which also gives it the header ``fieldnames``) and appends.
    """
    path = Path(path)
    if resumed_at is not None:
        rewind_csv_log(path, column, resumed_at, fieldnames)
    new = resumed_at is None or not path.exists()
    fh = path.open("w" if new else "a", newline="")
    writer = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction=extrasaction)
    if new:
        writer.writeheader()
    return fh, writer
