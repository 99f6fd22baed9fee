"""RL² trials collected by a :mod:`metarl.samplers` sampler: in this process or on Ray actors.

``RL2Config.sampler = "local"`` collects every trial in one vector env of the learner's process
(:func:`metarl.agents.rl2.collect_trials`), with one ``torch.Generator`` for the actions of all
trials. The other two settings collect through a sampler's :meth:`~metarl.samplers.RaySampler.map_shares`:

* ``"ray"``: a :class:`~metarl.samplers.RaySampler` splits the trials into contiguous shares, one
  per Ray actor; each actor holds a vector env with one sub-env per trial of its share and runs the
  recurrent policy step by step itself, from the model's weights broadcast once per update
  (``ray.put``). A worker that dies is replaced and its share run again.
* ``"local-per-task"``: the same collection in this process (a :class:`~metarl.samplers.LocalSampler`,
  all trials as one share).

Both give bit-identical trial batches, and so bit-identical training, for any number of workers:

* randomness: trial ``k`` (its position in the update's task list) is reset with
  :func:`~metarl.samplers.reset_seeds` of ``(seed, k)`` and samples its actions from a
  ``torch.Generator`` seeded with ``PolicyContext.task_seeds()`` of ``(seed, k)``; it draws all its
  noise up front (one uniform per step for a discrete policy, inverted through the categorical
  CDF; one standard normal vector per step for a Gaussian policy), so step ``t`` of trial ``k``
  uses the ``t``-th draw whatever the other trials do;
* arithmetic: a CPU matrix product's rounding can depend on the number of rows it is given
  (measured here with MKL: rows differ at 1, 2 or 3 rows and in odd remainders), so the GRU and the
  heads never see a share's rows at once. Trial ``k`` is always computed in block ``k // TRIAL_BLOCK``
  at row ``k % TRIAL_BLOCK`` of a ``TRIAL_BLOCK``-row tensor; rows of a block outside the share
  are zeros. Every product then has the same shape and the same row whatever the split, and a
  row's result does not depend on the other rows (checked by ``tests/test_rl2_ray.py``);
* padding: steps after a trial's end (``mask`` false) are zeros, so a share that stops when its
  own trials end pads to the same batch as one that kept stepping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from metarl.agents.rl2 import RL2ActorCritic, RL2Config, TrialBatch, run_trials
from metarl.agents.rl2_trials import TrialVecEnv
from metarl.family import TaskFamily
from metarl.samplers import LocalSampler, PolicyContext, PolicyState, RaySampler, ShardRunner, reset_seeds
from metarl.task import Task

__all__ = [
    "TRIAL_BLOCK",
    "ShardedSampler",
    "TrialSampler",
    "TrialShardJob",
    "collect_seeded_trials",
    "join_trial_batches",
]

#: Rows of every GRU and head evaluation during per-trial seeded collection (see the module doc).
TRIAL_BLOCK = 16


@torch.no_grad()
def collect_seeded_trials(
    model: RL2ActorCritic,
    env: TrialVecEnv,
    tasks: tuple[Task, ...],
    *,
    task_offset: int,
    seed: int,
    deterministic: bool = False,
) -> TrialBatch:
    """Run one trial per sub-env of ``env`` (sub-env ``i`` on ``tasks[i]``, global trial index
    ``task_offset + i``), each seeded from ``(seed, index)`` alone; padding steps are zeros."""
    n = len(tasks)
    indices = tuple(range(task_offset, task_offset + n))
    x = env.reset(tasks, seed=reset_seeds(seed, indices, 1))
    T, b = env.max_trial_steps, TRIAL_BLOCK
    context = PolicyContext(indices, 1, seed, env.vec.single_observation_space, env.vec.single_action_space)
    # noise[i, t]: trial i's draw for step t, from its own generator
    gens = [torch.Generator().manual_seed(s) for s in context.task_seeds()]
    if model.discrete:
        noise = torch.stack([torch.rand(T, generator=g) for g in gens])
    else:
        noise = torch.stack([torch.randn(T, env.inputs.act_dim, generator=g) for g in gens])
    # the share's rows in the global block grid: trial k at row k - first * b
    first = task_offset // b
    n_blocks = -(-(task_offset + n) // b) - first
    lo = task_offset - first * b
    grid_x = torch.zeros(n_blocks * b, 1, env.inputs.input_dim)
    grid_h = model.initial_state(n_blocks * b)
    grid_noise = torch.zeros(n_blocks * b, *noise.shape[2:])

    def act(t: int, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid_x[lo : lo + n, 0] = xt
        grid_noise[lo : lo + n] = noise[:, t]
        outs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for j in range(n_blocks):
            rows = slice(j * b, (j + 1) * b)
            params, value, h = model(grid_x[rows], grid_h[:, rows], t)
            params, value = params[:, 0], value[:, 0]
            grid_h[:, rows] = h
            action = _sample(model, params, grid_noise[rows], deterministic)
            outs.append((action, model.distribution(params).log_prob(action), value))
        action, log_prob, value = (torch.cat(parts)[lo : lo + n] for parts in zip(*outs, strict=True))
        return action, log_prob, value

    batch = run_trials(env, x, act)
    return _zero_padding(batch)


def _sample(
    model: RL2ActorCritic, params: torch.Tensor, noise: torch.Tensor, deterministic: bool
) -> torch.Tensor:
    """Actions of one block from its pre-drawn noise (uniforms for categorical, normals for Gaussian)."""
    if model.discrete:
        if deterministic:
            return params.argmax(-1)
        cdf = torch.softmax(params, -1).cumsum(-1)
        return (cdf <= noise[:, None]).sum(-1).clamp(max=params.shape[-1] - 1)
    if deterministic:
        return params
    return params + model.log_std.exp() * noise


def _zero_padding(batch: TrialBatch) -> TrialBatch:
    m = batch.mask

    def zero(v: torch.Tensor) -> torch.Tensor:
        return torch.where(m.reshape(*m.shape, *([1] * (v.dim() - 2))), v, torch.zeros((), dtype=v.dtype))

    return TrialBatch(**{k: zero(v) if k != "mask" else v for k, v in batch._asdict().items()})


def join_trial_batches(batches: list[TrialBatch]) -> TrialBatch:
    """Concatenate the trial batches of consecutive shares, padding every one (with zeros, mask
    false) to the longest."""
    T = max(b.mask.shape[1] for b in batches)

    def pad(v: torch.Tensor) -> torch.Tensor:
        if v.shape[1] == T:
            return v
        return torch.cat([v, torch.zeros(v.shape[0], T - v.shape[1], *v.shape[2:], dtype=v.dtype)], 1)

    return TrialBatch(*(torch.cat([pad(v) for v in parts]) for parts in zip(*batches, strict=True)))


@dataclass(frozen=True)
class TrialShardJob:
    """A :class:`metarl.samplers.ShardJob`: the trials of one share, on the worker that holds it.

    Rebuilds the :class:`RL2ActorCritic` from the broadcast state dict and runs
    :func:`collect_seeded_trials` in the worker's vector env (one sub-env per trial).
    """

    input_dim: int
    act_dim: int
    discrete: bool
    hidden_size: int
    episodes_per_trial: int
    deterministic: bool = False
    value_norm: bool = False
    separate_value: bool = False
    value_horizon: int | None = None
    time_horizon: int | None = None
    prev_obs: bool = False
    pair_dims: tuple[int, int] | None = None
    obs_head: int | None = None

    def __call__(
        self, runner: ShardRunner, policy_state: PolicyState, tasks: tuple[Task, ...], task_offset: int,
        seed: int,
    ) -> TrialBatch:  # fmt: skip
        if runner.envs_per_task != 1:
            raise ValueError(f"RL² trials need one sub-env per task, the worker has {runner.envs_per_task}")
        model = RL2ActorCritic(
            self.input_dim, self.act_dim, discrete=self.discrete, hidden_size=self.hidden_size,
            value_norm=self.value_norm, separate_value=self.separate_value,
            value_horizon=self.value_horizon, time_horizon=self.time_horizon, pair_dims=self.pair_dims,
            obs_head=self.obs_head, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        model.load_state_dict(dict(policy_state))
        env = TrialVecEnv(
            runner.family,
            len(tasks),
            self.episodes_per_trial,
            vec=runner.vec_env(tasks),
            prev_obs=self.prev_obs,
        )
        return collect_seeded_trials(
            model, env, tasks, task_offset=task_offset, seed=seed, deterministic=self.deterministic
        )


class ShardedSampler(Protocol):
    """What :class:`TrialSampler` needs of a sampler: :class:`~metarl.samplers.LocalSampler` and
    :class:`~metarl.samplers.RaySampler` are ones."""

    envs_per_task: int

    def map_shares(
        self, job: Any, policy_state: PolicyState, tasks: Sequence[Task], seed: int
    ) -> list[tuple[int, Any]]: ...

    def close(self) -> None: ...


class TrialSampler:
    """Collects a batch of RL² trials with a sampler's workers (see the module doc).

    Args:
        sampler: a :class:`~metarl.samplers.LocalSampler` or :class:`~metarl.samplers.RaySampler`
            (any :class:`ShardedSampler`) with ``envs_per_task=1``.
        episodes_per_trial: ``N``.
        owns: :meth:`close` closes ``sampler``.
        prev_obs: the policy's inputs hold the previous observation (:attr:`RL2Config.prev_obs`).
    """

    def __init__(
        self, sampler: ShardedSampler, episodes_per_trial: int, *, owns: bool = True, prev_obs: bool = False
    ) -> None:
        if sampler.envs_per_task != 1:
            raise ValueError(f"RL² trials need a sampler with envs_per_task=1, got {sampler.envs_per_task}")
        self.sampler = sampler
        self.episodes_per_trial = int(episodes_per_trial)
        self.owns = owns
        self.prev_obs = bool(prev_obs)

    @classmethod
    def from_config(cls, config: RL2Config, family: TaskFamily, episodes_per_trial: int) -> TrialSampler:
        """The sampler ``config.sampler`` names: ``"local-per-task"`` or ``"ray"``."""
        if config.sampler == "local-per-task":
            return cls(
                LocalSampler(family, 1, backend=config.backend), episodes_per_trial, prev_obs=config.prev_obs
            )
        if config.sampler == "ray":
            ray = RaySampler(family, 1, num_workers=config.ray_workers, backend=config.backend,
                             address=config.ray_address, cpus_per_worker=config.ray_cpus_per_worker)  # fmt: skip
            return cls(ray, episodes_per_trial, prev_obs=config.prev_obs)
        raise ValueError(f"RL2Config.sampler={config.sampler!r} has no TrialSampler (use collect_trials)")

    def collect(
        self, model: RL2ActorCritic, tasks: list[Task], seed: int, *, deterministic: bool = False
    ) -> TrialBatch:
        """One trial per task (trial ``k`` on ``tasks[k]``) with ``model``'s current weights."""
        job = TrialShardJob(model.input_dim, model.pi.out_features, model.discrete,
                            model.hidden_size, self.episodes_per_trial, deterministic,
                            model.value_norm, model.separate_value, model.value_horizon,
                            model.time_horizon, self.prev_obs, model.pair_dims, model.obs_head)  # fmt: skip
        # the workers only act: they need the policy and value network, not the auxiliary reward head
        # nor the task input of a privileged critic (whose values the learner recomputes)
        state = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if not k.startswith(("aux.", "v_task."))
        }
        shares = self.sampler.map_shares(job, state, tasks, seed)
        return join_trial_batches([batch for _, batch in shares])

    def close(self) -> None:
        if self.owns:
            self.sampler.close()
