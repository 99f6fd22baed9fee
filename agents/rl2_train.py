"""Training RL²: the loop, progress bar, CSV and TensorBoard logs, checkpoints and resuming.

A run directory holds::

    config.json                 the RL2Config (plus the family's description and split seed)
    progress.csv                one row per update
    tb/                         TensorBoard event files
    checkpoints/ckpt_<update>.pt  the last ``keep_checkpoints`` checkpoints

A checkpoint is a dict of state dicts and plain values (model, optimiser, torch and NumPy RNG
states, counters), written and read through :mod:`metarl.agents.checkpoint`: atomically (temporary
file, fsync, rename) and back with ``torch.load(weights_only=True)``. :func:`load_run` restores the
newest checkpoint that loads; a corrupt or half-written one is skipped with a warning naming it, one
of another format version is an error naming the file and both versions. On resume ``progress.csv``
is cut back to the checkpoint's update, so updates redone after a crash are logged once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metarl.agents import checkpoint as ckpt
from metarl.agents.config_checks import read_config_file
from metarl.agents.rl2 import RL2, RL2Config
from metarl.agents.rl2_sampling import TrialSampler
from metarl.fileio import atomic_write_text
from metarl.memory import keep_freed_memory

__all__ = [
    "CHECKPOINT_FORMAT",
    "cli_train",
    "latest_checkpoint",
    "load_run",
    "save_checkpoint",
    "train",
    "warm_start",
    "warm_start_lineage",
    "warm_start_source",
]

CHECKPOINT_FORMAT = "metarl.RL2Checkpoint/1"
_CSV_FIELDS = (
    "update",
    "env_steps",
    "wall_seconds",
    "steps_per_second",
    "trial_return",
    "first_episode_return",
    "last_episode_return",
    "pg_loss",
    "v_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "grad_norm",
    "ent_coef",
    "load_avg_1min",
    "learning_rate",
    "aux_loss",
)


def _checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(agent: RL2, run_dir: str | os.PathLike[str]) -> Path:
    """Write ``agent``'s full training state atomically; keep only the newest ``keep_checkpoints``."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": agent.config.to_json(),
        "updates": agent.updates,
        "env_steps": agent.env_steps,
        "train_seconds": agent.train_seconds,
        "model": agent.model.state_dict(),
        "optimizer": agent.optimizer.state_dict(),
        "torch_rng": agent.torch_gen.get_state(),
        "numpy_rng": json.dumps(agent.np_rng.bit_generator.state),
        "init_from": json.dumps(agent.init_from),
    }
    return ckpt.save_checkpoint(
        _checkpoint_dir(Path(run_dir)), agent.updates, state, keep=agent.config.keep_checkpoints
    )


