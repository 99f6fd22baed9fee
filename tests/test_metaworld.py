"""The Meta-World families of metarl.envs.meta_world (skipped without the metaworld package)."""

from __future__ import annotations

import sys
import warnings
from typing import Any, cast

import numpy as np
import pytest

import metarl
from metarl.envs import meta_world_data as data
from metarl.envs.meta_world import MetaWorldEnv, ML1Family, ML10Family
from metarl.evaluation import AdaptationUnit

metaworld = pytest.importorskip("metaworld")
from gymnasium.utils.env_checker import check_env  # noqa: E402
from metaworld import env_dict  # noqa: E402
from stable_baselines3.common.env_checker import check_env as sb3_check_env  # noqa: E402

SMALL = {"train": 4, "validation": 2, "test": 3}


def env_index(task: metarl.Task) -> int:
    """The task's ``env_index`` parameter (a number, never a tuple) as an int."""
    index = task["env_index"]
    assert not isinstance(index, tuple)
    return int(index)


def test_class_lists_match_the_installed_metaworld() -> None:
    assert data.ML10_TRAIN == tuple(env_dict.ML10_V3["train"])
    assert data.ML10_TEST == tuple(env_dict.ML10_V3["test"])
    assert data.ML45_TRAIN == tuple(env_dict.ML45_V3["train"])
    assert data.ML45_TEST == tuple(env_dict.ML45_V3["test"])
    assert data.ALL_ENV_NAMES == tuple(env_dict.ALL_V3_ENVIRONMENTS)


@pytest.mark.parametrize("name", (*data.ALL_ENV_NAMES[::5], "pick-place-v3", "push-v3", "sweep-into-v3"))
def test_reset_spaces_match_the_installed_metaworld(name: str) -> None:
    env = env_dict.ALL_V3_ENVIRONMENTS[name]()
    low, high = data.RESET_SPACES[name]
    assert env._random_reset_space is not None
    np.testing.assert_array_equal(env._random_reset_space.low, low)
    np.testing.assert_array_equal(env._random_reset_space.high, high)
    env.close()


def test_ml10_splits_follow_metaworld_train_and_test_classes() -> None:
    family = metarl.make_family("ML10-v0")
    assert family.split_sizes == {"train": 500, "validation": 50, "test": 250}
    assert isinstance(family, ML10Family)
    names = family.env_names
    train = [names[env_index(t)] for t in family.train]
    test = [names[env_index(t)] for t in family.test]
    validation = {names[env_index(t)] for t in family.validation}
    assert train[:10] == list(data.ML10_TRAIN) and set(train) == set(data.ML10_TRAIN)
    assert all(train.count(n) == 50 for n in data.ML10_TRAIN)
    assert set(test) == set(data.ML10_TEST) and all(test.count(n) == 50 for n in data.ML10_TEST)
    assert validation == set(data.ML10_TRAIN)
    sampled = family.sample(40, np.random.default_rng(0))
    assert {names[env_index(t)] for t in sampled} <= set(data.ML10_TRAIN)


def test_ml1_test_goals_are_fresh_goals_of_the_same_class() -> None:
    family = metarl.make_family("ML1-push-v0")
    assert isinstance(family, ML1Family)
    assert family.env_names == ("push-v3",)
    train = {tuple(t.array("rand_vec")) for t in family.train}
    test = {tuple(t.array("rand_vec")) for t in family.test}
    assert len(train) == 50 and len(test) == 50 and not train & test
    assert ML1Family("push-v3").test == family.test


def test_family_and_env_use_no_global_rng() -> None:
    # cast: get_state() returns the legacy tuple (NumPy's stubs type the no-argument call as a dict)
    state = cast("tuple[Any, ...]", np.random.get_state())[1].copy()  # noqa: NPY002  (checking it is untouched)
    family = ML1Family("pick-place", split_sizes=SMALL)
    env = family.make_env(family.train[0])
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    np.testing.assert_array_equal(cast("tuple[Any, ...]", np.random.get_state())[1], state)  # noqa: NPY002


def test_scripted_reach_succeeds_and_success_is_in_info() -> None:
    """Meta-World's scripted reach policy, told the goal of our task, reaches it: the task's
    rand_vec really sets the goal and info["success"] reports it."""
    from metaworld.policies import SawyerReachV3Policy

    family = metarl.make_family("ML1-reach-v0", split_sizes=SMALL)
    task = family.test[0]
    env = family.make_env(task)
    goal = task.array("rand_vec")[3:6]
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[36:39], 0.0)  # the goal is hidden (partially observable)
    policy = SawyerReachV3Policy()
    successes = []
    for _ in range(150):
        obs, reward, terminated, _, info = env.step(policy.get_action(np.concatenate([obs[:36], goal])))
        assert "success" in info and isinstance(reward, float) and not terminated
        successes.append(bool(info["success"]))
    assert any(successes)
    assert family.has_success


