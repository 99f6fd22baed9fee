"""Baseline learners: observation wrappers, determinism, save/load, the MetaLearner protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

import metarl
from metarl.agents.baselines import (
    ScratchLearner,
    TaskParamsObservation,
    TrainingTasks,
    featurize,
    load_oracle,
    load_pretrained,
    task_features,
    train_oracle,
    train_pretrained,
)


def test_task_params_observation_appends_the_flattened_parameters() -> None:
    family = metarl.make_family("Navigation2D-v0")
    task = family.test[0]
    env = TaskParamsObservation(family.make_env(task))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (4,)
    np.testing.assert_allclose(obs[2:], task.array("goal"), rtol=1e-6)
    mdp = metarl.make_family("TabularMDP-v0")
    env = TaskParamsObservation(mdp.make_env(mdp.test[0]))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10 + task_features(mdp.test[0]).size,)
    assert obs[:10].sum() == 1.0  # the state, one-hot


def test_training_tasks_draws_tasks_reproducibly() -> None:
    family = metarl.make_family("Navigation2D-v0")
    seen = []
    for _ in range(2):
        env = TrainingTasks(family.make_env(), family.train)
        env.reset(seed=3)
        seen.append([env.reset()[1]["task_id"] for _ in range(5)])
    assert seen[0] == seen[1] and len(set(seen[0])) > 1


def test_featurize_one_hot_and_flat() -> None:
    import gymnasium as gym

    np.testing.assert_array_equal(featurize(gym.spaces.Discrete(3), np.array([2, 0])), [[0, 0, 1], [1, 0, 0]])
    assert featurize(gym.spaces.Box(-1, 1, (2, 2)), np.zeros((5, 2, 2))).shape == (5, 4)


def test_scratch_is_deterministic_and_adapts_per_task() -> None:
    family = metarl.make_family("Navigation2D-v0")
    a = metarl.evaluate(ScratchLearner(), family, n_tasks=2, rounds=2, episodes_per_round=3, seed=1)
    b = metarl.evaluate(ScratchLearner(), family, n_tasks=2, rounds=2, episodes_per_round=3, seed=1)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert a.adaptation_unit == "gradient step" and a.adapt_seconds_per_task[-1] > 0


@pytest.mark.parametrize("family_id", ["Navigation2D-v0", "TabularMDP-v0"])
def test_pretrained_save_load_round_trip(family_id: str, tmp_path: Path) -> None:
    family = metarl.make_family(family_id)
    learner = train_pretrained(
        family, seed=0, train_iterations=1, meta_batch_size=2, episodes_per_task=2, progress=False
    )
    learner.save(tmp_path / "p")
    loaded = load_pretrained(tmp_path / "p")
    kw: dict[str, Any] = {"n_tasks": 2, "rounds": 2, "episodes_per_round": 2, "seed": 0}
    np.testing.assert_array_equal(
        metarl.evaluate(learner, family, **kw).returns, metarl.evaluate(loaded, family, **kw).returns
    )
    assert loaded.config["clip_actions"] is True


def test_pretrained_files_from_before_clip_actions_load_unclipped(tmp_path: Path) -> None:
    family = metarl.make_family("Navigation2D-v0")
    learner = train_pretrained(
        family, seed=0, train_iterations=1, meta_batch_size=2, episodes_per_task=2, progress=False
    )
    learner.config = {"gamma": 0.99}  # what train_pretrained saved before the option existed
    learner.save(tmp_path / "old")
    assert load_pretrained(tmp_path / "old").config["clip_actions"] is False


def test_oracle_trains_with_sb3_without_touching_global_rngs(tmp_path: Path) -> None:
    import torch

    family = metarl.make_family("BernoulliBandit-v0")
    # cast: get_state() returns the legacy tuple (NumPy's stubs type the no-argument call as a dict)
    np_before = cast("tuple[Any, ...]", np.random.get_state())[1].copy()  # noqa: NPY002
    torch_before = torch.random.get_rng_state().clone()
    oracle = train_oracle(
        family, seed=0, total_timesteps=128, algorithm_kwargs={"n_steps": 32, "batch_size": 32}
    )
    np.testing.assert_array_equal(cast("tuple[Any, ...]", np.random.get_state())[1], np_before)  # noqa: NPY002
    assert torch.equal(torch.random.get_rng_state(), torch_before)
    oracle.save(tmp_path / "o")
    loaded = load_oracle(tmp_path / "o")
    kw: dict[str, Any] = {"n_tasks": 2, "rounds": 1, "episodes_per_round": 2, "seed": 0}
    np.testing.assert_array_equal(
        metarl.evaluate(oracle, family, **kw).returns, metarl.evaluate(loaded, family, **kw).returns
    )
    assert oracle.name == loaded.name == "oracle-ppo"


def test_a_sac_oracle_saves_and_loads_as_sac_and_bad_files_are_named(tmp_path: Path) -> None:
    family = metarl.make_family("Navigation2D-v0")
    oracle = train_oracle(family, seed=0, total_timesteps=64, algorithm="sac", n_envs=1,
                          algorithm_kwargs={"learning_starts": 16, "batch_size": 8})  # fmt: skip
    oracle.save(tmp_path / "sac")
    loaded = load_oracle(tmp_path / "sac")
    assert oracle.name == loaded.name == "oracle-sac"
    kw: dict[str, Any] = {"n_tasks": 2, "rounds": 1, "episodes_per_round": 1, "seed": 0}
    np.testing.assert_array_equal(
        metarl.evaluate(oracle, family, **kw).returns, metarl.evaluate(loaded, family, **kw).returns
    )
    with pytest.raises(FileNotFoundError, match="no oracle at"):
        load_oracle(tmp_path / "missing")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.zip is not a stable-baselines3 zip"):
        load_oracle(tmp_path / "junk")
