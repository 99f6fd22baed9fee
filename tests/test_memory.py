"""metarl.memory: freed large blocks are kept and reused instead of being faulted in again."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from metarl import memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@linux_only
def test_freed_64_mb_blocks_are_reused_without_page_faults() -> None:
    assert memory.keep_freed_memory()
    n = 16 * 2**20  # 64 MB of float32, twice glibc's largest mmap threshold
    faults = []
    for _ in range(8):  # the heap reaches its working size within a few rounds, then stays there
        before = _minor_faults()
        a = torch.ones(n)
        assert a[-1].item() == 1.0
        del a
        faults.append(_minor_faults() - before)
    # With glibc's defaults every round faults in all 16,384 pages of the block again.
    assert sum(faults[-3:]) < 1000, f"page faults per round: {faults}"


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setenv("METARL_KEEP_FREED_MEMORY", "0")
    assert memory.keep_freed_memory() is False
