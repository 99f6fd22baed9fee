"""Training logs of two runs compared row by row: does a rerun repeat the original?

Training in metarl is deterministic for a given config, seed, torch thread count and CPU type
(README, "Reproducing a training run"), so a rerun under those conditions writes the same
``progress.csv`` (and, for MAML-TRPO, ``validation.csv``) as the original, to the last digit,
except for the columns that time the run. :func:`compare_logs` checks that:

>>> from metarl.runlog import compare_logs
>>> result = compare_logs("runs/rl2/original", "runs/rl2/rerun")   # doctest: +SKIP
>>> result.identical, result.first                                 # doctest: +SKIP
(True, None)

``metarl compare-runs A B`` prints the same comparison and exits 1 when the runs differ.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TIMING_COLUMNS", "LogComparison", "compare_logs", "compare_rows", "read_log"]

#: Columns of metarl's CSV training logs that time the run (wall-clock, throughput, phase
#: seconds, load average): they differ between any two runs and are never compared.
TIMING_COLUMNS = frozenset(
    {
        # RL² (metarl.agents.rl2_train)
        "wall_seconds",
        "steps_per_second",
        "load_avg_1min",
        # MAML-TRPO (metarl.agents.maml_train)
        "t_sample",
        "t_inner",
        "t_outer",
        "steps_per_s",
        "wall_s",
    }
)


@dataclass
class LogComparison:
    """The result of comparing log ``a`` with log ``b``.

    Rows are matched on ``key``, the logs' first column (``update`` for RL², ``iteration`` for
    MAML-TRPO), and compared on ``columns``, every column both logs have outside the ignored ones.
    ``first`` is the first difference in ``a``'s row order, as ``(key value, column, value in a,
    value in b)``, a value ``None`` where a half-written last line lacks it; values are compared as
    the text written, so equal means equal to the last digit.
    """

    key: str
    rows_a: int
    rows_b: int
    shared_rows: int
    columns: list[str]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    differing_rows: int = 0
    first: tuple[str, str, str | None, str | None] | None = None
    #: Largest absolute difference per differing column (``inf`` where a value is not a number).
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """Whether every compared value of the shared rows is equal (and some rows are shared)."""
        return self.shared_rows > 0 and self.differing_rows == 0

    def to_text(self, name_a: str = "a", name_b: str = "b") -> str:
        """A few lines saying what was compared and where the logs first differ."""
        lines = [
            f"{name_a}: {self.rows_a} rows; {name_b}: {self.rows_b} rows; {self.shared_rows} rows "
            f"with the same {self.key!r} in both; {len(self.columns)} columns compared"
        ]
        for name, cols in ((name_a, self.only_a), (name_b, self.only_b)):
            if cols:
                lines.append(f"only in {name} (not compared): {', '.join(cols)}")
        if self.shared_rows == 0:
            lines.append(f"nothing compared: no {self.key!r} appears in both logs")
        elif self.first is None:
            lines.append(f"identical: every compared value of the {self.shared_rows} shared rows is equal")
        else:
            key, col, a, b = self.first
            lines.append(
                f"DIFFERENT: {self.differing_rows} of {self.shared_rows} shared rows differ; "
                f"first at {self.key} {key}, column {col!r}: {a} against {b}"
            )
            widest = sorted(self.max_abs_diff.items(), key=lambda kv: -kv[1])
            lines.append("largest absolute differences: " + ", ".join(f"{c} {d:.3g}" for c, d in widest))
        return "\n".join(lines)


def read_log(path: str | Path, file_name: str = "progress.csv") -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (values as written) of a CSV log, or of ``file_name`` in a run directory."""
    path = Path(path)
    csv_path = path / file_name if path.is_dir() else path
    if not csv_path.is_file():
        expected = f"a run directory holding {file_name}" if path.is_dir() else "a CSV log or a run directory"
        raise FileNotFoundError(f"{str(csv_path)!r} does not exist; expected {expected}")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not header:
        raise ValueError(f"{str(csv_path)!r} is empty; expected a CSV log with a header row")
    return header, rows


def _abs_diff(a: str | None, b: str | None) -> float:
    try:
        return abs(float(a) - float(b))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # not a number, or missing from a half-written last line
        return math.inf


def compare_rows(
    header_a: list[str],
    rows_a: list[dict[str, str]],
    header_b: list[str],
    rows_b: list[dict[str, str]],
    ignore: Iterable[str] = TIMING_COLUMNS,
) -> LogComparison:
    """Compare two logs already read (see :func:`read_log`) on the rows whose key both have."""
    key = header_a[0]
    if header_b[0] != key:
        raise ValueError(
            f"the logs are keyed on different columns ({key!r} and {header_b[0]!r}); "
            "expected two logs of the same kind of run"
        )
    skip = set(ignore) | {key}
    columns = [c for c in header_a if c in header_b and c not in skip]
    by_key_b: dict[str, dict[str, str]] = {}
    for row in rows_b:
        by_key_b.setdefault(row[key], row)
    result = LogComparison(
        key=key,
        rows_a=len(rows_a),
        rows_b=len(rows_b),
        shared_rows=0,
        columns=columns,
        only_a=[c for c in header_a if c not in header_b and c not in skip],
        only_b=[c for c in header_b if c not in header_a and c not in skip],
    )
    for row in rows_a:
        other = by_key_b.get(row[key])
        if other is None:
            continue
        result.shared_rows += 1
        row_differs = False
        for col in columns:
            if row[col] == other[col]:
                continue
            row_differs = True
            diff = _abs_diff(row[col], other[col])
            result.max_abs_diff[col] = max(result.max_abs_diff.get(col, 0.0), diff)
            if result.first is None:
                result.first = (row[key], col, row[col], other[col])
        result.differing_rows += row_differs
    return result


def compare_logs(
    a: str | Path,
    b: str | Path,
    file_name: str = "progress.csv",
    ignore: Iterable[str] = TIMING_COLUMNS,
) -> LogComparison:
    """Compare the logs of two runs (run directories or CSV files); see :class:`LogComparison`."""
    header_a, rows_a = read_log(a, file_name)
    header_b, rows_b = read_log(b, file_name)
    return compare_rows(header_a, rows_a, header_b, rows_b, ignore)
