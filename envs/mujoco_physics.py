"""Many MuJoCo simulations stepped together by a persistent pool of threads.

:class:`BatchedPhysics` keeps every sub-env's complete *integration state* (``mjSTATE_INTEGRATION``:
time, ``qpos``, ``qvel``, ``act``, the solver's warm start ``qacc_warmstart``, ``ctrl``, applied
forces, mocap, user data and plugin state - everything ``mj_step`` reads that it does not recompute)
as one row of a ``(num_envs, nstate)`` array, and advances all rows by ``frame_skip`` physics steps
per call of :meth:`BatchedPhysics.step`. Each worker thread owns one scratch ``MjData`` and, for
every sub-env of the chunks it takes, loads the row (``mj_setState``), makes the calls a Gymnasium
v5 ``MujocoEnv`` makes (``mj_step(model, data, nstep=frame_skip)``, then ``mj_rnePostConstraint``
when contact forces are read) and stores the row back (``mj_getState``). Since the integration state
is by definition all of ``mj_step``'s input, this gives bit for bit the trajectory of a persistent
per-env ``MjData`` (the tests compare against Gymnasium for equality), while the threads work in
one small, cache-resident ``MjData`` each instead of one per sub-env (each ``MjData`` reserves a
6 MB arena), the controls are written into all rows with one numpy assignment and ``qpos``/``qvel``
are read as strided views of the state array without per-env copies. ``mj_step`` releases the GIL,
so the threads simulate in parallel; the chunks are taken from a shared counter so that a thread
slowed by other processes on a shared machine does not hold the others up.

The loop runs in C (``envs/_mjbatch.c``, compiled on first use with the system C compiler against
the installed MuJoCo's headers and library, cached, and called through ``ctypes``, which releases
the GIL for the whole batch): the Python loop pays the GIL once per sub-env and policy step, and
with two threads that costs about a quarter of the physics throughput on these machines
(``benchmarks/mujoco_speed``). Both loops make the same MuJoCo calls in the same order on the same
data, so they give the same bits (tested). ``METARL_MUJOCO_KERNEL=python`` selects the Python loop;
with no C compiler the Python loop is used, with a warning. One difference: a MuJoCo *fatal* error
inside ``mj_step`` (``mju_error``, e.g. an exhausted ``MjData`` arena; warnings such as a full contact
buffer are not errors) ends the process with MuJoCo's message in the C loop, where the Python loop
raises ``mujoco.FatalError``; checkpoints already written are not affected.

Why not ``mujoco.rollout`` (MuJoCo 3.3.0): it does the same loop in C and accepts the initial warm
start (``initial_warmstart``), but it returns only the ``mjSTATE_FULLPHYSICS`` part of the final
states, not ``qacc_warmstart``; the warm start after the last step cannot be recovered from the
returned states, and restarting it from zero every policy step changes HalfCheetah's trajectory
visibly within a few steps (observations differ by more than 10 after 1000 steps). It also cannot
return the quantities Gymnasium reads after the step (Ant's ``xpos``, ``cfrc_ext``; Humanoid's
``xipos``, ``cinert``, ``cvel``).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import mujoco
import numpy as np

__all__ = ["KERNELS", "BatchedPhysics", "FieldSpec", "c_kernel_error", "default_kernel", "default_num_threads",
           "load_c_kernel"]  # fmt: skip

#: The stepping loops :class:`BatchedPhysics` has (same results): ``"c"`` and ``"python"``.
KERNELS = ("c", "python")

#: ``(name, index)``: ``getattr(data, name)[index]`` of every sub-env after each step and reset;
#: ``index`` is ``None`` for the whole array.
FieldSpec = tuple[str, tuple[int | slice, ...] | None]

_INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)
# State components that are read through views of the state array rather than copied.
_STATE_FIELDS = {"qpos": mujoco.mjtState.mjSTATE_QPOS, "qvel": mujoco.mjtState.mjSTATE_QVEL}
# Sizes that must agree for models to share one scratch MjData (same robot, other parameters).
_SIZES = ("nq", "nv", "nu", "na", "nbody", "njnt", "ngeom", "nsite", "neq", "nmocap", "nuserdata", "narena")


def default_num_threads() -> int:
    """Threads to use: ``METARL_MUJOCO_THREADS`` if set, otherwise the cores this process may use."""
    env = os.environ.get("METARL_MUJOCO_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_kernel() -> str:
    """``METARL_MUJOCO_KERNEL`` if set (``"c"`` or ``"python"``), otherwise ``"c"``."""
    value = os.environ.get("METARL_MUJOCO_KERNEL", "c").strip().lower() or "c"
    if value not in KERNELS:
        raise ValueError(f"METARL_MUJOCO_KERNEL must be one of {KERNELS}, got {value!r}")
    return value


_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mjbatch.c")
_kernel_lock = threading.Lock()
_kernel: ctypes.CDLL | None = None
_kernel_error: str | None = None


def _cache_dir() -> str:
    return os.environ.get("METARL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "metarl"
    )


def _compile_kernel() -> str:
    """Build ``_mjbatch.c`` against the installed MuJoCo (once per source and MuJoCo version) and
    return the shared library's path. Raises ``RuntimeError`` with the compiler's message."""
    package = os.path.dirname(os.path.abspath(mujoco.__file__))
    libs = sorted(f for f in os.listdir(package) if f.startswith("libmujoco.so"))
    include = os.path.join(package, "include")
    if not libs or not os.path.isdir(include):
        raise RuntimeError(f"no libmujoco.so or include/ in the mujoco package at {package}")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    with open(_SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(
        source + mujoco.__version__.encode() + package.encode() + sys.platform.encode()
    ).hexdigest()[:16]
    cache = _cache_dir()
    target = os.path.join(cache, f"mjbatch-{key}.so")
    if os.path.exists(target):
        return target
    os.makedirs(cache, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    cmd = [
        compiler, "-O2", "-shared", "-fPIC", "-pthread", f"-I{include}", _SOURCE, "-o", tmp,
        f"-L{package}", f"-l:{libs[0]}", f"-Wl,-rpath,{package}",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
        os.replace(tmp, target)  # atomic: concurrent builders leave one complete file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_c_kernel() -> ctypes.CDLL | None:
    """The compiled stepping kernel, or ``None`` if it cannot be built here (see
    :func:`c_kernel_error`); built on first call and cached on disk (``METARL_CACHE_DIR``, default
    ``~/.cache/metarl``)."""
    global _kernel, _kernel_error
    with _kernel_lock:
        if _kernel is None and _kernel_error is None:
            try:
                lib = ctypes.CDLL(_compile_kernel())
                fn = lib.metarl_step_batch
                p = ctypes.c_void_p
                fn.argtypes = [
                    ctypes.c_int, p, ctypes.c_int, p, p, ctypes.c_int, ctypes.c_uint, ctypes.c_int,
                    ctypes.c_int, ctypes.c_int, p, ctypes.c_int, p, p, p,
                ]  # fmt: skip
                fn.restype = ctypes.c_int
                _kernel = lib
            except (OSError, RuntimeError) as e:
                _kernel_error = str(e)
        return _kernel


def c_kernel_error() -> str | None:
    """Why the C kernel could not be built (``None`` if it was, or was not tried yet)."""
    return _kernel_error


def _addresses(values: Sequence[int]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * max(1, len(values)))(*values)


def _state_slice(model: mujoco.MjModel, component: int) -> slice:
    """Where one ``mjtState`` component sits in an ``mjSTATE_INTEGRATION`` vector (components are
    stored in the order of their bits)."""
    before = _INTEGRATION & (component - 1)
    start = mujoco.mj_stateSize(model, before) if before else 0
    return slice(start, start + mujoco.mj_stateSize(model, component))


class BatchedPhysics:
    """Steps ``len(models)`` MuJoCo simulations in lockstep.

    Args:
        models: one model per sub-env (the same object may appear several times; models are only
            read while stepping, so sharing is safe). All must have the same sizes (one robot).
        frame_skip: physics steps per :meth:`step`.
        fields: the ``MjData`` quantities available in ``out[key]`` (one row per sub-env) after
            every step and reset, e.g. ``{"qpos": ("qpos", None), "torso_xy": ("xpos", (1, slice(0, 2)))}``.
            Whole ``qpos`` and ``qvel`` are views into the state array (read-only by convention);
            other fields are copied out of the scratch ``MjData`` after each sub-env's step.
        post_constraint: call ``mj_rnePostConstraint`` after stepping (Gymnasium always does; it
            only fills ``cacc``, ``cfrc_int`` and ``cfrc_ext``, which no later step reads, so it can
            be skipped when they are not observed).
        num_threads: worker threads including the caller's; ``None`` for
            :func:`default_num_threads`. With 1 everything runs on the calling thread.
        chunks_per_thread: work units per thread (taken from a shared counter, about 0.3 us each);
            small units balance uneven per-env costs (contacts) and threads slowed down by other
            processes, so that no thread idles long at the end of a step.
        kernel: ``"c"`` (the compiled loop; ``RuntimeError`` if it cannot be built here),
            ``"python"``, or ``None`` for :func:`default_kernel`, which falls back to the Python loop
            with a warning when there is no C compiler. :attr:`kernel` is the loop in use.
    """

    def __init__(
        self,
        models: Sequence[mujoco.MjModel],
        frame_skip: int,
        fields: Mapping[str, FieldSpec],
        *,
        post_constraint: bool = True,
        num_threads: int | None = None,
        chunks_per_thread: int = 16,
        kernel: str | None = None,
    ) -> None:
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS} or None, got {kernel!r}")
        self.models = list(models)
        self.num_envs = len(self.models)
        if self.num_envs < 1:
            raise ValueError("BatchedPhysics needs at least one model")
        first = self.models[0]
        for m in self.models[1:]:
            if m is not first and any(getattr(m, s) != getattr(first, s) for s in _SIZES):
                raise ValueError("BatchedPhysics needs models of one size (the same robot)")
        self.frame_skip = int(frame_skip)
        self.post_constraint = bool(post_constraint)
        self.nu = first.nu
        self.num_threads = default_num_threads() if num_threads is None else max(1, int(num_threads))
        self.num_threads = min(self.num_threads, self.num_envs)

        # The integration state of every sub-env, one row each, and views of its parts.
        self.state = np.zeros((self.num_envs, mujoco.mj_stateSize(first, _INTEGRATION)))
        self._rows = list(self.state)
        #: The controls of the last step, ``(num_envs, nu)`` (a view of the state rows: ``data.ctrl``).
        self.ctrl = self.state[:, _state_slice(first, mujoco.mjtState.mjSTATE_CTRL)]
        # One scratch MjData per worker (index 0 is the calling thread, also used for resets).
        self._scratch = [mujoco.MjData(first) for _ in range(self.num_threads)]
        self.out: dict[str, np.ndarray] = {}
        copied: list[tuple[np.ndarray, str, tuple[int | slice, ...] | None]] = []
        for key, (name, index) in fields.items():
            if name in _STATE_FIELDS and index is None:
                self.out[key] = self.state[:, _state_slice(first, _STATE_FIELDS[name])]
                continue
            probe = getattr(self._scratch[0], name)
            shape = probe.shape if index is None else probe[index].shape
            self.out[key] = np.zeros((self.num_envs, *shape))
            copied.append((self.out[key], name, index))
        # Per worker: (our (num_envs, ...) array, view of the scratch field) pairs, built once.
        self._copies = [
            [
                (dst, getattr(d, name) if index is None else getattr(d, name)[index])
                for dst, name, index in copied
            ]
            for d in self._scratch
        ]
        self._check_layout()

        n_chunks = min(self.num_envs, self.num_threads * max(1, chunks_per_thread))
        bounds = np.linspace(0, self.num_envs, n_chunks + 1).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
        self._pool: ThreadPoolExecutor | None = None
        self.kernel = self._setup_c_kernel(kernel, copied)
        if self.kernel == "python" and self.num_threads > 1:
            self._pool = ThreadPoolExecutor(self.num_threads - 1, thread_name_prefix="metarl-mujoco")

    def _setup_c_kernel(
        self, kernel: str | None, copied: list[tuple[np.ndarray, str, tuple[int | slice, ...] | None]]
    ) -> str:
        """Prepare the C kernel's arguments; returns the kernel in use."""
        wanted = default_kernel() if kernel is None else kernel
        if wanted == "python":
            return "python"
        # The C loop copies fields as flat runs of doubles: every source must be one contiguous run.
        sources = [src for pairs in self._copies for _, src in pairs]
        if not all(s.dtype == np.float64 and s.flags.c_contiguous for s in sources):
            if kernel == "c":
                raise ValueError("kernel='c' needs contiguous float64 fields; use kernel='python'")
            return "python"
        lib = load_c_kernel()
        if lib is None:
            if kernel == "c":
                raise RuntimeError(f"the C stepping kernel could not be built: {c_kernel_error()}")
            warnings.warn(
                f"metarl: using the slower Python MuJoCo stepping loop ({c_kernel_error()}); "
                "set METARL_MUJOCO_KERNEL=python to silence this",
                RuntimeWarning,
                stacklevel=3,
            )
            return "python"
        bounds = np.array([lo for lo, _ in self._chunks] + [self._chunks[-1][1]], dtype=np.intc)
        counts = np.array([src.size for _, src in self._copies[0]] or [0], dtype=np.dtype(ctypes.c_long))
        self._c_arrays = (bounds, counts)  # passed by address below: keep them alive
        # The ctypes pointer arrays are held by the argument tuple itself.
        self._c_args = (
            self.num_envs, _addresses([m._address for m in self.models]), self.num_threads,
            _addresses([d._address for d in self._scratch]), self.state.ctypes.data, self.state.shape[1],
            _INTEGRATION, self.frame_skip, int(self.post_constraint), len(self._chunks),
            bounds.ctypes.data, len(copied),
            _addresses([src.ctypes.data for pairs in self._copies for _, src in pairs]),
            _addresses([dst.ctypes.data for dst, _, _ in copied]), counts.ctypes.data,
        )  # fmt: skip
        self._c_step = lib.metarl_step_batch
        return "c"

    def _check_layout(self) -> None:
        """The state views must be where ``mj_getState`` puts ``qpos``, ``qvel`` and ``ctrl``."""
        m, d = self.models[0], mujoco.MjData(self.models[0])
        d.qpos[:] = np.arange(m.nq) + 1.5
        d.qvel[:] = np.arange(m.nv) + 100.5
        d.ctrl[:] = np.arange(m.nu) + 1000.5
        row = np.empty(self.state.shape[1])
        mujoco.mj_getState(m, d, row, _INTEGRATION)
        for name, component in (*_STATE_FIELDS.items(), ("ctrl", mujoco.mjtState.mjSTATE_CTRL)):
            if not np.array_equal(row[_state_slice(m, component)], getattr(d, name)):
                raise RuntimeError(f"unexpected mjSTATE_INTEGRATION layout for {name}")  # pragma: no cover

    # ------------------------------------------------------------------------------- stepping
    def _step_range(self, lo: int, hi: int, worker: int) -> None:
        d, copies = self._scratch[worker], self._copies[worker]
        models, rows, nstep, post = self.models, self._rows, self.frame_skip, self.post_constraint
        set_state, get_state, step, rne = (
            mujoco.mj_setState,
            mujoco.mj_getState,
            mujoco.mj_step,
            mujoco.mj_rnePostConstraint,
        )
        spec = _INTEGRATION
        for i in range(lo, hi):
            m, row = models[i], rows[i]
            set_state(m, d, row, spec)
            step(m, d, nstep)  # releases the GIL
            if post:
                rne(m, d)
            get_state(m, d, row, spec)
            for dst, src in copies:
                dst[i] = src

    def _worker(self, counter: itertools.count, worker: int) -> None:
        chunks = self._chunks
        n = len(chunks)
        while True:
            j = next(counter)  # atomic: itertools.count is advanced under the GIL
            if j >= n:
                return
            lo, hi = chunks[j]
            self._step_range(lo, hi, worker)

    def step(self, ctrl: np.ndarray) -> None:
        """Set every sub-env's controls to ``ctrl`` (``(num_envs, nu)``) and advance them all."""
        self.ctrl[...] = ctrl
        if self.kernel == "c":
            self._c_step(*self._c_args)  # ctypes releases the GIL for the call
            return
        if self._pool is None:
            self._step_range(0, self.num_envs, 0)
            return
        counter = itertools.count()
        submit, worker = self._pool.submit, self._worker
        futures: list[Future[None]] = [submit(worker, counter, w) for w in range(1, self.num_threads)]
        self._worker(counter, 0)
        for f in futures:
            f.result()

    # ------------------------------------------------------------------------------- resets
    def set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Gymnasium's ``reset``: ``mj_resetData``, then ``qpos``/``qvel`` and ``mj_forward``."""
        m, d = self.models[i], self._scratch[0]
        mujoco.mj_resetData(m, d)
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_forward(m, d)
        mujoco.mj_getState(m, d, self._rows[i], _INTEGRATION)
        for dst, src in self._copies[0]:
            dst[i] = src

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
