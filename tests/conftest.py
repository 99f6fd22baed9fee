"""Shared fixtures: one thread for torch, a headless matplotlib."""

import os

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
