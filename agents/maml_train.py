"""Meta-training MAML-TRPO: sampling meta-batches, logging, checkpoints and resuming.

One meta-iteration (:func:`meta_iteration`), following Finn et al. 2017, algorithm 3:

1. draw ``meta_batch_size`` training tasks; run the current policy for ``episodes_per_task``
   episodes on each (the *inner* or pre-adaptation batch);
2. fit a linear baseline per task, take the inner gradient step(s) per task;
3. run each task's adapted policy for ``episodes_per_task`` episodes (the *validation* or
   post-adaptation batch);
4. TRPO update of the initialisation on the post-adaptation surrogate (:meth:`MAMLTRPO.meta_step`).

:func:`train` runs the loop with a tqdm bar (pre/post-adaptation return, env steps/s), a CSV log
(``progress.csv``), TensorBoard events (``tb/``) and checkpoints (``checkpoints/``) under
``config.run_dir``. :func:`cli_train` is the entry point of ``metarl train maml-trpo``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agents.advantages import task_advantages
from metarl.agents.checkpoint import (
    check_format,
    load_checkpoint,
    load_latest_checkpoint,
    numpy_rng_from_state,
    numpy_rng_state,
    open_csv_log,
    save_checkpoint,
    write_checkpoint,
)
from metarl.agents.config_checks import read_config_file
from metarl.agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig, task_tensors
from metarl.agents.policies import Params, PolicySampler, TaskPolicyFactory, make_policy
from metarl.family import TaskFamily
from metarl.fileio import atomic_write_text
from metarl.memory import keep_freed_memory
from metarl.registry import make_family
from metarl.rollout import EpisodeBatch, collect
from metarl.samplers import LocalSampler, RaySampler, Sampler
from metarl.task import Task
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__all__ = [
    "CHECKPOINT_FORMAT",
    "build",
    "checkpoint_payload",
    "cli_train",
    "load_algorithm",
    "load_config_file",
    "make_train_sampler",
    "meta_iteration",
    "restore",
    "sampler_meta_iteration",
    "train",
    "validate",
]

CHECKPOINT_FORMAT = "metarl.maml_trpo.checkpoint/1"
_CSV_FIELDS = ["iteration", "env_steps", "pre_return", "post_return", "loss_before", "loss_after", "kl",
               "ls_tries", "accepted", "grad_norm", "t_sample", "t_inner", "t_outer", "steps_per_s", "wall_s"]  # fmt: skip


def make_train_family(config: MAMLTRPOConfig) -> TaskFamily:
    """The family, with the training split resized if ``config.train_tasks`` is set (the test split
    does not depend on the training split's size)."""
    if config.train_tasks is None:
        return make_family(config.family)
    return make_family(config.family, split_sizes={"train": config.train_tasks})


def build(config: MAMLTRPOConfig, family: TaskFamily | None = None) -> tuple[MAMLTRPO, torch.Generator]:
    """A fresh MAML-TRPO learner whose policy is initialised from a generator seeded with ``config.seed``."""
    family = family or make_train_family(config)
    env = family.make_env(family.train[0])
    generator = torch.Generator().manual_seed(config.seed)
    policy = make_policy(
        env.observation_space,
        env.action_space,
        config.hidden_sizes,
        config.nonlinearity,
        config.init_std,
        generator,
        normalize_actions=config.normalize_actions,
    )
    env.close()
    return MAMLTRPO(policy, config), generator


#: ``sample(params, seed) -> episodes`` of every task of the meta-batch: ``params`` is ``None`` for
#: the meta-parameters, else per-task parameters (leading task axis).
SampleFn = Callable[[Params | None, int], EpisodeBatch]


def _meta_iteration(
    algo: MAMLTRPO, n_tasks: int, sample: SampleFn, rng: np.random.Generator, generator: torch.Generator
) -> dict[str, float]:
    """One meta-update, collecting episodes with ``sample``; see :func:`meta_iteration`."""
    cfg = algo.config
    with _TorchThreads(cfg.optim_threads) as optim_threads:
        return _meta_iteration_body(algo, n_tasks, sample, rng, generator, optim_threads)


class _TorchThreads:
    """Context: ``threads`` torch threads for the updates (``None``: unchanged); the sampling phases
    switch back to the caller's setting with :meth:`sampling`."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.outer = torch.get_num_threads()

    def __enter__(self) -> _TorchThreads:
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.outer)

    def optimising(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def sampling(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.outer)


def _meta_iteration_body(
    algo: MAMLTRPO,
    n_tasks: int,
    sample: SampleFn,
    rng: np.random.Generator,
    generator: torch.Generator,
    threads: _TorchThreads,
) -> dict[str, float]:
    cfg = algo.config
    t_sample = t_inner = 0.0
    inner_data = []
    params: Params | None = None
    pre_returns: list[float] = []
    inner = algo.inner_steps(n_tasks)  # the batched path keeps the steps' graphs for the outer step
    for _ in range(cfg.inner_steps):
        t0 = time.perf_counter()
        threads.sampling()
        episodes = sample(params, int(rng.integers(2**31)))
        threads.optimising()
        t1 = time.perf_counter()
        adv = task_advantages(episodes, cfg.gamma, cfg.gae_lambda, cfg.baseline_reg)
        inner_data.append(task_tensors(episodes, adv, normalize=cfg.normalize_advantages))
        if inner is not None:
            params = inner.step(inner_data[-1])
        else:
            params = algo.adapted_params(inner_data, n_tasks, create_graph=False)
        pre_returns.append(float(episodes.returns.mean()))
        t_sample += t1 - t0
        t_inner += time.perf_counter() - t1
    t0 = time.perf_counter()
    threads.sampling()
    valid = sample(params, int(rng.integers(2**31)))
    threads.optimising()
    t1 = time.perf_counter()
    adv = task_advantages(valid, cfg.gamma, cfg.gae_lambda, cfg.baseline_reg)
    stats = algo.meta_step(
        inner_data, task_tensors(valid, adv, normalize=cfg.normalize_advantages), generator, inner
    )
    t2 = time.perf_counter()
    post = float(valid.returns.mean())
    env_steps = valid.env_steps * (cfg.inner_steps + 1)
    return {
        **stats,
        "pre_return": pre_returns[0] if pre_returns else post,
        "post_return": post,
        "env_steps_iter": float(env_steps),
        "t_sample": t_sample + (t1 - t0),
        "t_inner": t_inner,
        "t_outer": t2 - t1,
    }


def meta_iteration(
    algo: MAMLTRPO,
    vec: BatchedTaskVectorEnv | SyncTaskVectorEnv,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> dict[str, float]:
    """One meta-update on the tasks currently set in ``vec``; returns returns, TRPO stats and timings
    (``t_sample``: environment rollouts, ``t_inner``: baselines and inner steps for sampling,
    ``t_outer``: validation baselines and the TRPO update). The action noise of all sub-envs comes
    from ``generator`` (``sampler="local"``)."""
    K, ept = len(vec.tasks), vec.envs_per_task

    def sample(params: Params | None, seed: int) -> EpisodeBatch:
        if params is None:
            params = {n: p.detach().expand(K, *p.shape) for n, p in algo.policy.named_parameters()}
        policy = PolicySampler(
            algo.policy, params, generator, envs_per_task=ept, clip_actions=algo.config.clip_actions
        )
        return collect(vec, policy, algo.config.episodes_per_task, seed=seed)

    return _meta_iteration(algo, K, sample, rng, generator)


def sampler_meta_iteration(
    algo: MAMLTRPO,
    sampler: Sampler,
    tasks: Sequence[Task],
    rng: np.random.Generator,
    generator: torch.Generator,
) -> dict[str, float]:
    """:func:`meta_iteration` on ``tasks`` with a :class:`metarl.samplers.Sampler` (local or Ray).

    The pre-adaptation batch is sampled with the meta-parameters, the post-adaptation batch with each
    task's adapted parameters (a leading task axis), both through :class:`TaskPolicyFactory`: task
    ``k``'s episodes depend only on the iteration's seed (drawn from ``rng``, as in
    :func:`meta_iteration`), ``k`` and its parameters, never on how the tasks are split over
    workers. ``generator`` is used only by the TRPO step (``hvp_subsample``).
    """
    cfg = algo.config
    factory = TaskPolicyFactory(
        tuple(cfg.hidden_sizes),
        cfg.nonlinearity,
        normalize_actions=cfg.normalize_actions,
        clip_actions=cfg.clip_actions,
    )

    def sample(params: Params | None, seed: int) -> EpisodeBatch:
        source = params if params is not None else algo.policy.params()
        state = {n: p.detach().contiguous() for n, p in source.items()}
        return sampler.sample(factory, state, tasks, cfg.episodes_per_task, seed)

    return _meta_iteration(algo, len(tasks), sample, rng, generator)


def make_train_sampler(config: MAMLTRPOConfig, family: TaskFamily) -> Sampler:
    """The sampler ``config.sampler`` names (``"local-per-task"`` or ``"ray"``), with one sub-env per
    episode of a task (``envs_per_task = episodes_per_task``). ``"local"`` has none: it samples in a
    vector env of its own (:func:`meta_iteration`)."""
    if config.sampler == "local-per-task":
        return LocalSampler(family, config.episodes_per_task, backend=config.backend)
    if config.sampler == "ray":
        return RaySampler(
            family,
            config.episodes_per_task,
            num_workers=config.ray_workers,
            backend=config.backend,
            address=config.ray_address,
            cpus_per_worker=config.ray_cpus_per_worker,
        )
    raise ValueError(f"config.sampler={config.sampler!r} has no Sampler object (use meta_iteration)")


def checkpoint_payload(
    algo: MAMLTRPO,
    family: TaskFamily,
    iteration: int,
    env_steps: int,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> dict[str, Any]:
    """Everything needed to resume: state dicts, config JSON, the task split ids and RNG states."""
    return {
        "format": CHECKPOINT_FORMAT,
        "iteration": int(iteration),
        "env_steps": int(env_steps),
        "policy": algo.policy.state_dict(),
        "step_sizes": {n: v.detach().clone() for n, v in algo.step_sizes.items()},
        "config": algo.config.to_json(),
        "task_split": {
            "family": family.id,
            "split_seed": family.split_seed,
            **{s: [t.task_id for t in family.split(s)] for s in ("train", "validation", "test")},
        },
        "rng": {"numpy": numpy_rng_state(rng), "torch": gen.get_state()},
    }


#: Offset between a run's seed and the seed of its validation meta-tests (distinct streams).
VALIDATION_SEED_OFFSET = 1_000_033


def validate(algo: MAMLTRPO, family: TaskFamily) -> list[float]:
    """Mean return over ``family``'s validation tasks after 0..``inner_steps`` gradient steps.

    Every call uses the same episode seeds (``config.seed + VALIDATION_SEED_OFFSET``), so scores of
    different iterations are compared on common random numbers, and it draws nothing from the
    training RNGs (a run with validation trains exactly as one without).
    """
    from metarl.evaluation import evaluate

    cfg = algo.config
    result = evaluate(
        algo.learner(),
        family,
        split="validation",
        rounds=cfg.inner_steps + 1,
        episodes_per_round=cfg.episodes_per_task,
        seed=cfg.seed + VALIDATION_SEED_OFFSET,
        backend=cfg.backend,
    )
    return [float(v) for v in result.returns.mean(axis=0)]


def restore(
    algo: MAMLTRPO, data: Mapping[str, Any], source: str = "checkpoint"
) -> tuple[np.random.Generator, torch.Generator]:
    """Load the meta-parameters of checkpoint ``data`` (read from ``source``) into ``algo``; return
    the restored RNGs."""
    check_format(source, data, CHECKPOINT_FORMAT)
    algo.policy.load_state_dict(data["policy"])
    if set(data["step_sizes"]) != set(algo.step_sizes):
        raise ValueError("checkpoint and config disagree on meta_sgd (learned step sizes)")
    with torch.no_grad():
        for n, v in data["step_sizes"].items():
            algo.step_sizes[n].copy_(v)
    gen = torch.Generator()
    gen.set_state(data["rng"]["torch"])
    return numpy_rng_from_state(data["rng"]["numpy"]), gen


def load_algorithm(path: str | os.PathLike[str]) -> MAMLTRPO:
    """A :class:`MAMLTRPO` rebuilt from a checkpoint (config from the checkpoint itself).

    ``path`` is a checkpoint file, or a run directory (its newest valid checkpoint is used)."""
    path = Path(path)
    if path.is_dir():
        found = load_latest_checkpoint(
            path / "checkpoints" if (path / "checkpoints").is_dir() else path,
            expected_format=CHECKPOINT_FORMAT,
        )
        if found is None:
            raise FileNotFoundError(f"no readable checkpoint under {str(path)!r}")
        path, data = found
    else:
        data = load_checkpoint(path, CHECKPOINT_FORMAT)
    config = MAMLTRPOConfig.from_saved(json.loads(data["config"]))
    algo, _ = build(config)
    restore(algo, data, str(path))
    return algo


def _check_resumable(config: MAMLTRPOConfig, data: Mapping[str, Any], source: str) -> None:
    """Refuse to resume a run whose checkpoint sampled actions differently from ``config``."""
    saved = MAMLTRPOConfig.from_saved(json.loads(data["config"]))
    if saved.clip_actions != config.clip_actions:
        raise ValueError(
            f"{source} was trained with clip_actions={saved.clip_actions}, the config has "
            f"clip_actions={config.clip_actions}; resume with clip_actions={saved.clip_actions} "
            "(config file or --clip-actions/--no-clip-actions) or start a new run directory"
        )


def _check_split(family: TaskFamily, data: Mapping[str, Any]) -> None:
    saved = data["task_split"]
    for split in ("train", "test"):
        if saved[split] != [t.task_id for t in family.split(split)]:
            raise ValueError(
                f"the checkpoint's {split} tasks differ from {family.id}'s current {split} split"
            )


def train(
    config: MAMLTRPOConfig, *, resume: bool = False, progress: bool = True, sampler: Sampler | None = None
) -> MAMLTRPO:
    """Meta-train MAML-TRPO; returns the learner (its ``learner()`` is a :class:`metarl.MetaLearner`).

    With ``resume``, continue from the newest valid checkpoint in ``<run_dir>/checkpoints`` (the
    meta-parameters, iteration count and RNG states are restored, so a resumed run continues the
    same random streams, and ``progress.csv`` is cut back to the checkpoint's iteration so redone
    iterations are logged once); without one, start afresh. Unreadable checkpoints are skipped with a
    warning; one of another format version raises
    :class:`~metarl.agents.checkpoint.CheckpointFormatError`.

    Episodes are collected as ``config.sampler`` says (see :class:`MAMLTRPOConfig`); a ``sampler``
    given here is used instead (with :func:`sampler_meta_iteration`; the caller keeps and closes it),
    e.g. a :class:`~metarl.samplers.RaySampler` on a cluster set up by the caller.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    keep_freed_memory()  # large tensors reuse heap pages instead of faulting them in (metarl.memory)
    run_dir = Path(config.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    family = make_train_family(config)
    algo, gen = build(config, family)
    rng = np.random.default_rng(config.seed)
    start, env_steps = 0, 0
    found = None
    if resume:
        found = load_latest_checkpoint(ckpt_dir, ("policy", "rng"), expected_format=CHECKPOINT_FORMAT)
    if found is not None:
        _check_split(family, found[1])
        _check_resumable(config, found[1], str(found[0]))
        rng, gen = restore(algo, found[1], str(found[0]))
        start, env_steps = int(found[1]["iteration"]), int(found[1]["env_steps"])
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", config.to_json())
    train_tasks = family.train
    B = config.meta_batch_size
    own_sampler = sampler is None and config.sampler != "local"
    if own_sampler:
        sampler = make_train_sampler(config, family)
    vec = None
    if sampler is None:
        vec = make_vec(family, train_tasks[:B] if len(train_tasks) >= B else [train_tasks[0]] * B,
                       envs_per_task=config.episodes_per_task, backend=config.backend)  # fmt: skip
    csv_file, log = open_csv_log(
        run_dir / "progress.csv", _CSV_FIELDS, "iteration", start if found is not None else None
    )
    val_log = _ValidationLog(run_dir, config, start if found is not None else None)
    # on resume, TensorBoard drops the events logged after the checkpoint's step (they are redone)
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=env_steps + 1 if found is not None else None)
    writer.add_text("config", f"```\n{config.to_json()}\n```", start)
    t_start = time.perf_counter()
    bar = tqdm(range(start, config.meta_iterations), initial=start, total=config.meta_iterations,
               disable=not progress, desc="MAML-TRPO", dynamic_ncols=True)  # fmt: skip
    iteration = start
    try:
        for iteration in bar:
            t0 = time.perf_counter()
            chosen = rng.choice(len(train_tasks), size=B, replace=len(train_tasks) < B)
            tasks = [train_tasks[i] for i in chosen]
            if vec is not None:
                vec.set_tasks(tasks)
                stats = meta_iteration(algo, vec, rng, gen)
            else:
                assert sampler is not None
                stats = sampler_meta_iteration(algo, sampler, tasks, rng, gen)
            dt = time.perf_counter() - t0
            env_steps += int(stats["env_steps_iter"])
            row = {k: stats.get(k, 0.0) for k in _CSV_FIELDS}
            row |= {"iteration": iteration + 1, "env_steps": env_steps, "steps_per_s": stats["env_steps_iter"] / dt,
                    "wall_s": time.perf_counter() - t_start}  # fmt: skip
            log.writerow(row)
            csv_file.flush()
            for key in (
                "pre_return",
                "post_return",
                "kl",
                "loss_after",
                "steps_per_s",
                "t_sample",
                "t_outer",
            ):
                writer.add_scalar(f"train/{key}", row[key], env_steps)
            bar.set_postfix(pre=f"{row['pre_return']:.1f}", post=f"{row['post_return']:.1f}",
                            sps=f"{row['steps_per_s']:.0f}")  # fmt: skip
            if config.eval_every and (iteration + 1) % config.eval_every == 0:
                scores = validate(algo, family)
                for k, v in enumerate(scores):
                    writer.add_scalar(f"validation/return_step{k}", v, env_steps)
                if val_log.record(iteration + 1, env_steps, scores):
                    payload = checkpoint_payload(algo, family, iteration + 1, env_steps, rng, gen)
                    payload["validation_return"] = scores[-1]
                    write_checkpoint(run_dir / BEST_NAME, payload)
                bar.write(f"iteration {iteration + 1}: validation return after 0..{len(scores) - 1} "
                          f"steps {', '.join(f'{v:.2f}' for v in scores)} (best {val_log.best:.2f})")  # fmt: skip
            out_of_time = (
                config.time_budget_s is not None and time.perf_counter() - t_start > config.time_budget_s
            )
            if (iteration + 1) % config.checkpoint_every == 0 or out_of_time:
                save_checkpoint(ckpt_dir, iteration + 1, checkpoint_payload(algo, family, iteration + 1, env_steps, rng, gen),
                                keep=config.keep_checkpoints)  # fmt: skip
            if out_of_time:
                bar.write(
                    f"time budget of {config.time_budget_s:.0f}s reached after {iteration + 1} iterations"
                )
                break
        else:
            if config.meta_iterations > start and config.meta_iterations % config.checkpoint_every:
                save_checkpoint(ckpt_dir, config.meta_iterations,
                                checkpoint_payload(algo, family, config.meta_iterations, env_steps, rng, gen),
                                keep=config.keep_checkpoints)  # fmt: skip
    finally:
        bar.close()
        writer.close()
        csv_file.close()
        val_log.close()
        if vec is not None:
            vec.close()
        if own_sampler and sampler is not None:
            sampler.close()
    return algo


#: File name of the best validated meta-parameters in a run directory (see ``eval_every``).
BEST_NAME = "best.pt"


class _ValidationLog:
    """``validation.csv`` and the best score so far (restored from ``best.pt`` on resume)."""

    def __init__(self, run_dir: Path, config: MAMLTRPOConfig, resumed_at: int | None) -> None:
        self.enabled = bool(config.eval_every)
        self.best = -np.inf
        self._file = None
        if not self.enabled:
            return
        path = run_dir / "validation.csv"
        fields = ["iteration", "env_steps", *(f"return_step{k}" for k in range(config.inner_steps + 1))]
        best_path = run_dir / BEST_NAME
        if resumed_at is None:
            best_path.unlink(missing_ok=True)  # a fresh run must not compare against an old run's best
        elif best_path.exists():
            data = load_checkpoint(best_path, CHECKPOINT_FORMAT)
            # a best from after the checkpoint is redone identically, so its score still stands
            self.best = float(data.get("validation_return", -np.inf))
        self._file, self._writer = open_csv_log(path, fields, "iteration", resumed_at)

    def record(self, iteration: int, env_steps: int, scores: list[float]) -> bool:
        """Log ``scores``; return whether the last one is a new best."""
        assert self._file is not None
        row: dict[str, float] = {"iteration": iteration, "env_steps": env_steps}
        row |= {f"return_step{k}": v for k, v in enumerate(scores)}
        self._writer.writerow(row)
        self._file.flush()
        if scores[-1] > self.best:
            self.best = scores[-1]
            return True
        return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a config file: JSON (``.json``) or TOML (``.toml``), a flat table of config keys."""
    return read_config_file(path)


def cli_train(
    family: str,
    config_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    run_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Entry point of ``metarl train maml-trpo --family <id> [--config FILE] [--resume]``.

    Config precedence: defaults < ``config_path`` < ``overrides`` < ``family``/``seed``/``run_dir``.
    The run directory defaults to ``runs/maml_trpo/<family>/seed<seed>``. Returns the run directory.
    """
    values: dict[str, Any] = load_config_file(config_path) if config_path is not None else {}
    values.update(overrides or {})
    values["family"] = family
    if seed is not None:
        values["seed"] = int(seed)
    make_family(family)  # an unknown id fails here, listing the registered ones
    if run_dir is not None:
        values["run_dir"] = str(run_dir)
    elif "run_dir" not in values:
        values["run_dir"] = str(Path("runs") / "maml_trpo" / family / f"seed{values.get('seed', 0)}")
    source = (
        None
        if config_path is None
        else f"config file {str(config_path)!r} (with the command line's overrides)"
    )
    config = MAMLTRPOConfig.from_dict(values, source=source)
    train(config, resume=resume, progress=progress)
    return Path(config.run_dir)
