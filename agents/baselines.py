"""Reference learners for adaptation-speed benchmarks (Finn et al. 2017, section 5.3).

All of them implement :class:`metarl.MetaLearner`, so :func:`metarl.evaluate` meta-tests them exactly
like a meta-learner:

* ``random``: :class:`~metarl.agents.scripted.RandomLearner` (re-exported), uniform actions; the
  floor of normalised scores.
* ``pretrained``: one MLP policy trained with policy gradient on all training tasks at once
  (:func:`train_pretrained`), then fine-tuned on each test task with the *same* inner step as
  MAML: REINFORCE with a per-task linear feature baseline and step size ``step_size``.
* ``scratch``: a randomly initialised policy (seeded by the evaluation seed) with the same steps
  (:class:`ScratchLearner`).
* ``oracle-ppo``: a task-conditioned policy that sees the task's parameters appended to its
  observation (:class:`TaskParamsObservation`), trained with stable-baselines3 PPO over the
  training tasks (:func:`train_oracle`) and run deterministically; it does not adapt.

The gradient-step baselines reuse the MAML engineer's functional policies
(:mod:`metarl.agents.policies`) and meta-test learner (:class:`metarl.agents.maml_trpo.MAMLLearner`),
so "fine-tuning" here is bit-for-bit the inner loop MAML is evaluated with.

Discrete observations (tabular MDPs) are one-hot encoded for every MLP policy here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random as _py_random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from metarl.agents.policies import MLPPolicy, PolicySampler, make_policy
from metarl.agents.scripted import RandomLearner
from metarl.evaluation import Adaptation, AdaptationUnit
from metarl.family import TaskFamily
from metarl.fileio import atomic_write_text
from metarl.rollout import EpisodeBatch, Policy, collect
from metarl.task import Task
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__all__ = [
    "RECIPES",
    "GradientStepLearner",
    "RandomLearner",
    "ScratchLearner",
    "TaskConditionedOracle",
    "TaskParamsObservation",
    "TrainingTasks",
    "featurize",
    "load_oracle",
    "load_pretrained",
    "make_random",
    "make_scratch",
    "task_features",
    "train_oracle",
    "train_pretrained",
]

VecEnv = BatchedTaskVectorEnv | SyncTaskVectorEnv
CHECKPOINT_FORMAT = "metarl.PretrainedPolicy"


# ----------------------------------------------------------------------------------- observations
def feature_space(space: gym.Space[Any]) -> gym.spaces.Box:
    """The flat float ``Box`` that :func:`featurize` maps ``space`` into (one-hot for ``Discrete``)."""
    if isinstance(space, gym.spaces.Discrete):
        return gym.spaces.Box(0.0, 1.0, shape=(int(space.n),), dtype=np.float32)
    if isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(-np.inf, np.inf, shape=(int(np.prod(space.shape)),), dtype=np.float32)
    raise TypeError(f"baselines support Box and Discrete observation spaces, got {space}")


def featurize(space: gym.Space[Any], observations: np.ndarray) -> np.ndarray:
    """Observations ``(n, *shape)`` as float32 features ``(n, dim)``: flattened, or one-hot."""
    obs = np.asarray(observations)
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(int(space.n), dtype=np.float32)[obs.astype(np.int64) - int(space.start)]
    return obs.reshape(obs.shape[0], -1).astype(np.float32)


def task_features(task: Task) -> np.ndarray:
    """A task's parameters flattened into one float32 vector (parameters in name order)."""
    return np.concatenate([task.array(name).ravel() for name in task.names]).astype(np.float32)


