"""Tasks and the parameter spaces they are drawn from.

A :class:`Task` is a frozen, hashable, JSON-serialisable record: the family it belongs to, that
family's version, a stable task id and the task's typed parameters. A :class:`ParameterSpace`
declares which parameters a family's tasks carry (name, shape, bounds and distribution); it
samples them from an explicit :class:`numpy.random.Generator` and validates tasks written by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, TypeAlias

import numpy as np

__all__ = [
    "Choice",
    "Dirichlet",
    "Distribution",
    "LogUniform",
    "Normal",
    "Param",
    "ParamValue",
    "ParameterSpace",
    "Task",
    "Uniform",
    "check_int",
]

#: A parameter value as stored in a :class:`Task`: a number, or nested tuples of numbers.
ParamValue: TypeAlias = "float | int | tuple[Any, ...]"


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number (not a bool) of at least ``minimum``; otherwise a
    ``ValueError`` naming ``name``, e.g. "n_arms must be a positive int, got 0"."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        kind = {0: "non-negative", 1: "positive"}.get(minimum, f">= {minimum}")
        raise ValueError(f"{name} must be a {kind} int, got {value!r}")
    return int(value)


def _freeze(value: Any) -> ParamValue:
    """Turn arrays, lists and NumPy scalars into nested tuples of Python numbers."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iuf":
            # ``tolist`` already yields Python ints or floats: only the lists need turning into
            # tuples. Sampling 512 TabularMDP tasks took 0.85 s with the element-wise path below
            # and takes 0.51 s with this one (the rest is the id's JSON); RL² samples that many
            # tasks per update.
            return _tuples(value.tolist(), value.ndim)
        return _freeze(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"task parameters are numbers, got the boolean {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise TypeError(f"task parameters are numbers or nested sequences of numbers, got {value!r}")


def _tuples(value: Any, ndim: int) -> ParamValue:
    """``ndarray.tolist()`` of a numeric array of ``ndim`` dimensions as nested tuples."""
    if ndim == 0:
        return value  # type: ignore[no-any-return]
    if ndim == 1:
        return tuple(value)
    return tuple(_tuples(v, ndim - 1) for v in value)


@dataclass(frozen=True)
class Task:
    """One task of a task family.

    Attributes:
        family: the family's name without version, e.g. ``"Navigation2D"``.
        version: the family's version; splits are only identical for equal versions.
        params: the task's parameters as ``(name, value)`` pairs sorted by name; values are
            Python numbers or nested tuples of them, so a task is hashable.
        task_id: a stable id derived from family, version and parameters (the same on every
            machine); computed when first read (a large task's id costs about a millisecond, which
            RL² would otherwise pay for every task it samples), then kept.
    """

    family: str
    version: int
    params: tuple[tuple[str, ParamValue], ...]

    def __post_init__(self) -> None:
        items: Iterable[tuple[Any, Any]] = (
            self.params.items() if isinstance(self.params, Mapping) else tuple(self.params)
        )
        frozen = tuple(sorted((str(k), _freeze(v)) for k, v in items))
        object.__setattr__(self, "params", frozen)

    @cached_property
    def task_id(self) -> str:
        """``"<family>-v<version>/<12 hex digits>"``: the start of the SHA-256 of the canonical JSON
        of ``[family, version, params]``."""
        return self._make_id()

    @classmethod
    def create(cls, family: str, version: int, params: Mapping[str, Any]) -> Task:
        """Build a task from a mapping of parameter names to values (arrays are accepted)."""
        return cls(family=family, version=version, params=tuple(params.items()))

    def _make_id(self) -> str:
        payload = json.dumps([self.family, self.version, self.params], separators=(",", ":"))
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{self.family}-v{self.version}/{digest}"

    @property
    def family_id(self) -> str:
        """The registry id of the task's family, e.g. ``"Navigation2D-v0"``."""
        return f"{self.family}-v{self.version}"

    def __getitem__(self, name: str) -> ParamValue:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(f"task {self.task_id} has no parameter {name!r}; it has {self.names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.params)

    def array(self, name: str) -> np.ndarray:
        """A parameter as a float64 NumPy array."""
        return np.asarray(self[name], dtype=np.float64)

    def vector(self) -> np.ndarray:
        """Every parameter flattened (C order) and concatenated in name order, as one float64
        vector: the task's features, e.g. for a critic that is told the task
        (:attr:`metarl.agents.rl2.RL2Config.value_task`). Tasks of one family give vectors of one length."""
        if not self.params:
            return np.zeros(0)
        return np.concatenate([np.ravel(self.array(name)) for name in self.names])

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "version": self.version,
            "task_id": self.task_id,
            "params": {k: _thaw(v) for k, v in self.params},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        missing = {"family", "version", "params"} - set(data)
        if missing:
            raise ValueError(f"a task record needs the keys {sorted(missing)}; got {sorted(data)}")
        task = cls(
            family=str(data["family"]),
            version=int(data["version"]),
            params=tuple(dict(data["params"]).items()),
        )
        recorded = str(data.get("task_id", ""))
        if recorded and recorded != task.task_id:
            raise ValueError(
                f"task_id {recorded!r} does not match the task's parameters "
                f"(expected {task.task_id!r}); was the task edited by hand?"
            )
        return task

    @classmethod
    def from_json(cls, text: str) -> Task:
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in self.params)
        return f"Task({self.task_id}: {shown})"


def _thaw(value: ParamValue) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _short(value: ParamValue) -> str:
    if isinstance(value, tuple):
        flat = np.asarray(value, dtype=float).ravel()
        if flat.size > 4:
            return f"<{np.asarray(value).shape} array>"
        return "(" + ", ".join(f"{x:.4g}" for x in flat) + ")"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Distribution(Protocol):
    """How a parameter is drawn. Implementations draw only from the generator they are given."""

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=shape)

    def describe(self) -> str:
        return f"U[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choice:
    values: tuple[float, ...]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(self.values)[rng.integers(len(self.values), size=shape)]

    def describe(self) -> str:
        return "{" + ", ".join(f"{v:g}" for v in self.values) + "}"


