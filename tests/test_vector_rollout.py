"""Multi-task vector env and collect(): task layout, in-place reassignment, autoreset, episode batch."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import metarl
from metarl import EpisodeBatch, TaskNotSetError


@pytest.fixture(scope="module")
def fam() -> metarl.TaskFamily:
    return metarl.make_family("Navigation2D-v0", split_sizes={"test": 4, "train": 4, "validation": 2})


@pytest.mark.parametrize("backend", ["native", "gymnasium"])
def test_layout_and_autoreset_mode(fam: metarl.TaskFamily, backend: str) -> None:
    vec = metarl.make_vec(fam, fam.test[:3], envs_per_task=2, backend=backend)
    assert vec.num_envs == 6 and vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.task_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert vec.subenv_tasks[3] == fam.test[1]


@pytest.mark.parametrize("backend", ["native", "gymnasium"])
def test_set_tasks_in_place(fam: metarl.TaskFamily, backend: str) -> None:
    vec = metarl.make_vec(fam, fam.test[:2], backend=backend)
    envs_before = getattr(vec, "envs", None)
    vec.set_tasks(fam.train[:2])
    assert vec.tasks == fam.train[:2] and getattr(vec, "envs", None) is envs_before
    vec.reset(seed=0)
    _, rewards, *_ = vec.step(np.zeros((2, 2), dtype=np.float32))
    goals = np.stack([t.array("goal") for t in fam.train[:2]])
    np.testing.assert_allclose(rewards, -np.linalg.norm(goals, axis=1))
    with pytest.raises(ValueError, match="needs 2 tasks, got 1"):
        vec.set_tasks(fam.train[:1])


def test_native_env_checks_its_input(fam: metarl.TaskFamily) -> None:
    vec = metarl.make_vec(fam, fam.test[:2], backend="native")
    with pytest.raises(TaskNotSetError, match="reset"):
        vec.step(np.zeros((2, 2)))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 2\), expected \(2, 2\)"):
        vec.step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"sub-envs \[1\] got NaN or inf"):
        vec.step(np.array([[0.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="backend must be"):
        metarl.make_vec(fam, fam.test, backend="cuda")
    with pytest.raises(ValueError, match="envs_per_task must be a positive int"):
        metarl.make_vec(fam, fam.test, envs_per_task=0)


def test_collect_orders_episodes_by_task_and_keeps_truncation_apart(fam: metarl.TaskFamily) -> None:
    vec = metarl.make_vec(fam, fam.test[:2], envs_per_task=2)
    batch = metarl.collect(vec, lambda obs: np.zeros((4, 2), dtype=np.float32), episodes_per_task=4, seed=3)
    assert isinstance(batch, EpisodeBatch)
    assert batch.task_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch.observations.shape == (8, 100, 2) and batch.mask.all()
    assert batch.truncations[:, -1].all() and not batch.terminations.any()
    assert batch.env_steps == 800 and np.isnan(batch.success).all()
    by_task = batch.by_task()
    assert by_task.rewards.shape == (2, 4, 100) and by_task.returns.shape == (2, 4)
    goal = fam.test[1].array("goal")
    np.testing.assert_allclose(batch.returns[4], -100 * np.linalg.norm(goal))
    with pytest.raises(ValueError, match="multiple of the vector env's envs_per_task=2"):
        metarl.collect(vec, lambda obs: np.zeros((4, 2)), episodes_per_task=3)


def test_collect_handles_early_termination_with_padding(fam: metarl.TaskFamily) -> None:
    task = fam.task(goal=[0.05, 0.0])
    vec = metarl.make_vec(fam, [task, fam.test[0]])

    def to_goal(observations: np.ndarray) -> np.ndarray:
        goals = np.array([[0.05, 0.0], fam.test[0].array("goal")])
        return np.clip(goals - observations, -0.1, 0.1).astype(np.float32)

    batch = metarl.collect(vec, to_goal, episodes_per_task=3, seed=0)
    first = batch.for_task(0)
    assert first.lengths.tolist() == [1, 1, 1] and first.terminations[:, 0].all()
    assert not first.mask[:, 1:].any() and (first.rewards[:, 1:] == 0).all()
    np.testing.assert_allclose(first.final_observations, [[0.05, 0.0]] * 3, atol=1e-7)


def test_stateful_policy_sees_every_recorded_step(fam: metarl.TaskFamily) -> None:
    class Counting:
        def __init__(self) -> None:
            self.steps = np.zeros(2, dtype=int)

        def __call__(self, observations: np.ndarray) -> np.ndarray:
            return np.zeros((2, 2), dtype=np.float32)

        def observe(self, actions, rewards, terminations, truncations, active) -> None:
            self.steps += active

    policy = Counting()
    vec = metarl.make_vec(fam, fam.test[:1], envs_per_task=2)
    metarl.collect(vec, policy, episodes_per_task=2)
    assert policy.steps.tolist() == [100, 100]