class TaskParamsObservation(gym.ObservationWrapper):
    """Append the current task's flattened parameters to the (featurized) observation.

    The observation is what an oracle sees: the task is no longer hidden, so a single policy can
    solve every task without adapting.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._base_space = env.observation_space
        base: Any = env.unwrapped
        task = base.task_family.train[0] if base.task is None else base.task
        dim = feature_space(self._base_space).shape[0] + task_features(task).size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        task: Any = getattr(self.env.unwrapped, "task", None)
        obs = featurize(self._base_space, np.asarray(observation)[None])[0]
        return np.concatenate([obs, task_features(task)])


class TrainingTasks(gym.Wrapper):
    """Draw a fresh task from ``tasks`` at every reset (uniformly, from a generator seeded by the
    first ``reset(seed=...)``), so an ordinary RL algorithm trains over the task distribution."""

    def __init__(self, env: gym.Env, tasks: Sequence[Task]) -> None:
        super().__init__(env)
        if not tasks:
            raise ValueError("TrainingTasks needs at least one task")
        self.tasks = tuple(tasks)
        self._rng = np.random.default_rng(0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        task = self.tasks[int(self._rng.integers(len(self.tasks)))]
        return self.env.reset(seed=seed, options={**(options or {}), "task": task})


# ----------------------------------------------------------------------------- gradient steps
def _maml() -> Any:
    """The MAML engineer's module (imported lazily: the baselines' only hard dependency on it)."""
    import metarl.agents.maml_trpo as maml

    return maml


class _FeaturizedAdaptation:
    """Wrap an adaptation so its policy and updates see featurized (one-hot) observations."""

    def __init__(self, inner: Adaptation, space: gym.Space[Any]) -> None:
        self.inner, self.space = inner, space

    def policy(self) -> Policy:
        sampler = self.inner.policy()
        return lambda observations: sampler(featurize(self.space, observations))

    def update(self, episodes: EpisodeBatch) -> None:
        self.inner.update(_featurized_batch(episodes, self.space))


def _featurized_batch(episodes: EpisodeBatch, space: gym.Space[Any]) -> EpisodeBatch:
    """``episodes`` with (one-hot) featurized observations, for the baseline fit and the loss."""
    obs = episodes.observations
    feats = featurize(space, obs.reshape(-1)).reshape(*obs.shape, -1)
    finals = featurize(space, episodes.final_observations.reshape(-1))
    return dataclasses.replace(episodes, observations=feats, final_observations=finals)


class GradientStepLearner:
    """A policy initialisation meta-tested with MAML's inner step (vanilla PG, linear baseline).

    Args:
        policy: a :class:`metarl.agents.policies.MLPPolicy` holding the initial parameters.
        observation_space: the family's raw observation space (``Discrete`` ones are one-hot encoded).
        step_size: the inner step size of every parameter (0.1 in MAML).
        name: the learner's name in results.
        config: keyword arguments of :class:`~metarl.agents.maml_trpo.MAMLTRPOConfig` that shape the
            inner step (``gamma``, ``gae_lambda``, ``baseline_reg``, ``normalize_advantages``) and
            the sampling (``clip_actions``, on by default).
        policy_spec: how to rebuild ``policy`` (family id, hidden sizes, ...), saved by :meth:`save`.
    """

    adaptation_unit: AdaptationUnit = "gradient step"

    def __init__(
        self,
        policy: MLPPolicy,
        observation_space: gym.Space[Any],
        *,
        step_size: float = 0.1,
        name: str = "pretrained",
        config: dict[str, Any] | None = None,
        policy_spec: dict[str, Any] | None = None,
    ) -> None:
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size!r}")
        self.policy, self.observation_space, self.step_size, self.name = (
            policy,
            observation_space,
            step_size,
            name,
        )
        self.config = dict(config or {})
        self.policy_spec = dict(policy_spec or {})

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> Adaptation:
        maml = _maml()
        cfg = maml.MAMLTRPOConfig(inner_lr=self.step_size, **self.config)
        steps = {n: self.step_size for n, _ in self.policy.named_parameters()}
        adaptation = maml.MAMLLearner(self.policy, steps, cfg, name=self.name).begin_adaptation(vec_env, seed)
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return _FeaturizedAdaptation(adaptation, self.observation_space)
        return adaptation

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Save the initial parameters (``.pt``, a state dict) and their config (``.json``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.policy.state_dict(), path.with_suffix(".pt"))
        meta = {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "step_size": self.step_size,
            "config": self.config,
            "policy": self.policy_spec,
            **(extra or {}),
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))


def _build_policy(
    family: TaskFamily,
    generator: torch.Generator,
    hidden_sizes: Sequence[int],
    nonlinearity: str,
    init_std: float,
) -> tuple[MLPPolicy, gym.Space[Any], dict[str, Any]]:

    env = family.make_env()
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    spec = {
        "family_id": family.id,
        "hidden_sizes": list(hidden_sizes),
        "nonlinearity": nonlinearity,
        "init_std": init_std,
    }
    policy = make_policy(feature_space(obs_space), act_space, hidden_sizes, nonlinearity, init_std, generator)
    return policy, obs_space, spec


class ScratchLearner:
    """Random initialisation + MAML's inner gradient steps: the "from scratch" baseline.

    The initialisation is drawn afresh from the evaluation seed in every ``begin_adaptation``.
    """

    adaptation_unit: AdaptationUnit = "gradient step"
    name = "scratch"

    def __init__(
        self,
        step_size: float = 0.1,
        hidden_sizes: Sequence[int] = (64, 64),
        nonlinearity: str = "tanh",
        init_std: float = 1.0,
    ) -> None:
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size!r}")
        self.step_size, self.hidden_sizes, self.nonlinearity, self.init_std = (
            step_size, tuple(hidden_sizes), nonlinearity, init_std)  # fmt: skip

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> Adaptation:
        generator = torch.Generator().manual_seed(int(seed) + 7919)
        policy, obs_space, _ = _build_policy(
            vec_env.family, generator, self.hidden_sizes, self.nonlinearity, self.init_std
        )
        learner = GradientStepLearner(policy, obs_space, step_size=self.step_size, name=self.name)
        return learner.begin_adaptation(vec_env, seed)


def train_pretrained(
    family: TaskFamily,
    *,
    seed: int = 0,
    train_iterations: int = 50,
    meta_batch_size: int = 20,
    episodes_per_task: int = 20,
    lr: float = 0.01,
    step_size: float = 0.1,
    hidden_sizes: Sequence[int] = (64, 64),
    nonlinearity: str = "tanh",
    init_std: float = 1.0,
    gamma: float = 0.99,
    progress: bool = True,
) -> GradientStepLearner:
    """Train one policy on all training tasks (joint policy gradient), return it as a learner.

    Every iteration draws ``meta_batch_size`` training tasks, collects ``episodes_per_task``
    episodes on each, fits a linear baseline per task and takes one Adam step (learning rate
    ``lr``) on the mean REINFORCE loss over tasks, with per-task standardised advantages. The
    policy is then meta-tested by fine-tuning with step size ``step_size`` (see
    :class:`GradientStepLearner`).
    """
    from metarl.agents.advantages import task_advantages

    maml = _maml()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(seed))
    policy, obs_space, spec = _build_policy(family, generator, hidden_sizes, nonlinearity, init_std)
    train_tasks = family.train
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    batch = min(meta_batch_size, len(train_tasks))
    vec = make_vec(family, train_tasks[:batch], envs_per_task=episodes_per_task)
    for _ in tqdm(range(train_iterations), desc=f"pretrain {family.id}", leave=False, disable=not progress):
        tasks = [train_tasks[i] for i in rng.choice(len(train_tasks), size=batch, replace=False)]
        vec.set_tasks(tasks)
        sampler = PolicySampler(policy, policy.params(), generator, clip_actions=True)
        act: Policy = sampler
        if isinstance(obs_space, gym.spaces.Discrete):
            act = _FeaturizedAdaptation(_Fixed(sampler), obs_space).policy()
        episodes = collect(vec, act, episodes_per_task, seed=int(rng.integers(2**31)))
        if isinstance(obs_space, gym.spaces.Discrete):
            episodes = _featurized_batch(episodes, obs_space)
        data = maml.task_tensors(episodes, task_advantages(episodes, gamma, 1.0), normalize=True)
        loss = maml.inner_loss(policy, policy.params(), data).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vec.close()
    return GradientStepLearner(
        policy, obs_space, step_size=step_size, name="pretrained", config={"gamma": gamma, "clip_actions": True},
        policy_spec={**spec, "seed": seed, "train_iterations": train_iterations})  # fmt: skip


class _Fixed:
    """An adaptation that only provides a policy (used to featurize a sampler)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def policy(self) -> Policy:
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:  # pragma: no cover - never called
        pass


