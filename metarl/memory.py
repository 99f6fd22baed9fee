"""Keep freed heap memory in the process, so that large tensors do not page-fault on every use.

glibc's ``malloc`` serves every allocation above 32 MB (one ``(40, 4000, 100)`` float32 activation
of MAML-TRPO's paper batch is 64 MB) with a fresh ``mmap`` and returns it to the kernel on
``free``; the next allocation of the same size then faults in all of its pages again, one 4 KB page
at a time. A MAML-TRPO outer step on the HalfCheetah paper batch took about 680,000 such faults
(2.7 GB of pages zeroed and mapped) and spent roughly 40% of its time in them
(``benchmarks/maml_iteration/README.md``). PyTorch's CPU performance guide gives the usual cures:
a caching allocator (jemalloc, tcmalloc) preloaded with ``LD_PRELOAD``, or the glibc tunables.
:func:`keep_freed_memory` applies the tunables from inside the process with ``mallopt``: no
``mmap`` for large blocks (``M_MMAP_MAX = 0``, so they come from the heap and are reused) and no
trimming of the heap's free top (``M_TRIM_THRESHOLD``). The process then keeps its peak heap size
until it exits, which is what a training process wants.

The training entry points (:func:`metarl.agents.maml_train.train`, :func:`metarl.agents.rl2_train.train`
and the ``metarl`` command) call it. ``METARL_KEEP_FREED_MEMORY=0`` turns it off; on a C library
without ``mallopt`` (not glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Make glibc ``malloc`` keep and reuse freed memory (see the module doc); returns whether the
    settings are in effect. Idempotent; process-wide."""
    global _applied
    if _applied:
        return True
    if os.environ.get("METARL_KEEP_FREED_MEMORY", "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so 2**31 - 1 is "never".
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
