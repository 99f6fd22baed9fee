"""Registry: register/make/list, Gymnasium ids, unknown-id hints, external modules and plugins."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl import registry

# A complete family written by a user outside this repository, in about 15 lines.
EXTERNAL_FAMILY = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np
    import metarl

    class CorridorFamily(metarl.TaskFamily):
        name, varies, default_max_episode_steps = "Corridor", "goal", 20
        parameters = [metarl.Param("goal", metarl.Uniform(-1, 1), low=-1, high=1)]

        def _make_base_env(self):
            return CorridorEnv(self)

    class CorridorEnv(metarl.TaskEnv, gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        action_space = gym.spaces.Box(-0.1, 0.1, (1,), np.float64)

        def __init__(self, family):
            self.task_family = family

        def _apply_task(self, task):
            self.goal = task["goal"]

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x = np.zeros(1)
            return self.x.copy(), {}

        def step(self, action):
            self.x = self.x + np.clip(action, -0.1, 0.1)
            return self.x.copy(), -abs(self.x[0] - self.goal), False, False, {}
    """
)


@pytest.fixture
def external_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "corridor_ext.py").write_text(EXTERNAL_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "corridor_ext"
    sys.modules.pop("corridor_ext", None)
    registry._REGISTRY.pop("Corridor-v0", None)
    gym.registry.pop("metarl/Corridor-v0", None)


def test_builtin_families_are_listed_and_made() -> None:
    assert "Navigation2D-v0" in metarl.list_families()
    fam = metarl.make_family("Navigation2D-v0", split_sizes={"test": 3})
    assert fam.id == "Navigation2D-v0" and len(fam.test) == 3


def test_unknown_id_lists_the_closest_ids() -> None:
    with pytest.raises(KeyError, match="did you mean 'Navigation2D-v0'"):
        metarl.make_family("Navigaton2D-v0")


def test_registration_is_data() -> None:
    with pytest.raises(ValueError, match=r"package\.module:ClassName"):
        metarl.register_family("Thing-v0", entry_point=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must look like 'Name-v<version>'"):
        metarl.register_family("Thing", entry_point="a.b:C")
    with pytest.raises(ValueError, match="already registered"):
        metarl.register_family("Navigation2D-v0", entry_point="some.other:Family")


def test_gymnasium_make_with_a_task() -> None:
    fam = metarl.make_family("Navigation2D-v0")
    env = gym.make("metarl/Navigation2D-v0", task=fam.test[0])
    _, info = env.reset(seed=0)
    assert info["task_id"] == fam.test[0].task_id
    env = gym.make("metarl/Navigation2D-v0", task={"goal": [0.1, 0.2]})
    env.reset(seed=0)
    *_, info = env.step(np.zeros(2, dtype=np.float32))
    assert info["distance"] == pytest.approx(np.hypot(0.1, 0.2))


def test_a_family_registered_from_an_external_module(external_module: str) -> None:
    metarl.register_family("Corridor-v0", entry_point=f"{external_module}:CorridorFamily")
    fam = metarl.make_family("Corridor-v0", split_sizes={"train": 4, "validation": 2, "test": 3})
    assert len(fam.test) == 3
    vec = metarl.make_vec(fam, fam.test, envs_per_task=2)
    batch = metarl.collect(vec, lambda obs: np.full((6, 1), 0.1), episodes_per_task=2, seed=0)
    assert batch.observations.shape == (6, 20, 1) and (batch.lengths == 20).all()
    env = gym.make("metarl/Corridor-v0", task={"goal": 0.5})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"'goal' = 2 is out of range; allowed range is \[-1, 1\]"):
        fam.task(goal=2.0)


def test_entry_point_plugins_are_loaded_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, external_module: str
) -> None:
    plugin = tmp_path / "corridor_plugin.py"
    plugin.write_text(
        "import metarl\nmetarl.register_family('Corridor-v0', entry_point='corridor_ext:CorridorFamily')\n"
    )
    dist = tmp_path / "corridor_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corridor-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[metarl.families]\ncorridor = corridor_plugin\n")
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert "Corridor-v0" not in registry._REGISTRY
    assert metarl.make_family("Corridor-v0").id == "Corridor-v0"
    sys.modules.pop("corridor_plugin", None)