def load_pretrained(path: str | Path) -> GradientStepLearner:
    """Load a learner saved by :meth:`GradientStepLearner.save` (``.json`` + ``.pt``)."""
    from metarl.registry import make_family

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path.with_suffix('.json')} is not a {CHECKPOINT_FORMAT} checkpoint")
    spec = meta["policy"]
    policy, obs_space, _ = _build_policy(
        make_family(spec["family_id"]), torch.Generator().manual_seed(0), spec["hidden_sizes"],
        spec["nonlinearity"], spec["init_std"])  # fmt: skip
    policy.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
    return GradientStepLearner(
        policy,
        obs_space,
        step_size=meta["step_size"],
        name=meta["name"],
        config={**_maml().SAVED_DEFAULTS, **meta["config"]},
        policy_spec=spec,
    )


# ------------------------------------------------------------------------------------- the oracle
@contextlib.contextmanager
def _seeded_global_rngs(seed: int) -> Iterator[None]:
    """stable-baselines3 draws from the global Python, NumPy and torch RNGs (and seeds them); run it
    inside this block so those states are restored afterwards and metarl's callers are unaffected."""
    py_state, np_state = _py_random.getstate(), np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng():
        try:
            yield
        finally:
            _py_random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


class _OraclePolicy:
    def __init__(self, model: Any, space: gym.Space[Any], task_feats: np.ndarray) -> None:
        self.model, self.space, self.task_feats = model, space, task_feats

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        obs = np.concatenate([featurize(self.space, observations), self.task_feats], axis=1)
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions)