def _read_checkpoint(path: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(path, CHECKPOINT_FORMAT)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``run_dir`` that loads, and its contents; ``None`` if there is none.

    Unreadable (truncated, corrupt) files are skipped with a warning naming them; a readable one of
    another format version raises :class:`~metarl.agents.checkpoint.CheckpointFormatError`.
    """
    return ckpt.load_latest_checkpoint(_checkpoint_dir(Path(run_dir)), expected_format=CHECKPOINT_FORMAT)


def _checkpoint_of(source: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``source`` itself if it is a checkpoint file, else the newest valid checkpoint of the run
    directory ``source``; with its contents."""
    if Path(source).is_file():
        return Path(source), _read_checkpoint(Path(source))
    found = latest_checkpoint(source)
    if found is None:
        raise FileNotFoundError(f"no readable RL² checkpoint in {Path(source) / 'checkpoints'}")
    return found


def restore(agent: RL2, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's contents into ``agent`` (built from the same config)."""
    agent.model.load_state_dict(state["model"])
    agent.optimizer.load_state_dict(state["optimizer"])
    agent.torch_gen.set_state(state["torch_rng"])
    agent.np_rng.bit_generator.state = json.loads(state["numpy_rng"])
    agent.updates = int(state["updates"])
    agent.env_steps = int(state["env_steps"])
    agent.train_seconds = float(state["train_seconds"])
    agent.init_from = warm_start_source(state)


def warm_start_source(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's record of the run it was warm-started from (path, updates, env steps, training
    seconds, and ``"earlier"``: that run's own sources, see :func:`warm_start_lineage`), or ``None``;
    checkpoints from before warm starts existed have none."""
    return json.loads(state.get("init_from", "null"))  # type: ignore[no-any-return]


def warm_start_lineage(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run a checkpoint's weights were trained in before its own, nearest first: one record
    (path, updates, env steps, training seconds) per warm start of the chain; empty for a run
    started from scratch.

    Records written since warm starts are chained carry their source's lineage (``"earlier"``). An
    older record is followed through its source checkpoint file; if that file cannot be read, the
    last record gets ``"earlier_unknown": True``.
    """
    record = warm_start_source(state)
    if record is None:
        return []
    own = {k: v for k, v in record.items() if k != "earlier"}
    if "earlier" in record:
        return [own, *record["earlier"]]
    try:
        _, source_state = _checkpoint_of(record["path"])
    except (OSError, ValueError):  # moved or deleted since: say so rather than guess
        return [{**own, "earlier_unknown": True}]
    return [own, *warm_start_lineage(source_state)]


# config fields that fix the network's shape and meaning: a warm start needs them equal. The family's
# keyword arguments and the trial length may differ (a curriculum, e.g. n = 100 pulls started from a
# run with n = 10), as long as the input sizes agree.
_ARCHITECTURE_FIELDS = ("family", "hidden_size", "separate_value", "value_norm", "value_task")


def _insert_zero_input_columns(weights: dict[str, torch.Tensor], at: int | None, count: int) -> None:
    """Give the GRUs' input weights ``count`` zero columns before column ``at`` (``None``: at the end)."""
    for key in ("gru.weight_ih_l0", "v_gru.weight_ih_l0"):
        if key in weights:
            w = weights[key]
            cut = w.shape[1] if at is None else at
            weights[key] = torch.cat([w[:, :cut], w.new_zeros(w.shape[0], count), w[:, cut:]], dim=1)


#: Config options that add to the policy's inputs or heads, and what a source run with them does:
#: a warm start may add them (with zero weights, keeping the source's policy) but not drop them.
_POLICY_ADDITIONS = (
    ("policy_time", "reads a clock"),
    ("prev_obs", "reads the previous observation"),
    ("pair_inputs", "reads state-action pair inputs"),
    ("obs_head", "has a head per observation"),
)

#: Linear heads that read the (policy or value) GRU's hidden state, by state-dict prefix.
_HIDDEN_READERS = ("pi.", "pi_obs.", "v.", "aux.", "v_time.")


def _widen(weights: dict[str, torch.Tensor], fresh: Mapping[str, torch.Tensor], old: int, new: int) -> None:
    """Grow a network of ``old`` hidden units to ``new`` in place, keeping what it computes.

    The first ``old`` units of each GRU are the source's, with zero weights from the added units,
    so their states evolve exactly as before. The added units take their input and recurrent
    weights from ``fresh`` (the new network's own initialisation): they are active from the first
    step. Every head reads them through zero weights, so the policy and the values start as the
    source's, and the gradient reaches the added units as soon as those weights move.
    """
    for gru in ("gru.", "v_gru."):
        if f"{gru}weight_ih_l0" not in weights:
            continue
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            src, grown = weights[gru + name], fresh[gru + name].clone()
            for gate in range(3):  # PyTorch's GRU stacks the reset, update and new gates' rows
                rows = src[gate * old : (gate + 1) * old]
                target = grown[gate * new : gate * new + old]
                if name == "weight_hh_l0":
                    target.zero_()
                    target[:, :old] = rows
                else:
                    target.copy_(rows)
            weights[gru + name] = grown
    for head in _HIDDEN_READERS:
        w = weights.get(f"{head}weight")
        if w is not None and w.shape[1] == old:  # a head the source had (an added one is built new)
            weights[f"{head}weight"] = torch.cat([w, w.new_zeros(w.shape[0], new - old)], dim=1)


def warm_start(agent: RL2, source: str | os.PathLike[str]) -> None:
    """Load the network weights (and value-normalisation statistics) of ``source``, a run directory
    (its newest valid checkpoint) or one checkpoint file, into a fresh ``agent``.

    Only the weights are taken: the optimiser, RNG streams and counters start anew, so the run's
    own ``env_steps`` count its own training. The source is recorded in :attr:`RL2.init_from`.
    A run with a larger ``hidden_size`` than the source grows its network (:func:`_widen`): the
    policy and values start exactly as the source's, with the added units free to learn.
    Raises ``ValueError`` naming the fields when the two configs disagree on the network's shape
    in any other way.
    """
    path, state = _checkpoint_of(source)
    # through RL2Config, so fields newer than the source checkpoint compare as their defaults
    theirs = json.loads(RL2Config.from_dict(json.loads(state["config"]), source=str(path)).to_json())
    ours = json.loads(agent.config.to_json())
    differ = [f for f in _ARCHITECTURE_FIELDS if theirs.get(f) != ours.get(f)]
    widen = differ == ["hidden_size"] and int(ours["hidden_size"]) > int(theirs["hidden_size"])
    if widen and ours.get("value_task"):
        raise ValueError(
            f"cannot warm-start from {path} with a larger hidden_size ({theirs['hidden_size']} there, "
            f"{ours['hidden_size']} here): growing a network with a task-informed critic (value_task) "
            "is not supported"
        )
    if differ and not widen:
        detail = ", ".join(f"{f}: {theirs.get(f)!r} there, {ours.get(f)!r} here" for f in differ)
        hint = " (hidden_size may only grow)" if differ == ["hidden_size"] else ""
        raise ValueError(f"cannot warm-start from {path}: its network differs ({detail}){hint}")
    # the auxiliary reward head and the value's time-left head are not part of the policy: a run may
    # add them (they start as built) or drop them; a head per observation may be added (it starts at
    # zero, so the policy is the source's) but not dropped
    optional = ("aux.", "v_time.", "pi_obs.")
    for option, what in _POLICY_ADDITIONS:  # what the source's policy reads or has must stay
        if theirs.get(option) and not ours.get(option):
            raise ValueError(
                f"cannot warm-start from {path}: its policy {what} ({option}), this run's does not"
            )
    weights = {k: v for k, v in state["model"].items() if not k.startswith(optional)}
    own = {k: v for k, v in agent.model.state_dict().items() if k.startswith(optional)}
    weights.update({k: state["model"].get(k, v) for k, v in own.items()})
    # new inputs get zero weights, which leave the source's policy and values as they were: the
    # previous observation after the source's entries, then the pair inputs, the clock last
    if ours.get("prev_obs") and not theirs.get("prev_obs"):
        obs_dim = agent.inputs.obs_dim
        _insert_zero_input_columns(weights, agent.inputs.input_dim - obs_dim, obs_dim)
    if agent.model.pair_dims is not None and not theirs.get("pair_inputs"):
        n_states, n_actions = agent.model.pair_dims
        _insert_zero_input_columns(weights, agent.inputs.input_dim, 2 * n_states * n_actions)
    if ours.get("policy_time") and not theirs.get("policy_time"):
        _insert_zero_input_columns(weights, None, 1)
    if widen:
        _widen(weights, agent.model.state_dict(), int(theirs["hidden_size"]), int(ours["hidden_size"]))
    try:
        agent.model.load_state_dict(weights)
    except RuntimeError as err:  # e.g. another number of arms: the inputs have another size
        raise ValueError(
            f"cannot warm-start from {path}: its network's tensors have other shapes ({err})"
        ) from None
    agent.init_from = {
        "path": str(path),
        "updates": int(state["updates"]),
        "env_steps": int(state["env_steps"]),
        "train_seconds": round(float(state["train_seconds"]), 1),
        # the source's own warm starts, so that the record stays whole if those files go
        "earlier": warm_start_lineage(state),
    }


def load_run(run_dir: str | os.PathLike[str]) -> RL2:
    """Rebuild the agent of ``run_dir`` from its newest valid checkpoint (or from one checkpoint
    file, when ``run_dir`` is a file)."""
    path, state = _checkpoint_of(run_dir)
    config = RL2Config.from_dict(json.loads(state["config"]), source=str(path))
    agent = RL2(config)
    restore(agent, state)
    return agent


def _write_config(agent: RL2, run_dir: Path) -> None:
    family = agent.family
    data = {
        "rl2": json.loads(agent.config.to_json()),
        "family": family.describe(),
        "split_seed": family.split_seed,
        "init_from": agent.init_from,
        "test_task_ids": [t.task_id for t in family.test],
    }
    atomic_write_text(run_dir / "config.json", json.dumps(data, indent=1))


def train(
    config: RL2Config,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    max_updates: int | None = None,
    max_seconds: float | None = None,
    trial_sampler: TrialSampler | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> RL2:
    """Train RL² until ``config.total_env_steps``, logging and checkpointing into ``run_dir``.

    With ``resume`` the newest valid checkpoint of ``run_dir`` is restored first (its config must
    equal ``config``) and ``progress.csv`` is cut back to its update; without it, ``run_dir`` must
    not hold checkpoints already.
    ``max_updates`` stops early after that many updates in this call (for tests and smoke runs);
    ``max_seconds`` after that much wall-clock in this call (a final checkpoint is written either
    way, so the run can be resumed).
    ``init_from`` (a run directory or checkpoint file of a run with the same network, or with fewer
    GRU units) warm-starts a new run with its weights (:func:`warm_start`); on resume the run's own checkpoint is loaded
    instead, so the same command continues either way.
    Trials are collected as ``config.sampler`` says (the Ray workers of ``sampler="ray"`` are
    stopped on return); a ``trial_sampler`` given here is used instead and left open for the caller.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    keep_freed_memory()  # large tensors reuse heap pages instead of faulting them in (metarl.memory)
    run_dir = Path(run_dir)
    agent = RL2(config, trial_sampler=trial_sampler)
    found = latest_checkpoint(run_dir)
    if found is not None and not resume:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints; pass resume=True (--resume) or a new directory"
        )
    if found is not None:
        path, state = found
        saved = RL2Config.from_dict(json.loads(state["config"]), source=str(path))
        if saved != config:
            raise ValueError(
                f"cannot resume {path}: its config differs from the one given ({saved} != {config})"
            )
        restore(agent, state)
    elif init_from is not None:
        warm_start(agent, init_from)
    _write_config(agent, run_dir)
    csv_file, writer = ckpt.open_csv_log(
        run_dir / "progress.csv",
        _CSV_FIELDS,
        "update",
        agent.updates if found is not None else None,
        extrasaction="ignore",
    )
    # on resume, TensorBoard drops the events logged after the checkpoint's step (they are redone)
    tb = SummaryWriter(str(run_dir / "tb"), purge_step=agent.env_steps + 1 if found is not None else None)
    bar = tqdm(
        total=expected_final_update(
            agent.updates, agent.env_steps, config.total_env_steps, agent.steps_per_update_bound, max_updates
        ),
        initial=agent.updates,
        disable=not progress,
        desc=f"RL² {config.family}",
        unit="upd",
    )
    done_here = 0
    start = time.perf_counter()
    try:
        while agent.env_steps < config.total_env_steps and (max_updates is None or done_here < max_updates):
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            t0, steps0 = time.perf_counter(), agent.env_steps
            stats = agent.train_step()
            dt = time.perf_counter() - t0
            agent.train_seconds += dt
            done_here += 1
            row = {
                "update": agent.updates,
                "env_steps": agent.env_steps,
                "wall_seconds": round(agent.train_seconds, 3),
                "steps_per_second": round((agent.env_steps - steps0) / max(dt, 1e-9), 1),
                # the machine is shared: the load says how much of it this run had
                "load_avg_1min": round(os.getloadavg()[0], 2),
                **{k: round(v, 6) for k, v in stats.items()},
            }
            writer.writerow(row)
            csv_file.flush()
            for key in _CSV_FIELDS[4:]:
                if key in stats:  # the statistics of the update (not the machine's load)
                    tb.add_scalar(f"rl2/{key}", stats[key], agent.env_steps)
            tb.add_scalar("rl2/steps_per_second", row["steps_per_second"], agent.env_steps)
            # trials can end before their step bound (a one-pull bandit episode under a 2-step limit):
            # the bar's end follows the steps the updates actually take
            bar.total = expected_final_update(
                agent.updates,
                agent.env_steps,
                config.total_env_steps,
                agent.env_steps - steps0,
                None if max_updates is None else max_updates - done_here,
            )
            bar.update(1)
            bar.set_postfix(trial_return=f"{stats['trial_return']:.3f}", sps=f"{row['steps_per_second']:.0f}")
            if agent.updates % config.checkpoint_every == 0:
                save_checkpoint(agent, run_dir)
        save_checkpoint(agent, run_dir)
    finally:
        bar.close()
        tb.close()
        csv_file.close()
        agent.close_sampler()
    return agent


def expected_final_update(
    updates: int, env_steps: int, total_env_steps: int, steps_per_update: int, updates_left: int | None
) -> int:
    """The update count a run will stop at: ``updates`` done so far plus those needed to reach
    ``total_env_steps`` from ``env_steps`` at ``steps_per_update`` each, at most ``updates_left``
    more (a ``--max-updates`` budget; ``None`` for no cap). What the progress bar counts to."""
    left = max(0, total_env_steps - env_steps)
    more = -(-left // max(1, steps_per_update))
    if updates_left is not None:
        more = min(more, max(0, updates_left))
    return updates + more


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict of :class:`RL2Config` fields (top level, or an
    ``rl2`` table)."""
    return read_config_file(path, what="RL² config file", section="rl2")


def cli_train(
    family: str,
    config_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    run_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> Path:
    """What ``metarl train rl2 --family <id> [--config FILE] [--resume] [--run-dir DIR] [--seed S]`` runs.

    Args:
        family: registered family id; must agree with the config file's ``family`` if it has one.
        config_path: JSON or TOML file of :class:`RL2Config` fields (top level or under ``rl2``).
        resume: continue from the newest valid checkpoint in ``run_dir``.
        run_dir: run directory; default ``runs/rl2/<family>/seed<seed>``.
        seed: overrides the config's seed.
        overrides: config fields set after the file is read (e.g. ``{"total_env_steps": 10**6}``).
        progress: show the tqdm progress bar.
        max_seconds: stop (with a checkpoint, resumable) after this much wall-clock.
        init_from: warm-start a new run with the weights of this run directory or checkpoint file.

    Returns:
        The run directory.
    """
    data = load_config(config_path) if config_path is not None else {}
    if "family" in data and data["family"] != family:
        raise ValueError(f"--family {family!r} disagrees with the config file's family {data['family']!r}")
    data = {**data, "family": family, **dict(overrides or {})}
    if seed is not None:
        data["seed"] = seed
    config = RL2Config.from_dict(data, source=str(config_path or "--family"))
    out = Path(run_dir) if run_dir is not None else Path("runs") / "rl2" / family / f"seed{config.seed}"
    train(config, out, resume=resume, progress=progress, max_seconds=max_seconds, init_from=init_from)
    return out
