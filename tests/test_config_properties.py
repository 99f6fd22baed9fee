"""Property-based tests of the agent configs (MAML-TRPO, RL²) as read from config files.

Whatever a JSON or TOML file holds (negative sizes, unknown keys, strings or floats for ints, NaN,
lists, tables, ``null``), reading it either gives a config that round-trips through its JSON, or
raises a ``ValueError`` / ``TypeError`` whose message names the offending key: never another
exception from deep inside.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from metarl.agents.maml_train import load_config_file
from metarl.agents.maml_trpo import MAMLTRPOConfig
from metarl.agents.rl2 import RL2Config
from metarl.agents.rl2_train import load_config as load_rl2_config

MAML_FIELDS = [f.name for f in dataclasses.fields(MAMLTRPOConfig)]
RL2_FIELDS = [f.name for f in dataclasses.fields(RL2Config)]

#: Values a hand-written config file may hold: JSON's types, with awkward numbers.
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from([0.0, -1.5, 0.5, 1.0, 3.0, 1e9, float("nan"), float("inf"), -float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "3", "0.1", "tanh", "loop", "sample", "Navigation2D-v0", "true"]),
    st.lists(st.one_of(st.integers(-2, 70), st.floats(0, 5), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-2, 5), max_size=2),
)


def configs(field_names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings of 1-3 config keys (sometimes a misspelt one) to arbitrary values."""
    keys = st.sampled_from([*field_names, "bogus_key", "meta_iteration", "hiden_size", "rl2"])
    return st.dictionaries(keys, values, min_size=1, max_size=3)


def check_reads_or_names_a_key(
    data: Mapping[str, Any], read: Callable[[Mapping[str, Any]], Any], to_json: Callable[[Any], str]
) -> None:
    try:
        config = read(data)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        # Keys of nested tables count too (an [rl2] table is the config); an empty key must appear
        # quoted, since every message "contains" the empty string.
        names = [*data, *(k for v in data.values() if isinstance(v, Mapping) for k in v)]
        assert any((key and key in message) or repr(key) in message for key in names), (
            f"{message!r} names none of {sorted(names)}"
        )
        return
    assert read(json.loads(to_json(config))) == config


def via_json_file(data: Mapping[str, Any], load: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``data`` written to a JSON config file and read back as the CLI does (NaN as ``NaN``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.json"
        path.write_text(json.dumps(data))
        return load(path)


@settings(max_examples=150, deadline=None)
@given(configs(MAML_FIELDS))
def test_maml_trpo_config_files(data: dict[str, Any]) -> None:
    read = lambda d: MAMLTRPOConfig.from_dict(via_json_file(d, load_config_file))  # noqa: E731
    check_reads_or_names_a_key(data, read, MAMLTRPOConfig.to_json)


@settings(max_examples=150, deadline=None)
@given(configs(RL2_FIELDS))
@example(data={"bogus_key": None, "rl2": {"": 0}})  # found by CI: an empty key in a nested table
def test_rl2_config_files(data: dict[str, Any]) -> None:
    read = lambda d: RL2Config.from_dict(via_json_file(d, load_rl2_config))  # noqa: E731
    check_reads_or_names_a_key(data, read, RL2Config.to_json)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"meta_batch_size": -2}, "meta_batch_size"),
        ({"meta_batch_size": "4"}, "meta_batch_size"),
        ({"meta_batch_size": 4.0}, "meta_batch_size"),
        ({"hidden_sizes": 64}, "hidden_sizes"),
        ({"hidden_sizes": [64, "64"]}, "hidden_sizes"),
        ({"inner_lr": "0.1"}, "inner_lr"),
        ({"cg_damping": float("nan")}, "cg_damping"),
        ({"baseline_reg": float("inf")}, "baseline_reg"),
        ({"meta_sgd": "false"}, "meta_sgd"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"family": 3}, "family"),
        ({"meta_iteration": 3}, "meta_iteration"),
    ],
)
def test_maml_trpo_config_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MAMLTRPOConfig.from_dict(changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_size": -1}, "hidden_size"),
        ({"hidden_size": "16"}, "hidden_size"),
        ({"hidden_size": 16.0}, "hidden_size"),
        ({"gamma": "0.9"}, "gamma"),
        ({"vf_coef": float("nan")}, "vf_coef"),
        ({"ent_coef_final": "0"}, "ent_coef_final"),
        ({"init_log_std": float("-inf")}, "init_log_std"),
        ({"family_kwargs": [1, 2]}, "family_kwargs"),
        ({"seed": True}, "seed"),
        ({"hiden_size": 3}, "hiden_size"),
    ],
)
def test_rl2_config_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RL2Config.from_dict(changes)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40), st.sampled_from([".json", ".toml"]))
def test_unparsable_config_files_name_the_file(text: str, suffix: str) -> None:
    for load in (load_config_file, load_rl2_config):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"cfg{suffix}"
            path.write_text(text, encoding="utf-8")
            try:
                load(path)
            except ValueError as exc:
                assert str(path) in str(exc)
