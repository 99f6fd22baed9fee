"""Benchmark of the native batched MuJoCo backend (issue "Speed near the hardware limit").

For HalfCheetahVel-v0 and AntDir-v0, with the same MLP policy in the loop (torch, 2 hidden layers
of 64, tanh, one batched forward per step), in one run, alternatives interleaved in every
repetition, medians reported:

* ``raw_ceiling``: ``mujoco.rollout`` open loop, one call of ``nstep = frame_skip * steps`` over
  all sub-envs on all cores (no policy, no Python per step): the simulator's throughput;
* ``raw_replay``: ``mujoco.rollout`` open loop on all cores over the native run's own trajectory
  (its reset states and warm starts, and the controls its policy chose, recorded in an untimed run):
  the same physics work as ``metarl_native`` (policy-driven states need a different amount of
  contact solving than the random controls of ``raw_ceiling``) with no policy and no per-step
  Python; reported beside the ceiling, the targets stay against ``raw_ceiling``;
* ``rollout_closed_loop``: ``mujoco.rollout`` with one call of ``nstep = frame_skip`` per policy
  step (policy on ``qpos``/``qvel`` only, no rewards or resets; not exact, see the README notes);
* ``gymnasium_single``: one ``family.make_env(task)``, policy batch of 1;
* ``gymnasium_sync``: Gymnasium's ``SyncVectorEnv`` (``make_vec(backend="gymnasium")``);
* ``gymnasium_async``: Gymnasium's ``AsyncVectorEnv``, one process per sub-env (fewer sub-envs);
* ``metarl_native``: ``make_vec`` (native batched backend), ``--threads`` physics threads;
* ``metarl_native_python_loop``: the same backend with its stepping loop in Python
  (``kernel="python"``, the fallback without a C compiler) instead of the compiled C loop;
* thread study (HalfCheetahVel): the native backend with 1, 2 and 3 physics threads and 1 or 2
  torch threads.

Throughput is env steps per second (policy steps x sub-envs). Targets: metarl >= 0.7x the raw
ceiling and >= 2.5x SyncVectorEnv on HalfCheetahVel.

    python scripts/bench_mujoco_speed.py [--out benchmarks/mujoco_speed] [--reps 7] [--num-envs 160]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from mujoco import rollout

import metarl
from metarl.envs.mujoco_batched import MujocoVectorEnv
from metarl.fileio import atomic_write_text
from metarl.provenance import run_metadata

FAMILIES = ("HalfCheetahVel-v0", "AntDir-v0")


def make_policy(obs_dim: int, act_dim: int, seed: int) -> torch.nn.Module:
    """The policy of every alternative: obs -> 64 -> 64 -> action mean, tanh."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(obs_dim, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, act_dim),
        torch.nn.Tanh(),
    )


