"""Shared fixtures: one thread for torch, a headless matplotlib, the scripts importable as modules."""

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from hypothesis import settings

# Property-based tests draw the same examples on every run (tests are deterministic; CI included).
settings.register_profile("metarl", derandomize=True, deadline=None)
settings.load_profile("metarl")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def _load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def script_module() -> Callable[[str], ModuleType]:
    """A loader of ``scripts/<name>.py`` as a module: ``script_module("rl2_common")``."""
    return _load_script