class _OracleAdaptation:
    def __init__(self, model: Any, vec_env: VecEnv) -> None:
        feats = np.stack([task_features(t) for t in vec_env.subenv_tasks])
        self._policy = _OraclePolicy(model, vec_env.single_observation_space, feats)

    def policy(self) -> Policy:
        return self._policy

    def update(self, episodes: EpisodeBatch) -> None:
        pass


class TaskConditionedOracle:
    """Runs a policy trained on ``(observation, task parameters)``; it reads the tasks of the vector
    env (as oracles may) and never adapts."""

    adaptation_unit: AdaptationUnit = "gradient step"

    def __init__(self, model: Any, name: str = "oracle-ppo") -> None:
        self.model, self.name = model, name

    def begin_adaptation(self, vec_env: VecEnv, seed: int) -> Adaptation:
        return _OracleAdaptation(self.model, vec_env)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.model.save(Path(path).with_suffix(".zip"))


def train_oracle(
    family: TaskFamily,
    *,
    seed: int = 0,
    total_timesteps: int = 200_000,
    algorithm: str = "ppo",
    n_envs: int = 4,
    algorithm_kwargs: dict[str, Any] | None = None,
) -> TaskConditionedOracle:
    """Train a task-conditioned policy with stable-baselines3 (PPO, or SAC for ``Box`` actions)
    over the family's training tasks; ``algorithm_kwargs`` go to the SB3 constructor."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    algos = {"ppo": PPO, "sac": SAC}
    if algorithm not in algos:
        raise ValueError(f"unknown oracle algorithm {algorithm!r}; choose one of {sorted(algos)}")
    tasks = family.train

    def make() -> gym.Env:
        return TaskParamsObservation(TrainingTasks(family.make_env(), tasks))

    with _seeded_global_rngs(seed):
        env = DummyVecEnv([make] * n_envs)
        model = algos[algorithm](
            "MlpPolicy", env, seed=seed, device="cpu", verbose=0, **(algorithm_kwargs or {})
        )
        model.learn(total_timesteps=int(total_timesteps))
        env.close()
    return TaskConditionedOracle(model, name=f"oracle-{algorithm}")


def load_oracle(path: str | Path) -> TaskConditionedOracle:
    """Load an oracle saved by :meth:`TaskConditionedOracle.save` (a stable-baselines3 zip of a PPO
    or SAC model, told apart by the optimiser files SB3 stores: SAC's actor and critic have their own).
    The learner is named ``oracle-ppo`` or ``oracle-sac``."""
    import zipfile

    from stable_baselines3 import PPO, SAC

    file = Path(path).with_suffix(".zip")
    if not file.is_file():
        raise FileNotFoundError(f"no oracle at {file}: expected a zip saved by TaskConditionedOracle.save")
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as err:
        raise ValueError(f"{file} is not a stable-baselines3 zip ({err})") from None
    if "actor.optimizer.pth" in names:
        return TaskConditionedOracle(SAC.load(file, device="cpu"), name="oracle-sac")
    if "policy.optimizer.pth" in names:
        return TaskConditionedOracle(PPO.load(file, device="cpu"), name="oracle-ppo")
    raise ValueError(f"{file} holds neither a PPO nor a SAC model (files: {sorted(names)})")


# ------------------------------------------------------------------------------------ recipes
def make_random(family: TaskFamily, *, seed: int = 0) -> RandomLearner:
    """The random learner (needs no training)."""
    return RandomLearner()


def make_scratch(family: TaskFamily, *, seed: int = 0, **kwargs: Any) -> ScratchLearner:
    """The from-scratch learner (needs no training; the evaluation seed draws its initialisation)."""
    return ScratchLearner(**kwargs)


#: Training recipes used by the benchmark runner: ``name -> fn(family, *, seed, **kwargs)``.
RECIPES: dict[str, Any] = {
    "pretrained": train_pretrained,
    "scratch": make_scratch,
    "oracle-ppo": train_oracle,
}