@dataclass(frozen=True)
class Normal:
    mean: float
    std: float

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.normal(self.mean, self.std, size=shape)

    def describe(self) -> str:
        return f"N({self.mean:g}, {self.std:g}^2)"


@dataclass(frozen=True)
class LogUniform:
    """``base ** U(low_exp, high_exp)``: the multipliers of rand_param_envs."""

    base: float
    low_exp: float
    high_exp: float

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return np.power(self.base, rng.uniform(self.low_exp, self.high_exp, size=shape))

    def describe(self) -> str:
        return f"{self.base:g}^U({self.low_exp:g}, {self.high_exp:g})"


@dataclass(frozen=True)
class Dirichlet:
    """Dirichlet(alpha) along the last axis of the parameter's shape."""

    alpha: float

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        if not shape:
            raise ValueError("a Dirichlet parameter needs a shape with at least one axis")
        return rng.dirichlet(np.full(shape[-1], self.alpha), size=shape[:-1])

    def describe(self) -> str:
        return f"Dirichlet({self.alpha:g})"


@dataclass(frozen=True)
class Param:
    """One parameter of a family's tasks.

    Attributes:
        name: the parameter's name.
        distribution: how training, validation and test tasks draw it.
        shape: the value's shape; ``()`` for a scalar.
        low, high: inclusive bounds every value must respect (also for hand-made tasks).
        integer: values must be whole numbers.
        simplex: values along the last axis must sum to one (probability vectors).
        doc: one line saying what the parameter means.
    """

    name: str
    distribution: Distribution
    shape: tuple[int, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    simplex: bool = False
    doc: str = ""

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        value = np.asarray(self.distribution.sample(rng, self.shape), dtype=np.float64)
        return np.rint(value) if self.integer else value

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "scalar"
        return f"{self.name} ({shape}) ~ {self.distribution.describe()}"

    def validate(self, value: Any) -> None:
        """Raise ``ValueError`` naming this parameter if ``value`` is not allowed."""
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameter {self.name!r}: {value!r} is not numeric") from exc
        if arr.shape != self.shape:
            raise ValueError(f"parameter {self.name!r} has shape {arr.shape}, expected {self.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {self.name!r} must be finite, got {_short(_freeze(arr))}")
        if np.any(arr < self.low) or np.any(arr > self.high):
            bad = arr[(arr < self.low) | (arr > self.high)].ravel()[0]
            raise ValueError(
                f"parameter {self.name!r} = {bad:g} is out of range; allowed range is "
                f"[{self.low:g}, {self.high:g}]"
            )
        if self.integer and np.any(arr != np.rint(arr)):
            raise ValueError(f"parameter {self.name!r} must be a whole number, got {value!r}")
        if isinstance(self.distribution, Choice) and not np.all(
            np.isin(arr, np.asarray(self.distribution.values))
        ):
            raise ValueError(
                f"parameter {self.name!r} = {value!r} is not one of the allowed values "
                f"{self.distribution.values}"
            )
        if self.simplex and not np.allclose(arr.sum(axis=-1), 1.0, atol=1e-6):
            raise ValueError(
                f"parameter {self.name!r} must sum to 1 along its last axis "
                f"(probability vectors); sums range over "
                f"[{arr.sum(axis=-1).min():g}, {arr.sum(axis=-1).max():g}]"
            )


class ParameterSpace(Sequence[Param]):
    """An ordered collection of :class:`Param` with sampling and validation."""

    def __init__(self, params: Sequence[Param]) -> None:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        self._params = tuple(params)

    def __getitem__(self, index: Any) -> Any:
        return self._params[index]

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._params)

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw one value of every parameter, in declaration order."""
        return {p.name: p.sample(rng) for p in self._params}

    def validate(self, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for a missing, unknown or out-of-range parameter."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"missing task parameter(s) {missing}; this family needs {list(self.names)}")
        unknown = [n for n in params if n not in self.names]
        if unknown:
            raise ValueError(f"unknown task parameter(s) {unknown}; this family has {list(self.names)}")
        for p in self._params:
            p.validate(params[p.name])

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self._params)
