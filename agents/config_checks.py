"""Type checks for agent configs: each names the config and field, so a bad value in a JSON or TOML
config file fails with a one-line ``ValueError`` rather than a traceback deep in training.

JSON has one number type, so an int is accepted where a float is expected; the reverse is not (a
``3.0`` for a size is rejected). ``bool`` is never accepted as a number. NaN and infinities are
rejected: no hyperparameter of metarl's agents means anything at NaN.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from numbers import Integral, Real
from pathlib import Path
from typing import Any

__all__ = ["check_bool", "check_int", "check_real", "check_str", "read_config_file"]


def read_config_file(
    path: str | os.PathLike[str], *, what: str = "config file", section: str | None = None
) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config file into a dict of config keys.

    With ``section``, a table of that name holds the keys if present (``[rl2]`` in a TOML file);
    otherwise the top level does. Every failure is a ``ValueError`` naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {what} {str(path)!r}: {exc}") from exc
    if path.suffix not in (".json", ".toml"):
        raise ValueError(f"{what} {str(path)!r} must end in .json or .toml")
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a table of config keys")
    if section is not None:
        data = data.get(section, data)
        if not isinstance(data, dict):
            raise ValueError(f"{what} {str(path)!r}: {section!r} must be a table of config keys")
    return dict(data)


def check_int(owner: str, name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    """``value`` is an int (not a bool) of at least ``minimum`` (or ``None`` if ``optional``)."""
    if optional and value is None:
        return
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        what = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{owner}.{name} must be {what}{' or None' if optional else ''}, got {value!r}")


def check_real(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a finite real number (not a bool) (or ``None`` if ``optional``)."""
    if optional and value is None:
        return
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(
            f"{owner}.{name} must be a finite number{' or None' if optional else ''}, got {value!r}"
        )


def check_bool(owner: str, name: str, value: Any) -> None:
    """``value`` is ``True`` or ``False`` (a string ``"false"`` would otherwise read as true)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be true or false, got {value!r}")


def check_str(owner: str, name: str, value: Any) -> None:
    """``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{owner}.{name} must be a non-empty string, got {value!r}")


#: The ``sampler`` values of the agents' configs (see ``MAMLTRPOConfig.sampler``).
SAMPLERS = ("local", "local-per-task", "ray")


def check_sampler_options(owner: str, config: Any) -> None:
    """``config.sampler`` is one of :data:`SAMPLERS` and its Ray options (``ray_address``,
    ``ray_workers``, ``ray_cpus_per_worker``) have valid types and ranges."""
    check_str(owner, "sampler", config.sampler)
    if config.sampler not in SAMPLERS:
        raise ValueError(
            f"{owner}.sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {config.sampler!r}"
        )
    if config.ray_address is not None:
        check_str(owner, "ray_address", config.ray_address)
    check_int(owner, "ray_workers", config.ray_workers, minimum=1)
    check_real(owner, "ray_cpus_per_worker", config.ray_cpus_per_worker)
    if not config.ray_cpus_per_worker > 0:
        raise ValueError(f"{owner}.ray_cpus_per_worker must be positive, got {config.ray_cpus_per_worker!r}")
