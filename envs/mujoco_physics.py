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

Why not ``mujoco.rollout`` (MuJoCo 3.3.0): it does the same loop in C and accepts the initial warm
start (``initial_warmstart``), but it returns only the ``mjSTATE_FULLPHYSICS`` part of the final
states, not ``qacc_warmstart``; the warm start after the last step cannot be recovered from the
returned states, and restarting it from zero every policy step changes HalfCheetah's trajectory
visibly within a few steps (observations differ by more than 10 after 1000 steps). It also cannot
return the quantities Gymnasium reads after the step (Ant's ``xpos``, ``cfrc_ext``; Humanoid's
``xipos``, ``cinert``, ``cvel``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import mujoco
import numpy as np

__all__ = ["BatchedPhysics", "FieldSpec", "default_num_threads"]

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
    ) -> None:
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
        self._pool = (
            ThreadPoolExecutor(self.num_threads - 1, thread_name_prefix="metarl-mujoco")
            if self.num_threads > 1
            else None
        )

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