def test_tasks_switch_env_class() -> None:
    family = ML10Family(split_sizes=SMALL)
    env = family.make_env(family.train[1])
    base = env.unwrapped
    assert isinstance(base, MetaWorldEnv)
    assert base.env_name == data.ML10_TRAIN[1]
    base.set_task(family.test[0])
    env.reset(seed=0)
    assert base.env_name == data.ML10_TEST[0]
    *_, info = env.step(env.action_space.sample())
    assert "success" in info


@pytest.mark.parametrize("family_id", ["ML1-reach-v0", "ML10-v0"])
def test_env_checkers_pass(family_id: str) -> None:
    family = metarl.make_family(family_id, split_sizes=SMALL)
    task = family.sample(1, np.random.default_rng(0))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = family.make_env(task)
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)
    env.close()


def test_horizon_is_500() -> None:
    family = metarl.make_family("ML1-reach-v0", split_sizes=SMALL)
    assert family.max_episode_steps == 500
    short = metarl.make_family("ML1-reach-v0", split_sizes=SMALL, max_episode_steps=3)
    env = short.make_env(short.train[0])
    env.reset(seed=0)
    assert [env.step(env.action_space.sample())[3] for _ in range(3)] == [False, False, True]


def test_bad_parameters_are_rejected_with_their_name() -> None:
    family = ML1Family("reach", split_sizes=SMALL)
    vec = family.test[0].array("rand_vec")
    with pytest.raises(ValueError, match="env_index"):
        family.task(env_index=1, rand_vec=vec)
    far = vec.copy()
    far[0] = 0.5
    with pytest.raises(ValueError, match=r"'rand_vec'\[0\] = 0.5 is out of range for reach-v3"):
        family.task(env_index=0, rand_vec=far)
    close = np.array([0.0, 0.7, 0.02, 0.0, 0.8, 0.015])  # inside push's boxes, 0.1 apart
    with pytest.raises(ValueError, match=r"rand_vec.*within 0.15"):
        ML1Family("push").task(env_index=0, rand_vec=close)
    padded = ML1Family("button-press", split_sizes=SMALL).test[0].array("rand_vec")
    padded[5] = 0.1
    with pytest.raises(ValueError, match=r"rand_vec.*must be 0"):
        ML1Family("button-press").task(env_index=0, rand_vec=padded)
    with pytest.raises(ValueError, match="no-such-task"):
        ML1Family("no-such-task")


def test_missing_metaworld_raises_a_helpful_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "metaworld" or m.startswith("metaworld.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ImportError, match=r"pip install 'metarl\[metaworld\]'"):
        metarl.make_family("ML1-reach-v0")


def test_all_ml1_names_are_registered() -> None:
    registered = {f for f in metarl.list_families() if f.startswith("ML1-")}
    assert registered == {f"ML1-{n.removesuffix('-v3')}-v0" for n in data.ALL_ENV_NAMES}
    assert metarl.family_spec("ML1-pick-place-v0").defaults == {"task_name": "pick-place"}


class _ReachOracle:
    """Meta-World's scripted reach policy told each sub-env's goal: succeeds on every task."""

    name = "reach-oracle"
    adaptation_unit: AdaptationUnit = "gradient step"

    def begin_adaptation(self, vec_env, seed):  # type: ignore[no-untyped-def]
        from metaworld.policies import SawyerReachV3Policy

        goals = np.stack([t.array("rand_vec")[3:6] for t in vec_env.subenv_tasks])
        scripted = SawyerReachV3Policy()

        class Adaptation:
            def policy(self):  # type: ignore[no-untyped-def]
                return lambda obs: np.stack(
                    [
                        scripted.get_action(np.concatenate([o[:36], g]))
                        for o, g in zip(obs, goals, strict=True)
                    ]
                ).astype(np.float32)

            def update(self, episodes):  # type: ignore[no-untyped-def]
                pass

        return Adaptation()


def test_meta_test_runner_reports_success_rate_beside_return(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from metarl.agents.scripted import RandomLearner
    from metarl.evaluation import EvalResult

    family = metarl.make_family("ML1-reach-v0", split_sizes=SMALL)
    kw: dict[str, Any] = {"n_tasks": 2, "rounds": 1, "episodes_per_round": 1, "seed": 0}
    oracle = metarl.evaluate(_ReachOracle(), family, **kw)
    random_ = metarl.evaluate(RandomLearner(), family, **kw)
    assert oracle.success is not None and oracle.success.shape == (2, 1)
    assert oracle.success.tolist() == [[1.0], [1.0]]  # success at any step of the episode
    assert random_.success is not None and random_.success.mean() < 1.0
    assert "success rate" in oracle.to_markdown()
    assert oracle.summary("success")[0]["mean"] == 1.0
    oracle.to_json(tmp_path / "r.json")
    loaded = EvalResult.from_json(tmp_path / "r.json")
    assert loaded.success is not None and loaded.success.tolist() == [[1.0], [1.0]]
