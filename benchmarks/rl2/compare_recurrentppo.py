"""Can sb3-contrib's RecurrentPPO stand in for metarl's own GRU-PPO as the RL² trainer?

Both learners train on BernoulliBandit-v0 trials through the same trial wrapper
(:class:`metarl.agents.rl2_trials.TrialVecEnv`: inputs [obs, one-hot previous action, previous
reward, done flag], one sub-env per trial, the recurrent state reset only between trials), with
the same batch (trials x trial length per update), PPO constants and wall-clock budget, one after
the other in this one process. Each is then scored on the same 1000 held-out test tasks (one
trial each). RecurrentPPO sees a trial as its episode: its ``dones`` are trial ends, so its LSTM
state is reset between trials and its GAE runs over the whole trial, as RL² needs.

    .venv/bin/python benchmarks/rl2/compare_recurrentppo.py --pulls 10 --arms 5 --budget 150
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from metarl.agents.rl2 import RL2, RL2Config
from metarl.agents.rl2_trials import TaskSampler, TrialVecEnv
from metarl.envs.bandit import BernoulliBanditFamily
from metarl.evaluation import bootstrap_ci


class SB3TrialEnv(VecEnv):
    """RL² trials as a stable-baselines3 VecEnv (families whose trials all end on the same step)."""

    def __init__(self, family: BernoulliBanditFamily, num_trials: int, n: int, seed: int) -> None:
        self.trials = TrialVecEnv(family, num_trials, n)
        self.sampler = TaskSampler(family, "sample")
        self.rng = np.random.default_rng(seed)
        self.returns = np.zeros(num_trials)
        self._actions: np.ndarray | None = None
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.trials.inputs.input_dim,), dtype=np.float32)
        super().__init__(num_trials, obs_space, self.trials.vec.single_action_space)

    def _new_trials(self) -> np.ndarray:
        tasks = self.sampler(self.num_envs, self.rng)
        self.returns[:] = 0.0
        return self.trials.reset(tasks, seed=int(self.rng.integers(2**31 - 1)))

    def reset(self) -> np.ndarray:
        return self._new_trials()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None
        step = self.trials.step(self._actions)
        self.returns += step.rewards
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        obs = step.inputs
        if step.trial_done.all():
            for i in range(self.num_envs):
                infos[i] = {"episode": {"r": float(self.returns[i]), "l": 0}, "terminal_observation": obs[i]}
            obs = self._new_trials()
        elif step.trial_done.any():
            raise RuntimeError("SB3TrialEnv needs trials that all end on the same step")
        return obs, step.rewards.astype(np.float32), step.trial_done.copy(), infos

    def close(self) -> None:
        self.trials.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*args, **kwargs)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs


class _Deadline(BaseCallback):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.deadline = time.perf_counter() + seconds

    def _on_step(self) -> bool:
        return time.perf_counter() < self.deadline


def score_sb3(
    model: RecurrentPPO, tasks: list[Any], family: BernoulliBanditFamily, n: int, seed: int
) -> np.ndarray:
    env = TrialVecEnv(family, len(tasks), n)
    x = env.reset(tasks, seed=seed)
    state, start = None, np.ones(len(tasks), dtype=bool)
    totals = np.zeros(len(tasks))
    for _ in range(n):
        action, state = model.predict(x, state=state, episode_start=start, deterministic=False)
        step = env.step(action)
        totals += step.rewards
        x, start = step.inputs, np.zeros(len(tasks), dtype=bool)
    return totals


def score_own(agent: RL2, tasks: list[Any], family: BernoulliBanditFamily, n: int, seed: int) -> np.ndarray:
    from metarl.agents.classical_bench import run_trials
    from metarl.vector import make_vec

    vec = make_vec(family, tasks)
    return run_trials(agent.learner(), vec, n, seed=seed).sum(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pulls", type=int, default=10)
    ap.add_argument("--arms", type=int, default=5)
    ap.add_argument("--trials", type=int, default=500, help="trials per update")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--budget", type=float, default=150.0, help="training seconds for each learner")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "recurrentppo_vs_gru_ppo.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, k = args.pulls, args.arms
    family = BernoulliBanditFamily(n_arms=k, n_pulls=n)
    tasks = list(family.test[:1000])
    ppo = {"lr": 1e-3, "gamma": 0.99, "lam": 0.95, "epochs": 4, "minibatches": 4, "ent": 0.01, "clip": 0.2}
    results: dict[str, Any] = {"setting": {"n": n, "k": k}, "budget_seconds": args.budget, "ppo": ppo}

    # -- metarl GRU-PPO -------------------------------------------------------------------
    config = RL2Config(
        family="BernoulliBandit-v0",
        family_kwargs={"n_arms": k, "n_pulls": n},
        trials_per_update=args.trials,
        hidden_size=args.hidden,
        learning_rate=ppo["lr"],
        gamma=ppo["gamma"],
        gae_lambda=ppo["lam"],
        ppo_epochs=ppo["epochs"],
        num_minibatches=ppo["minibatches"],
        ent_coef=ppo["ent"],
        clip_coef=ppo["clip"],
        seed=args.seed,
    )
    agent = RL2(config)
    t0 = time.perf_counter()
    curve = []
    while time.perf_counter() - t0 < args.budget:
        stats = agent.train_step()
        curve.append((round(time.perf_counter() - t0, 1), agent.env_steps, round(stats["trial_return"], 3)))
    own_seconds = time.perf_counter() - t0
    own = score_own(agent, tasks, family, n, seed=args.seed + 1)
    results["gru_ppo"] = {
        "env_steps": agent.env_steps,
        "updates": agent.updates,
        "train_seconds": round(own_seconds, 1),
        "steps_per_second": round(agent.env_steps / own_seconds, 1),
        "test_return": bootstrap_ci(own),
        "curve": curve[:: max(1, len(curve) // 20)],
    }
    print("gru_ppo", json.dumps({k2: v for k2, v in results["gru_ppo"].items() if k2 != "curve"}), flush=True)

    # -- sb3-contrib RecurrentPPO ---------------------------------------------------------
    env = SB3TrialEnv(family, args.trials, n, seed=args.seed)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        learning_rate=ppo["lr"],
        n_steps=n,
        batch_size=args.trials * n // ppo["minibatches"],
        n_epochs=ppo["epochs"],
        gamma=ppo["gamma"],
        gae_lambda=ppo["lam"],
        ent_coef=ppo["ent"],
        clip_range=ppo["clip"],
        policy_kwargs={
            "lstm_hidden_size": args.hidden,
            "shared_lstm": True,
            "enable_critic_lstm": False,
            "net_arch": [],
        },
        seed=args.seed,
        device="cpu",
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=10**9, callback=_Deadline(args.budget))
    sb3_seconds = time.perf_counter() - t0
    sb3 = score_sb3(model, tasks, family, n, seed=args.seed + 1)
    results["recurrent_ppo"] = {
        "env_steps": int(model.num_timesteps),
        "train_seconds": round(sb3_seconds, 1),
        "steps_per_second": round(model.num_timesteps / sb3_seconds, 1),
        "test_return": bootstrap_ci(sb3),
    }
    print("recurrent_ppo", json.dumps(results["recurrent_ppo"]), flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
