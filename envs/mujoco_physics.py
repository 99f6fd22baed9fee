"""Many MuJoCo simulations stepped together by a persistent pool of threads.

:class:`BatchedPhysics` owns one ``MjData`` per sub-env (and one ``MjModel`` per sub-env, or models
shared by several sub-envs) and advances all of them by ``frame_skip`` physics steps per call of
:meth:`BatchedPhysics.step`, with exactly the calls a Gymnasium v5 ``MujocoEnv`` makes
(``data.ctrl[:] = action``, ``mj_step(model, data, nstep=frame_skip)``, and
``mj_rnePostConstraint`` when contact forces are read). The sub-envs are split into chunks that the
pool's threads (the caller's thread among them) take from a shared counter; ``mj_step`` releases
the GIL, so the threads simulate in parallel while Python only copies results out.

Why not ``mujoco.rollout``: its threads step scratch ``MjData`` objects and it returns only the
"full physics" state (time, ``qpos``, ``qvel``, ``act``). A persistent env also carries the
constraint solver's warm start (``qacc_warmstart``) from one policy step to the next, and
rollout neither returns it nor can it be reconstructed from the returned states; resetting it every
policy step changes HalfCheetah's trajectory visibly within a few steps (measured: observations
differ by more than 10 after 1000 steps). It also cannot return the quantities Gymnasium reads from
the intermediate Runge-Kutta stage (Ant's ``xpos``, ``cfrc_ext``; Humanoid's ``xipos``,
``cinert``, ``cvel``). Keeping one ``MjData`` per sub-env makes the batched env bit-identical to
the single env, at the price of one short Python call sequence per sub-env and step.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import mujoco
import numpy as np

__all__ = ["BatchedPhysics", "FieldSpec", "default_num_threads"]

#: ``(name, index)``: copy ``getattr(data, name)[index]`` of every sub-env after each step and reset;
#: ``index`` is ``None`` for the whole array.
FieldSpec = tuple[str, tuple[int | slice, ...] | None]
_Copy = tuple[np.ndarray, np.ndarray]


def default_num_threads() -> int:
    """Threads to use: ``METARL_MUJOCO_THREADS`` if set, otherwise the cores this process may use."""
    env = os.environ.get("METARL_MUJOCO_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class BatchedPhysics:
    """Steps ``len(models)`` MuJoCo simulations in lockstep.

    Args:
        models: one model per sub-env (the same object may appear several times; models are only
            read while stepping, so sharing is safe).
        frame_skip: physics steps per :meth:`step`.
        fields: the ``MjData`` fields copied into ``out[key]`` (one row per sub-env) after every
            step and reset, e.g. ``{"qpos": ("qpos", None), "torso_xy": ("xpos", (1, slice(0, 2)))}``.
        post_constraint: call ``mj_rnePostConstraint`` after stepping (Gymnasium always does; it
            only fills ``cacc``, ``cfrc_int`` and ``cfrc_ext``, which no later step reads, so it can
            be skipped when they are not observed).
        num_threads: worker threads including the caller's; ``None`` for
            :func:`default_num_threads`. With 1 everything runs on the calling thread.
        chunks_per_thread: work units per thread; more balance uneven per-env costs (contacts).
    """

    def __init__(
        self,
        models: Sequence[mujoco.MjModel],
        frame_skip: int,
        fields: Mapping[str, FieldSpec],
        *,
        post_constraint: bool = True,
        num_threads: int | None = None,
        chunks_per_thread: int = 4,
    ) -> None:
        self.models = list(models)
        self.num_envs = len(self.models)
        if self.num_envs < 1:
            raise ValueError("BatchedPhysics needs at least one model")
        self.frame_skip = int(frame_skip)
        self.post_constraint = bool(post_constraint)
        self.datas = [mujoco.MjData(m) for m in self.models]
        self.nu = self.models[0].nu
        self.ctrl = np.zeros((self.num_envs, self.nu))
        self.out: dict[str, np.ndarray] = {}
        for key, (name, index) in fields.items():
            probe = getattr(self.datas[0], name)
            shape = probe.shape if index is None else probe[index].shape
            self.out[key] = np.zeros((self.num_envs, *shape))
        # Per sub-env: model, data, (data.ctrl, our ctrl row) and the (our row, data field) copies.
        # MjData arrays are views into buffers that live as long as the MjData, so the views are
        # built once and the per-step Python work is a few array assignments.
        self._jobs: list[tuple[mujoco.MjModel, mujoco.MjData, np.ndarray, np.ndarray, list[_Copy]]] = []
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            copies: list[_Copy] = []
            for (name, index), dst in zip(fields.values(), self.out.values(), strict=True):
                src = getattr(d, name)
                copies.append((dst[i], src if index is None else src[index]))
            self._jobs.append((m, d, d.ctrl, self.ctrl[i], copies))
        self.num_threads = default_num_threads() if num_threads is None else max(1, int(num_threads))
        self.num_threads = min(self.num_threads, self.num_envs)
        n_chunks = min(self.num_envs, self.num_threads * max(1, chunks_per_thread))
        bounds = np.linspace(0, self.num_envs, n_chunks + 1).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
        self._pool = (
            ThreadPoolExecutor(self.num_threads - 1, thread_name_prefix="metarl-mujoco")
            if self.num_threads > 1
            else None
        )
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------- stepping
    def _step_range(self, lo: int, hi: int) -> None:
        nstep, post = self.frame_skip, self.post_constraint
        step, rne = mujoco.mj_step, mujoco.mj_rnePostConstraint
        for m, d, ctrl_dst, ctrl_src, copies in self._jobs[lo:hi]:
            ctrl_dst[...] = ctrl_src
            step(m, d, nstep)  # releases the GIL
            if post:
                rne(m, d)
            for dst, src in copies:
                dst[...] = src

    def _worker(self, counter: itertools.count) -> None:
        chunks = self._chunks
        while True:
            with self._lock:
                j = next(counter)
            if j >= len(chunks):
                return
            self._step_range(*chunks[j])

    def step(self, ctrl: np.ndarray) -> None:
        """Set every sub-env's controls to ``ctrl`` (``(num_envs, nu)``) and advance them all."""
        self.ctrl[...] = ctrl
        if self._pool is None:
            self._step_range(0, self.num_envs)
            return
        counter = itertools.count()
        futures: list[Future[None]] = [
            self._pool.submit(self._worker, counter) for _ in range(self.num_threads - 1)
        ]
        self._worker(counter)
        for f in futures:
            f.result()

    # ------------------------------------------------------------------------------- resets
    def set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Gymnasium's ``reset``: ``mj_resetData``, then ``qpos``/``qvel`` and ``mj_forward``."""
        m, d = self.models[i], self.datas[i]
        mujoco.mj_resetData(m, d)
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_forward(m, d)
        for dst, src in self._jobs[i][4]:
            dst[...] = src

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
