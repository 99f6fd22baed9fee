"""The family registry: ``register_family``, ``make_family``, ``list_families``.

Registration is data: an id, a ``"module:Class"`` entry point imported only when the family is
made, and JSON-ready default keyword arguments. Every family is also registered with Gymnasium as
``metarl/<id>``. Third-party packages register families from the ``metarl.families`` entry-point
group; each entry point names a module (or a callable) that calls :func:`register_family`, and the
group is loaded the first time an id is not found or the families are listed.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from metarl.family import TaskFamily
from metarl.task import Task

__all__ = ["FamilySpec", "family_spec", "list_families", "make_family", "register_family"]

_ID_PATTERN = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.\-]*?)-v(?P<version>\d+)$")
ENTRY_POINT_GROUP = "metarl.families"


@dataclass(frozen=True)
class FamilySpec:
    """What the registry knows of a family before importing it."""

    id: str
    entry_point: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return _parse_id(self.id)[0]

    @property
    def version(self) -> int:
        return _parse_id(self.id)[1]


_REGISTRY: dict[str, FamilySpec] = {}
_plugins_loaded = False


def _parse_id(family_id: str) -> tuple[str, int]:
    match = _ID_PATTERN.match(family_id) if isinstance(family_id, str) else None
    if match is None:
        raise ValueError(f"family id {family_id!r} must look like 'Name-v<version>', e.g. 'Navigation2D-v0'")
    return match["name"], int(match["version"])


def register_family(id: str, entry_point: str, *, override: bool = False, **defaults: Any) -> FamilySpec:
    """Register a task family.

    Args:
        id: ``"Name-v<version>"``; the class's ``name`` and ``version`` must agree with it.
        entry_point: ``"package.module:ClassName"`` of a :class:`TaskFamily` subclass.
        override: replace an existing registration instead of raising.
        **defaults: keyword arguments for the class, overridable in :func:`make_family`.

    Returns:
        The stored :class:`FamilySpec`.
    """
    _parse_id(id)
    if not isinstance(entry_point, str) or ":" not in entry_point:
        raise ValueError(f"entry_point must be a string 'package.module:ClassName', got {entry_point!r}")
    if id in _REGISTRY and not override and _REGISTRY[id].entry_point != entry_point:
        raise ValueError(
            f"family {id!r} is already registered with {_REGISTRY[id].entry_point!r}; "
            f"pass override=True to replace it"
        )
    spec = FamilySpec(id=id, entry_point=entry_point, defaults=dict(defaults))
    _REGISTRY[id] = spec
    gym_id = f"metarl/{id}"
    if gym_id in gym.registry:
        del gym.registry[gym_id]
    gym.register(id=gym_id, entry_point="metarl.registry:make_gym_env", kwargs={"family_id": id})
    return spec


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        if callable(loaded) and not isinstance(loaded, type):
            loaded()


def family_spec(id: str) -> FamilySpec:
    """The registered spec of ``id``; an unknown id raises ``KeyError`` listing the closest ids."""
    if id not in _REGISTRY:
        _load_plugins()
    if id not in _REGISTRY:
        close = difflib.get_close_matches(str(id), list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise KeyError(f"unknown family {id!r}; {hint}registered families: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[id]


def _load_class(entry_point: str) -> type[TaskFamily]:
    module_name, _, attr = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r} for entry point {entry_point!r}: {exc}") from exc
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r} ({entry_point!r})") from exc
    if not (isinstance(cls, type) and issubclass(cls, TaskFamily)):
        raise TypeError(f"entry point {entry_point!r} is not a metarl.TaskFamily subclass")
    return cls


def make_family(id: str, **overrides: Any) -> TaskFamily:
    """Instantiate a registered family with its defaults updated by ``overrides``."""
    spec = family_spec(id)
    cls = _load_class(spec.entry_point)
    # Checked on the instance: one class may serve several ids whose name comes from its keyword
    # arguments (``ML1-<task>-v0``, ``<Env>RandParams-v0``).
    family = cls(**{**spec.defaults, **overrides})
    if (family.name, family.version) != (spec.name, spec.version):
        raise ValueError(
            f"{spec.entry_point} declares {family.name}-v{family.version}, but is registered as {id!r}"
        )
    return family


def list_families() -> list[str]:
    """The ids of every registered family (built-in and from plugins), sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def make_gym_env(family_id: str, task: Task | dict[str, Any] | None = None, **family_kwargs: Any) -> gym.Env:
    """Gymnasium entry point behind ``gymnasium.make("metarl/<id>", task=...)``.

    ``task`` is a :class:`Task` or a mapping of its parameters; other keywords go to the family.
    """
    family = make_family(family_id, **family_kwargs)
    if isinstance(task, dict):
        task = family.task(**task)
    return family.make_env(task)
