"""Samplers: collect a batch of episodes for many tasks, in this process or on a Ray cluster.

A :class:`Sampler` turns *policy weights* into an :class:`~metarl.rollout.EpisodeBatch`::

    batch = sampler.sample(policy_factory, policy_state, tasks, episodes_per_task, seed)

The policy is not sent as an object: workers receive its state (a dict of NumPy arrays or torch
tensors, broadcast once per call) and build the policy themselves with ``policy_factory``, a small
picklable callable. That is what an on-policy meta-learner has at every iteration (new weights, the
same architecture), and it keeps the per-call payload to the weights alone.

Determinism. Every random number is a function of ``(seed, task index)`` only, where the task index
is the task's position in ``tasks``: the reset seeds of task ``k``'s sub-envs come from
``SeedSequence(seed, spawn_key=(k, 0))`` and its action noise from a generator seeded with
``SeedSequence(seed, spawn_key=(k, 1))`` (see :class:`PolicyContext`). Any partition of the tasks
over workers -- one local vector env, two Ray actors, an actor that died and was replaced -- gives
bit-identical episodes, provided the policy draws each task's noise from that task's generator and
computes each sub-env's action from its own observation (the reference
:class:`LinearGaussianPolicy` does; a torch policy does with one ``torch.Generator`` per task).

* :class:`LocalSampler`: :func:`~metarl.vector.make_vec` + :func:`~metarl.rollout.collect` here.
* :class:`RaySampler` (``pip install "metarl[ray]"``): one Ray actor per worker, each holding a
  batched vector env for a contiguous share of the tasks; a worker that dies is replaced and its
  share re-sampled. Ray is imported only when a ``RaySampler`` is made.

Both also run any other :class:`ShardJob` on the same workers with :meth:`~RaySampler.map_shares`:
a picklable callable that gets the worker's :class:`ShardRunner` (and so its cached vector env),
the broadcast weights and its share of the tasks, and returns what it collected. RL² collects its
trials that way (:mod:`metarl.agents.rl2_sampling`), with the same broadcast, split and fault
handling as :meth:`~RaySampler.sample`.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, Self, runtime_checkable

import gymnasium as gym
import numpy as np

from metarl.family import TaskFamily
from metarl.rollout import EpisodeBatch, Policy, collect
from metarl.task import Task, check_int
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__all__ = [
    "LinearGaussianPolicy",
    "LocalSampler",
    "PolicyContext",
    "PolicyFactory",
    "RaySampler",
    "Sampler",
    "ShardJob",
    "ShardRunner",
    "concatenate_batches",
    "make_sampler",
    "reset_seeds",
    "task_seed_sequence",
]

#: A policy's weights: parameter name -> NumPy array or torch tensor (anything picklable works).
PolicyState = Mapping[str, Any]


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def task_seed_sequence(seed: int, task_index: int, stream: int) -> np.random.SeedSequence:
    """The seed sequence of ``stream`` (0: env resets, 1: action noise) of task ``task_index``."""
    return np.random.SeedSequence(_check_seed(seed), spawn_key=(int(task_index), int(stream)))


def reset_seeds(seed: int, task_indices: Sequence[int], envs_per_task: int) -> list[int]:
    """Reset seeds for the sub-envs of a vector env running tasks ``task_indices`` (global indices),
    ``envs_per_task`` sub-envs each, in :func:`~metarl.vector.make_vec` order."""
    return [
        int(s)
        for k in task_indices
        for s in task_seed_sequence(seed, k, 0).generate_state(envs_per_task, dtype=np.uint32)
    ]


@dataclass(frozen=True)
class PolicyContext:
    """What a policy factory knows about the vector env its policy will act in.

    Attributes:
        task_indices: the global index (position in the sampler's ``tasks``) of each of the vector
            env's tasks; sub-env ``i`` runs task ``task_indices[i // envs_per_task]``.
        envs_per_task: sub-envs per task.
        seed: the sampling seed.
        observation_space: a single sub-env's observation space.
        action_space: a single sub-env's action space.
    """

    task_indices: tuple[int, ...]
    envs_per_task: int
    seed: int
    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]

    @property
    def num_envs(self) -> int:
        return len(self.task_indices) * self.envs_per_task

    def task_rngs(self) -> list[np.random.Generator]:
        """One fresh NumPy generator per task, a function of ``(seed, task index)`` only."""
        return [np.random.default_rng(task_seed_sequence(self.seed, k, 1)) for k in self.task_indices]

    def task_seeds(self) -> list[int]:
        """One 63-bit integer per task (for ``torch.Generator().manual_seed``), same derivation."""
        return [
            int(task_seed_sequence(self.seed, k, 1).generate_state(1, dtype=np.uint64)[0] >> 1)
            for k in self.task_indices
        ]


@runtime_checkable
class PolicyFactory(Protocol):
    """Builds the policy that acts in one vector env from the broadcast weights.

    Must be picklable (a module-level class or function), must not modify ``policy_state`` and
    must draw task ``k``'s randomness only from ``context.task_rngs()[k]`` (or ``task_seeds``).
    """

    def __call__(self, policy_state: PolicyState, context: PolicyContext) -> Policy: ...


@runtime_checkable
class Sampler(Protocol):
    """Collects ``episodes_per_task`` episodes of every task with the policy built from the weights.

    The batch is ordered by task (in the order of ``tasks``), then by episode, exactly like
    :func:`~metarl.rollout.collect`; ``batch.task_index`` indexes ``tasks``. A sampler is also a
    context manager whose exit calls :meth:`close` (``with make_sampler(...) as sampler:``); classes
    that subclass this protocol inherit that behaviour.
    """

    def sample(
        self,
        policy_factory: PolicyFactory,
        policy_state: PolicyState,
        tasks: Sequence[Task],
        episodes_per_task: int,
        seed: int,
    ) -> EpisodeBatch: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LinearGaussianPolicy:
    """A reference :class:`PolicyFactory` and policy: ``a ~ N(obs @ W + b, exp(log_std)^2)``.

    Weights are ``{"W": (obs_dim, act_dim), "b": (act_dim,), "log_std": (act_dim,)}`` NumPy arrays
    (see :meth:`init_state`). Actions are clipped to the action space. Each sub-env's mean is
    computed from its own row with an elementwise product and a sum (no BLAS call whose blocking
    could depend on the batch size), and each task's noise comes from its own generator, so the
    actions do not depend on how the tasks are split over vector envs.
    """

    def __init__(self, state: PolicyState | None = None, context: PolicyContext | None = None) -> None:
        self.state = state
        self.context = context
        self._rngs = context.task_rngs() if context is not None else []

    @staticmethod
    def init_state(obs_dim: int, act_dim: int, rng: np.random.Generator, std: float = 0.1) -> dict[str, Any]:
        """Small random weights drawn from ``rng``."""
        return {
            "W": rng.normal(0.0, 0.5, size=(obs_dim, act_dim)),
            "b": rng.normal(0.0, 0.05, size=act_dim),
            "log_std": np.full(act_dim, np.log(std)),
        }

    def __call__(self, policy_state: Any, context: Any = None) -> Any:
        """As a factory: ``factory(state, context) -> policy``; as a policy: ``policy(obs) -> actions``."""
        if self.context is None:
            if not isinstance(context, PolicyContext):
                raise TypeError(f"a policy factory is called with a PolicyContext, got {context!r}")
            return LinearGaussianPolicy(policy_state, context)
        return self._act(np.asarray(policy_state))

    def _act(self, observations: np.ndarray) -> np.ndarray:
        assert self.state is not None and self.context is not None
        space = self.context.action_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"LinearGaussianPolicy needs a Box action space, got {space}")
        w = np.asarray(self.state["W"], dtype=np.float64)
        obs = observations.reshape(observations.shape[0], -1).astype(np.float64)
        mean = (obs[:, :, None] * w[None]).sum(axis=1) + np.asarray(self.state["b"], dtype=np.float64)
        std = np.exp(np.asarray(self.state["log_std"], dtype=np.float64))
        ept = self.context.envs_per_task
        noise = np.concatenate([rng.standard_normal((ept, w.shape[1])) for rng in self._rngs])
        actions = (mean + std * noise).reshape(-1, *space.shape)
        return np.clip(actions, space.low, space.high).astype(space.dtype)


@runtime_checkable
class ShardJob(Protocol):
    """Work a sampler runs on each share of the tasks (see :meth:`RaySampler.map_shares`).

    Called on the worker that holds the share: ``runner`` is the worker's :class:`ShardRunner` (use
    :meth:`ShardRunner.vec_env` for a vector env of the share, kept between calls), ``tasks`` the
    share, ``task_offset`` the global index of its first task. Must be picklable and must not
    modify ``policy_state``; for the split of the tasks over workers not to change the result, every
    random number of task ``k`` must be a function of ``(seed, k)`` only.
    """

    def __call__(
        self,
        runner: ShardRunner,
        policy_state: PolicyState,
        tasks: tuple[Task, ...],
        task_offset: int,
        seed: int,
    ) -> Any: ...


@dataclass(frozen=True)
class _CollectEpisodes:
    """The :class:`ShardJob` of :meth:`Sampler.sample`: episodes of the share, via :func:`collect`."""

    policy_factory: PolicyFactory
    episodes_per_task: int

    def __call__(
        self, runner: ShardRunner, policy_state: PolicyState, tasks: tuple[Task, ...], task_offset: int,
        seed: int,
    ) -> EpisodeBatch:  # fmt: skip
        return runner.sample(
            self.policy_factory, policy_state, tasks, task_offset, self.episodes_per_task, seed
        )


def concatenate_batches(batches: Sequence[EpisodeBatch], task_offsets: Sequence[int]) -> EpisodeBatch:
    """Join batches of consecutive task shares into one, re-padding to the longest episode.

    ``task_offsets[j]`` is the global index of batch ``j``'s first task; padding is zeros, as in
    :func:`~metarl.rollout.collect`, so the result equals a single ``collect`` over all tasks.
    """
    if not batches or len(batches) != len(task_offsets):
        raise ValueError(
            f"need one task offset per batch, got {len(batches)} batches, {len(task_offsets)} offsets"
        )
    horizon = max(b.observations.shape[1] for b in batches)
    padded: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(EpisodeBatch)}
    for batch, offset in zip(batches, task_offsets, strict=True):
        for f in fields(EpisodeBatch):
            value = getattr(batch, f.name)
            if f.name == "task_index":
                value = value + int(offset)
            elif value.ndim >= 2 and f.name not in ("final_observations",) and value.shape[1] < horizon:
                pad = [(0, 0), (0, horizon - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
                value = np.pad(value, pad)
            padded[f.name].append(value)
    return EpisodeBatch(**{name: np.concatenate(parts) for name, parts in padded.items()})


def _check_tasks(tasks: Sequence[Task], seed: int) -> tuple[Task, ...]:
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("sample() needs at least one task")
    _check_seed(seed)
    return tasks


def _check_request(
    tasks: Sequence[Task], episodes_per_task: int, envs_per_task: int, seed: int
) -> tuple[Task, ...]:
    tasks = _check_tasks(tasks, seed)
    if (
        not isinstance(episodes_per_task, (int, np.integer))
        or isinstance(episodes_per_task, bool)
        or episodes_per_task < 1
        or episodes_per_task % envs_per_task
    ):
        raise ValueError(
            f"episodes_per_task={episodes_per_task!r} must be a positive multiple of the sampler's "
            f"envs_per_task={envs_per_task}"
        )
    return tasks


class ShardRunner:
    """Samples one contiguous share of the tasks in a vector env it keeps between calls.

    Used in process by :class:`LocalSampler` and inside every Ray actor by :class:`RaySampler`.
    """

    def __init__(self, family: TaskFamily | str, envs_per_task: int = 1, backend: str = "auto") -> None:
        from metarl.registry import make_family

        self.family = make_family(family) if isinstance(family, str) else family
        self.envs_per_task = envs_per_task
        self.backend = backend
        self.vec: BatchedTaskVectorEnv | SyncTaskVectorEnv | None = None

    def vec_env(self, tasks: Sequence[Task]) -> BatchedTaskVectorEnv | SyncTaskVectorEnv:
        """A vector env running ``tasks`` (``envs_per_task`` sub-envs each), kept between calls."""
        tasks = tuple(tasks)
        if self.vec is not None and self.vec.tasks == tasks:
            return self.vec
        if self.vec is not None and len(self.vec.tasks) == len(tasks):
            self.vec.set_tasks(tasks)
            return self.vec
        if self.vec is not None:
            self.vec.close()
        self.vec = make_vec(self.family, tasks, self.envs_per_task, backend=self.backend)
        return self.vec

    def sample(
        self,
        policy_factory: PolicyFactory,
        policy_state: PolicyState,
        tasks: Sequence[Task],
        task_offset: int,
        episodes_per_task: int,
        seed: int,
    ) -> EpisodeBatch:
        """Episodes of ``tasks``, whose global indices start at ``task_offset``; local task indices."""
        vec = self.vec_env(tasks)
        indices = tuple(range(task_offset, task_offset + len(vec.tasks)))
        context = PolicyContext(
            indices, self.envs_per_task, seed, vec.single_observation_space, vec.single_action_space
        )
        policy = policy_factory(policy_state, context)
        seeds = reset_seeds(seed, indices, self.envs_per_task)
        return collect(vec, policy, episodes_per_task, seed=seeds)

    def run(
        self, job: ShardJob, policy_state: PolicyState, tasks: Sequence[Task], task_offset: int, seed: int
    ) -> Any:
        """Run ``job`` on the share ``tasks``, whose global indices start at ``task_offset``."""
        return job(self, policy_state, tuple(tasks), int(task_offset), int(seed))

    def close(self) -> None:
        if self.vec is not None:
            self.vec.close()
            self.vec = None


class LocalSampler(Sampler):
    """Samples every task in one vector env in this process.

    Args:
        family: a family or registered id.
        envs_per_task: sub-envs per task (``episodes_per_task`` must be a multiple of it).
        backend: see :func:`~metarl.vector.make_vec`.
    """

    def __init__(self, family: TaskFamily | str, envs_per_task: int = 1, *, backend: str = "auto") -> None:
        check_int("envs_per_task", envs_per_task)
        self._runner = ShardRunner(family, int(envs_per_task), backend)
        self.family = self._runner.family
        self.envs_per_task = int(envs_per_task)

    def sample(
        self,
        policy_factory: PolicyFactory,
        policy_state: PolicyState,
        tasks: Sequence[Task],
        episodes_per_task: int,
        seed: int,
    ) -> EpisodeBatch:
        """See :class:`Sampler`. ``policy_state`` is deep-copied, as a remote worker would see it."""
        tasks = _check_request(tasks, episodes_per_task, self.envs_per_task, seed)
        return self._runner.sample(
            policy_factory, copy.deepcopy(dict(policy_state)), tasks, 0, episodes_per_task, seed
        )

    def map_shares(
        self, job: ShardJob, policy_state: PolicyState, tasks: Sequence[Task], seed: int
    ) -> list[tuple[int, Any]]:
        """Run ``job`` on all of ``tasks`` as one share; ``[(0, result)]`` (see
        :meth:`RaySampler.map_shares`). ``policy_state`` is deep-copied, as a remote worker would see it."""
        tasks = _check_tasks(tasks, seed)
        return [(0, self._runner.run(job, copy.deepcopy(dict(policy_state)), tasks, 0, int(seed)))]

    def close(self) -> None:
        self._runner.close()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            'RaySampler needs Ray: pip install "metarl[ray]" (or pip install "ray>=2.40")'
        ) from exc
    return ray


def _shares(n_tasks: int, n_workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` task ranges, as equal as possible, none empty."""
    bounds = np.linspace(0, n_tasks, min(n_workers, n_tasks) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


class RaySampler(Sampler):
    """Samples on Ray: worker ``j`` is an actor holding a vector env for the ``j``-th share of tasks.

    Per call, the weights are put once in the object store (``ray.put``) and every worker builds
    its policy from them; the shares' batches are joined in task order. A worker that dies (its
    process crashed, its node went away, ``ray.kill``) is replaced by a fresh actor and its share
    re-sampled with the same seeds, so the batch is the one an uninterrupted run would give.

    Args:
        family: a family or registered id (an instance is pickled to the workers).
        envs_per_task: sub-envs per task.
        num_workers: rollout actors; tasks are split into this many contiguous shares.
        backend: vector env backend, see :func:`~metarl.vector.make_vec`.
        address: connect to an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None`` starts a local instance unless Ray is already initialised in this process.
        num_cpus: CPUs of the local instance started when ``address`` is ``None``.
        cpus_per_worker: CPUs each actor reserves (its scheduling weight).
        max_restarts: how many times one call may replace a dead worker before giving up.
        timeout: seconds one call may wait for a share before raising ``TimeoutError`` (say, when
            the cluster has too few free CPUs to schedule the actors); ``None`` waits forever.
        ray_init_kwargs: further keywords for ``ray.init``.
    """

    def __init__(
        self,
        family: TaskFamily | str,
        envs_per_task: int = 1,
        *,
        num_workers: int = 2,
        backend: str = "auto",
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_worker: float = 1.0,
        max_restarts: int = 3,
        timeout: float | None = None,
        ray_init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_int("envs_per_task", envs_per_task)
        check_int("num_workers", num_workers)
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative int, got {max_restarts!r}")
        ray = _import_ray()
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, **dict(ray_init_kwargs or {})}
            if address is not None:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, **kwargs)
            self._owns_ray = True
        self.family = family
        self.envs_per_task = int(envs_per_task)
        self.backend = backend
        self.max_restarts = max_restarts
        self.timeout = timeout
        self.restarts = 0
        # Each actor runs as many MuJoCo physics threads as CPUs it reserves (at least one), not
        # one per core of its node: several actors per node would otherwise oversubscribe it.
        threads = os.environ.get("METARL_MUJOCO_THREADS", str(max(1, int(cpus_per_worker))))
        self._actor_class = ray.remote(
            num_cpus=cpus_per_worker, runtime_env={"env_vars": {"METARL_MUJOCO_THREADS": threads}}
        )(ShardRunner)
        self.workers: list[Any] = [self._new_worker() for _ in range(int(num_workers))]

    def _new_worker(self) -> Any:
        return self._actor_class.remote(self.family, self.envs_per_task, self.backend)

    def _replace_worker(self, j: int) -> None:
        ray = _import_ray()
        try:
            ray.kill(self.workers[j])
        except Exception:  # already gone
            pass
        self.workers[j] = self._new_worker()
        self.restarts += 1

    def sample(
        self,
        policy_factory: PolicyFactory,
        policy_state: PolicyState,
        tasks: Sequence[Task],
        episodes_per_task: int,
        seed: int,
    ) -> EpisodeBatch:
        """See :class:`Sampler`."""
        tasks = _check_request(tasks, episodes_per_task, self.envs_per_task, seed)
        job = _CollectEpisodes(policy_factory, int(episodes_per_task))
        shares = self.map_shares(job, policy_state, tasks, seed)
        return concatenate_batches([batch for _, batch in shares], [start for start, _ in shares])

    def map_shares(
        self, job: ShardJob, policy_state: PolicyState, tasks: Sequence[Task], seed: int
    ) -> list[tuple[int, Any]]:
        """Run ``job`` on every worker's share of ``tasks``; ``[(share's first task index, result)]``
        in task order.

        The weights and the job are put in the object store once; worker ``j`` runs
        ``job(runner, policy_state, tasks[start:stop], start, seed)`` for the ``j``-th contiguous
        share. A worker that dies is replaced and its share run again (at most ``max_restarts``
        times per call).
        """
        ray = _import_ray()
        from ray.exceptions import ActorUnavailableError, RayActorError

        tasks = _check_tasks(tasks, seed)
        shares = _shares(len(tasks), len(self.workers))
        state_ref = ray.put(dict(policy_state))
        job_ref = ray.put(job)

        def submit(j: int) -> Any:
            start, stop = shares[j]
            return self.workers[j].run.remote(job_ref, state_ref, tasks[start:stop], start, int(seed))

        pending = {submit(j): j for j in range(len(shares))}
        results: list[Any] = [None] * len(shares)
        failures = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout)
            if not ready:
                raise TimeoutError(
                    f"no rollout worker finished within {self.timeout} s; shares "
                    f"{sorted(pending.values())} are pending. Free resources: "
                    f"{ray.available_resources()} (each worker reserves the CPUs of cpus_per_worker)"
                )
            j = pending.pop(ready[0])
            try:
                results[j] = ray.get(ready[0])
            except (RayActorError, ActorUnavailableError) as exc:
                failures += 1
                if failures > self.max_restarts:
                    raise RuntimeError(
                        f"rollout worker {j} died {failures} times in one sample() call "
                        f"(max_restarts={self.max_restarts}); last error: {exc}"
                    ) from exc
                self._replace_worker(j)
                pending[submit(j)] = j
        return [(start, result) for (start, _), result in zip(shares, results, strict=True)]

    def close(self) -> None:
        """Stop the workers, and the Ray instance if this sampler started it."""
        ray = _import_ray()
        for worker in self.workers:
            try:
                ray.kill(worker)
            except Exception:  # already gone
                pass
        self.workers = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


def make_sampler(kind: str, family: TaskFamily | str, envs_per_task: int = 1, **kwargs: Any) -> Sampler:
    """``make_sampler("local", ...)`` or ``make_sampler("ray", ..., num_workers=4, address="auto")``."""
    if kind == "local":
        return LocalSampler(family, envs_per_task, **kwargs)
    if kind == "ray":
        return RaySampler(family, envs_per_task, **kwargs)
    raise ValueError(f"sampler must be 'local' or 'ray', got {kind!r}")