def act(policy: torch.nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()


def time_vector(vec: Any, policy: torch.nn.Module, steps: int) -> float:
    """Env steps per second of a vector env driven by ``policy`` (autoreset inside the env)."""
    obs, _ = vec.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = vec.step(act(policy, obs))
    return steps * vec.num_envs / (time.perf_counter() - t0)


def time_single(env: Any, policy: torch.nn.Module, steps: int) -> float:
    obs, _ = env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(act(policy, obs[None])[0])
        if term or trunc:
            obs, _ = env.reset()
    return steps / (time.perf_counter() - t0)


def time_raw(model: mujoco.MjModel, frame_skip: int, n: int, steps: int, threads: int, seed: int) -> float:
    """``mujoco.rollout`` open loop over ``n`` envs: the simulator's throughput on ``threads`` cores."""
    nstate = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    data = mujoco.MjData(model)
    state0 = np.empty(nstate)
    mujoco.mj_getState(model, data, state0, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    rng = np.random.default_rng(seed)
    ctrl = rng.uniform(-1, 1, (n, frame_skip * steps, model.nu))
    datas = [mujoco.MjData(model) for _ in range(threads)]
    with rollout.Rollout(nthread=threads if threads > 1 else 0) as ro:
        t0 = time.perf_counter()
        ro.rollout([model] * n, datas, np.tile(state0, (n, 1)), ctrl, nstep=frame_skip * steps)
        return n * steps / (time.perf_counter() - t0)


def replay_inputs(
    vec: MujocoVectorEnv, policy: torch.nn.Module, steps: int
) -> tuple[list[mujoco.MjModel], np.ndarray, np.ndarray, np.ndarray, bool]:
    """The native run's own trajectory: per sub-env models, full-physics states and warm starts after
    ``reset(seed=0)``, and the controls of ``steps`` policy steps (one untimed run, as
    :func:`time_vector`). Also whether the open-loop replay reproduces the run's final ``qpos`` and
    ``qvel`` exactly (it does unless a sub-env was reset inside the run)."""
    obs, _ = vec.reset(seed=0)
    phys = vec._physics  # the backend's integration states (benchmark-only access)
    assert phys is not None
    models = phys.models
    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    scratch = mujoco.MjData(models[0])
    state0 = np.empty((vec.num_envs, mujoco.mj_stateSize(models[0], full)))
    warm = np.empty((vec.num_envs, models[0].nv))
    for i, row in enumerate(phys.state):
        mujoco.mj_setState(models[i], scratch, row, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_getState(models[i], scratch, state0[i], full)
        warm[i] = scratch.qacc_warmstart
    controls = []
    for _ in range(steps):
        a = act(policy, obs)
        controls.append(a)
        obs, *_ = vec.step(a)
    frame_skip = phys.frame_skip
    ctrl = np.repeat(np.stack(controls, axis=1).astype(np.float64), frame_skip, axis=1)
    with rollout.Rollout(nthread=0) as ro:
        states, _ = ro.rollout(models, [scratch], state0, ctrl, nstep=ctrl.shape[1], initial_warmstart=warm)
    nq = models[0].nq
    final = np.concatenate((phys.out["qpos"], phys.out["qvel"]), axis=1)
    exact = bool(np.array_equal(states[:, -1, 1 : 1 + nq + models[0].nv], final))
    return models, state0, warm, ctrl, exact


def time_replay(
    models: list[mujoco.MjModel],
    state0: np.ndarray,
    warm: np.ndarray,
    ctrl: np.ndarray,
    frame_skip: int,
    threads: int,
) -> float:
    """``mujoco.rollout`` open loop over a recorded trajectory on ``threads`` cores (as :func:`time_raw`)."""
    n, nstep = ctrl.shape[:2]
    datas = [mujoco.MjData(models[0]) for _ in range(threads)]
    with rollout.Rollout(nthread=threads if threads > 1 else 0) as ro:
        t0 = time.perf_counter()
        ro.rollout(models, datas, state0, ctrl, nstep=nstep, initial_warmstart=warm)
        return n * (nstep // frame_skip) / (time.perf_counter() - t0)


def time_rollout_closed_loop(
    model: mujoco.MjModel,
    frame_skip: int,
    n: int,
    steps: int,
    threads: int,
    policy: torch.nn.Module,
    obs_dim: int,
) -> float:
    """``mujoco.rollout`` closed loop: one call of ``nstep = frame_skip`` per policy step.

    The policy sees ``qpos[1:]``, ``qvel`` padded with zeros to its input size; no rewards, no
    resets. This is what a rollout-based backend could reach at best, and it is not exact: rollout
    restarts the solver's warm start on every call.
    """
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(model, spec)
    data = mujoco.MjData(model)
    state = np.empty((n, nstate))
    mujoco.mj_getState(model, data, state[0], spec)
    state[:] = state[0]
    out = np.empty((n, frame_skip, nstate))
    sens = np.empty((n, frame_skip, model.nsensordata))
    obs = np.zeros((n, obs_dim))
    k = min(obs_dim, model.nq + model.nv - 1)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    models = [model] * n
    with rollout.Rollout(nthread=threads if threads > 1 else 0) as ro:
        t0 = time.perf_counter()
        for _ in range(steps):
            obs[:, :k] = state[:, 2 : 2 + k]  # state = [time, qpos, qvel, act]
            ctrl = np.repeat(act(policy, obs).astype(np.float64)[:, None, :], frame_skip, axis=1)
            ro.rollout(
                models, datas, state, ctrl, nstep=frame_skip, state=out, sensordata=sens, skip_checks=True
            )
            state[:] = out[:, -1]
        return n * steps / (time.perf_counter() - t0)


def bench_family(family_id: str, args: argparse.Namespace) -> dict[str, Any]:
    fam = metarl.make_family(family_id)
    tasks = list(fam.train[: args.num_envs // args.envs_per_task])
    n = len(tasks) * args.envs_per_task
    probe = fam.make_env(tasks[0])
    obs_space, act_space, base = probe.observation_space, probe.action_space, probe.unwrapped
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(act_space, gym.spaces.Box)
    assert isinstance(base, MujocoEnv)
    obs_dim = obs_space.shape[0]
    act_dim = act_space.shape[0]
    frame_skip = base.frame_skip
    model = base.model
    policy = make_policy(obs_dim, act_dim, args.seed)
    heavy = family_id.startswith("Ant")
    steps = args.steps // (3 if heavy else 1)

    native = {t: MujocoVectorEnv(fam, tasks, args.envs_per_task, num_threads=t) for t in (1, 2, 3)}
    python_loop = MujocoVectorEnv(fam, tasks, args.envs_per_task, num_threads=args.threads, kernel="python")
    sync = metarl.make_vec(fam, tasks, args.envs_per_task, backend="gymnasium")
    async_tasks = tasks[: args.async_envs]
    async_env = AsyncVectorEnv(
        [partial(fam.make_env, t) for t in async_tasks], autoreset_mode=AutoresetMode.SAME_STEP
    )
    single = fam.make_env(tasks[0])

    replay_models, replay_state0, replay_warm, replay_ctrl, replay_exact = replay_inputs(
        native[args.threads], policy, steps
    )

    modes: dict[str, Callable[[], float]] = {
        "raw_ceiling": lambda: time_raw(model, frame_skip, n, steps, args.threads, args.seed),
        "raw_replay": lambda: time_replay(
            replay_models, replay_state0, replay_warm, replay_ctrl, frame_skip, args.threads
        ),
        "rollout_closed_loop": lambda: time_rollout_closed_loop(
            model, frame_skip, n, steps, args.threads, policy, obs_dim
        ),
        "gymnasium_single": lambda: time_single(single, policy, steps * 20),
        "gymnasium_sync": lambda: time_vector(sync, policy, steps),
        "gymnasium_async": lambda: time_vector(async_env, policy, steps * 10),
        "metarl_native": lambda: time_vector(native[args.threads], policy, steps),
        "metarl_native_python_loop": lambda: time_vector(python_loop, policy, steps),
    }
    if args.thread_study and not heavy:
        for t in (1, 2, 3):
            for tt in (1, 2):
                modes[f"native_{t}mj_{tt}torch"] = partial(_with_torch_threads, tt, native[t], policy, steps)
    samples: dict[str, list[float]] = {k: [] for k in modes}
    for rep in range(args.reps):
        order = list(modes) if rep % 2 == 0 else list(reversed(modes))  # interleave both ways
        for key in order:
            samples[key].append(modes[key]())
        print(
            f"{family_id} rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {samples[k][-1]:.0f}" for k in modes)
        )
    for env in (*native.values(), python_loop, sync, async_env, single):
        env.close()
    med = {k: float(np.median(v)) for k, v in samples.items()}
    return {
        "family": family_id,
        "num_envs": n,
        "async_num_envs": len(async_tasks),
        "policy_steps_per_rep": {"vector": steps, "single": steps * 20, "async": steps * 10},
        "raw_replay_reproduces_native_run": replay_exact,
        "median_steps_per_s": med,
        "samples_steps_per_s": samples,
        "ratios": {f"native_over_{k}": med["metarl_native"] / med[base] for k, base in _BASELINES.items()},
        # The same ratios within each repetition (adjacent measurements), then the median: less
        # sensitive to load that drifts over the run.
        "paired_ratios": {
            f"native_over_{k}": float(np.median(np.array(samples["metarl_native"]) / np.array(samples[base])))
            for k, base in _BASELINES.items()
        },
    }


_BASELINES = {
    "raw_ceiling": "raw_ceiling",
    "raw_replay": "raw_replay",
    "rollout_closed_loop": "rollout_closed_loop",
    "sync": "gymnasium_sync",
    "async": "gymnasium_async",
    "single": "gymnasium_single",
    "python_loop": "metarl_native_python_loop",
}


def _with_torch_threads(threads: int, vec: Any, policy: torch.nn.Module, steps: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return time_vector(vec, policy, steps)
    finally:
        torch.set_num_threads(before)


def write_readme(out: Path, results: dict[str, Any]) -> None:
    meta = results["metadata"]
    lines = [
        "# MuJoCo speed: metarl's native batched backend against Gymnasium",
        "",
        "Env steps per second (policy steps x sub-envs), medians over interleaved repetitions in one",
        "run, with the same torch MLP policy (2x64 tanh, one batched forward per step) in the loop;",
        "`raw_ceiling` is `mujoco.rollout` open loop on all cores with no policy and no per-step Python.",
        f"Physics threads: {results['settings']['threads']}; torch threads: "
        f"{results['settings']['torch_threads']}.",
        "",
        "| family | alternative | sub-envs | steps/s | metarl / this |",
        "|---|---|---:|---:|---:|",
    ]
    for fam in results["families"]:
        med = fam["median_steps_per_s"]
        for key in (
            "raw_ceiling",
            "raw_replay",
            "rollout_closed_loop",
            "gymnasium_single",
            "gymnasium_sync",
            "gymnasium_async",
            "metarl_native_python_loop",
            "metarl_native",
        ):
            n = (
                1
                if key == "gymnasium_single"
                else fam["async_num_envs"]
                if key == "gymnasium_async"
                else fam["num_envs"]
            )
            lines.append(
                f"| {fam['family']} | {key} | {n} | {med[key]:,.0f} | {med['metarl_native'] / med[key]:.2f}x |"
            )
    lines += ["", "Targets (HalfCheetahVel): metarl >= 0.7x raw ceiling, >= 2.5x SyncVectorEnv.", ""]
    for fam in results["families"]:
        if not fam["family"].startswith("HalfCheetahVel"):
            continue
        r, p = fam["ratios"], fam["paired_ratios"]
        for label, key, target in (
            ("raw ceiling", "native_over_raw_ceiling", 0.7),
            ("SyncVectorEnv", "native_over_sync", 2.5),
        ):
            verdict = (
                "met"
                if min(r[key], p[key]) >= target
                else "not met"
                if max(r[key], p[key]) < target
                else "met only as " + ("ratio of medians" if r[key] >= target else "median of paired ratios")
            )
            lines.append(
                f"- {label} >= {target}x: {verdict} ({r[key]:.2f}x ratio of medians, {p[key]:.2f}x median of paired ratios)."
            )
    lines.append("")
    for fam in results["families"]:
        r, p = fam["ratios"], fam["paired_ratios"]
        lines.append(
            f"- {fam['family']}: {r['native_over_raw_ceiling']:.2f}x the raw ceiling, "
            f"{r['native_over_sync']:.2f}x SyncVectorEnv, {r['native_over_async']:.2f}x AsyncVectorEnv "
            f"(ratio of medians); median of per-repetition ratios {p['native_over_raw_ceiling']:.2f}x, "
            f"{p['native_over_sync']:.2f}x, {p['native_over_async']:.2f}x. The C stepping loop is "
            f"{r['native_over_python_loop']:.2f}x the Python loop (paired {p['native_over_python_loop']:.2f}x)."
        )
    study = {
        k: v
        for fam in results["families"]
        for k, v in fam["median_steps_per_s"].items()
        if k.startswith("native_")
    }
    if study:
        lines += [
            "",
            "Thread study (HalfCheetahVel, native backend):",
            "",
            "| setting | steps/s |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v:,.0f} |" for k, v in study.items()]
    lines += [
        "",
        "Notes:",
        "",
        "- The native backend keeps every sub-env's integration state (`mjSTATE_INTEGRATION`: qpos, qvel,",
        "  act, ctrl, the solver's warm start `qacc_warmstart`, ...) as a row of one array; each thread",
        "  loads rows into its own scratch `MjData` (`mj_setState`), calls `mj_step` frame_skip times and",
        "  stores them back (`mj_getState`), taking small chunks of sub-envs from a shared counter. The",
        "  loop is C (`envs/_mjbatch.c`, compiled on first use, called through ctypes without the GIL);",
        "  `metarl_native_python_loop` is the same loop in Python (the GIL is taken and released once per",
        "  sub-env and step). Results are",
        "  bit-identical to Gymnasium's (tests, over 1200 steps). `mujoco.rollout` (the ceiling) cannot be",
        "  used for that: MuJoCo 3.3.0's rollout accepts a warm start (`initial_warmstart`) but returns",
        "  only full-physics states, not the final warm start, and restarting it each policy step moves",
        "  HalfCheetah's trajectory by more than 10 within 1000 steps.",
        "- `raw_replay` steps the same trajectory as `metarl_native` (its reset states and warm starts and",
        "  the controls its policy chose, open loop, reproducing its final states bit for bit:",
        f"  {', '.join(f['family'] + ' ' + str(f['raw_replay_reproduces_native_run']) for f in results['families'])});",
        "  `raw_ceiling` uses uniform random controls from the model's initial state instead, and the",
        "  policy's states cost a different amount of physics (contacts): raw_replay / raw_ceiling here",
        "  "
        + ", ".join(
            f"{f['family']} {f['median_steps_per_s']['raw_replay'] / f['median_steps_per_s']['raw_ceiling']:.2f}"
            for f in results["families"]
        )
        + ". The targets are stated against `raw_ceiling`.",
        "- torch runs on 1 thread: with 2 torch threads beside 2 physics threads on 2 cores the policy",
        "  forward and the physics threads oversubscribe the cores (see the thread study).",
        "- The machine is shared with other jobs; absolute figures vary between runs, ratios within a",
        "  run (interleaved repetitions, medians) are the comparable numbers.",
        "",
        f"Command: `{meta['command']}`  ",
        f"Seed: {meta['seed']}  ",
        f"Commit: `{meta['commit']}`  ",
        f"Date: {meta['date']}  ",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, load average "
        f"{meta['machine']['load_average_1_5_15min']} at start, {results['load_average_end']} at the end (shared "
        f"machine, 2 cores: a 1-minute load above 2 means other jobs competed for the cores), "
        f"{meta['machine']['platform']}; "
        f"versions {meta['machine']['versions']}",
        "",
    ]
    atomic_write_text(out / "README.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/mujoco_speed"))
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=160)
    parser.add_argument("--envs-per-task", type=int, default=4)
    parser.add_argument("--async-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="policy steps per repetition (Ant: a third)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="physics threads")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--no-thread-study", dest="thread_study", action="store_false")
    args = parser.parse_args()
    meta = run_metadata(args.seed)
    torch.set_num_threads(args.torch_threads)
    results: dict[str, Any] = {
        "metadata": meta,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "families": [bench_family(f, args) for f in FAMILIES],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    write_readme(args.out, results)
    for fam in results["families"]:
        print(fam["family"], {k: round(v, 2) for k, v in fam["ratios"].items()})
        print(fam["family"], "paired", {k: round(v, 2) for k, v in fam["paired_ratios"].items()})


if __name__ == "__main__":
    main()
