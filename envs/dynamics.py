"""Dynamics randomisation for any Gymnasium MuJoCo env (``rand_param_envs``-style families).

A :class:`DynamicsSpec` says, as JSON-ready data, which ``MjModel`` fields vary, how, and for which
bodies, joints or geoms. A task carries one multiplier array per field with the field's full shape
(``body_mass`` has shape ``(nbody,)``, ``geom_friction`` ``(ngeom, 3)``); rows that do not vary
hold exactly 1. Setting a task writes ``pristine * multiplier`` onto the env's ``MjModel``, where
``pristine`` is a copy of the field saved when the env was built, so tasks never compound, and then
calls ``mujoco.mj_setConst`` so the quantities MuJoCo derives from masses and inertias at compile
time (``body_subtreemass``, ``dof_invweight0`` ...) match the new model. (``rand_param_envs`` wrote
the fields without recomputing them.)

The default spec is ``rand_param_envs``'s (used by PEARL and ProMP): ``body_mass``,
``body_inertia`` and ``geom_friction`` multiplied per element by ``1.5 ** U(-3, 3)``,
``dof_damping`` by ``1.3 ** U(-3, 3)``; every body except the world body, every dof and every geom
(the floor included, as in ``rand_param_envs``).

The families ``HopperRandParams-v0``, ``Walker2dRandParams-v0`` and ``HalfCheetahRandParams-v0``
use it with Gymnasium's v5 envs (their observations, rewards and healthy-termination rules,
unchanged), horizon 200. :func:`register_randomized` registers the same for any Gymnasium MuJoCo
id: ``register_randomized("Swimmer-v5")`` adds ``SwimmerRandParams-v0``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.registration import parse_env_id

from metarl.family import TaskEnv, TaskFamily
from metarl.registry import register_family
from metarl.task import Param, Task

if TYPE_CHECKING:
    from metarl.vector import BatchedTaskVectorEnv

__all__ = [
    "RAND_PARAM_ENVS_SPEC",
    "DynamicsRandomizer",
    "DynamicsSpec",
    "FieldRange",
    "MultiplierDistribution",
    "RandParamsFamily",
    "make_randomized_env_class",
    "register_randomized",
]

#: Which MuJoCo object a field's rows belong to, by the field's name prefix.
_OBJECT_OF_PREFIX: dict[str, mujoco.mjtObj] = {
    "body_": mujoco.mjtObj.mjOBJ_BODY,
    "dof_": mujoco.mjtObj.mjOBJ_JOINT,  # dof rows are selected by the joints that own them
    "jnt_": mujoco.mjtObj.mjOBJ_JOINT,
    "geom_": mujoco.mjtObj.mjOBJ_GEOM,
    "actuator_": mujoco.mjtObj.mjOBJ_ACTUATOR,
    "site_": mujoco.mjtObj.mjOBJ_SITE,
    "tendon_": mujoco.mjtObj.mjOBJ_TENDON,
}
_MODES = ("log_uniform", "uniform")


@dataclass(frozen=True)
class FieldRange:
    """How one ``MjModel`` field is randomised.

    Attributes:
        field: an ``MjModel`` array attribute whose name starts with ``body_``, ``dof_``, ``jnt_``,
            ``geom_``, ``actuator_``, ``site_`` or ``tendon_`` (e.g. ``"dof_armature"``).
        mode: ``"log_uniform"``: multiplier ``base ** U(low, high)`` per element (rand_param_envs);
            ``"uniform"``: multiplier ``U(low, high)`` per element.
        low, high: the exponent range (log-uniform) or the multiplier range (uniform).
        base: the base of the log-uniform multipliers; ignored for ``"uniform"``.
        elements: names of the bodies, joints (for ``dof_`` and ``jnt_`` fields), geoms, actuators,
            sites or tendons whose rows vary; ``None`` for all (the world body is always skipped).
    """

    field: str
    mode: str = "log_uniform"
    low: float = -3.0
    high: float = 3.0
    base: float = 1.5
    elements: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not any(self.field.startswith(p) for p in _OBJECT_OF_PREFIX):
            raise ValueError(
                f"field {self.field!r} is not supported; randomisable fields start with "
                f"{sorted(_OBJECT_OF_PREFIX)}"
            )
        if self.mode not in _MODES:
            raise ValueError(f"field {self.field!r}: mode {self.mode!r} must be one of {list(_MODES)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"field {self.field!r}: need finite low <= high, got [{self.low}, {self.high}]")
        if self.mode == "log_uniform" and not (self.base > 0 and math.isfinite(self.base)):
            raise ValueError(f"field {self.field!r}: base must be positive and finite, got {self.base!r}")
        if self.mode == "uniform" and self.low < 0:
            raise ValueError(f"field {self.field!r}: uniform multipliers must be >= 0, got low={self.low}")
        if self.elements is not None:
            object.__setattr__(self, "elements", tuple(str(e) for e in self.elements))

    @property
    def multiplier_bounds(self) -> tuple[float, float]:
        """The smallest and largest multiplier this range produces."""
        if self.mode == "uniform":
            return self.low, self.high
        ends = sorted((self.base**self.low, self.base**self.high))
        return ends[0], ends[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "low": self.low,
            "high": self.high,
            "base": self.base,
            "elements": None if self.elements is None else list(self.elements),
        }


class DynamicsSpec:
    """An ordered set of :class:`FieldRange`, built from and written to JSON-ready dicts.

    ``DynamicsSpec.from_dict({"body_mass": {"base": 1.5, "low": -3, "high": 3}})``; missing keys
    take :class:`FieldRange`'s defaults.
    """

    def __init__(self, fields: Sequence[FieldRange]) -> None:
        names = [f.field for f in fields]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a dynamics spec needs at least one field and no duplicates, got {names}")
        self.fields = tuple(fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> DynamicsSpec:
        if not isinstance(data, Mapping):
            raise ValueError(f"a dynamics spec is a mapping of field name to settings, got {data!r}")
        fields = []
        for name, settings in data.items():
            if not isinstance(settings, Mapping):
                raise ValueError(f"field {name!r}: settings must be a mapping, got {settings!r}")
            unknown = set(settings) - {"mode", "low", "high", "base", "elements"}
            if unknown:
                raise ValueError(f"field {name!r}: unknown setting(s) {sorted(unknown)}")
            fields.append(FieldRange(field=str(name), **dict(settings)))
        return cls(fields)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.field: f.to_dict() for f in self.fields}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DynamicsSpec) and self.fields == other.fields

    def __hash__(self) -> int:
        return hash(self.fields)

    def __repr__(self) -> str:
        return f"DynamicsSpec({self.to_dict()!r})"


#: The multipliers of rand_param_envs (PEARL, ProMP).
RAND_PARAM_ENVS_SPEC: dict[str, dict[str, Any]] = {
    "body_mass": {"mode": "log_uniform", "base": 1.5, "low": -3.0, "high": 3.0},
    "body_inertia": {"mode": "log_uniform", "base": 1.5, "low": -3.0, "high": 3.0},
    "dof_damping": {"mode": "log_uniform", "base": 1.3, "low": -3.0, "high": 3.0},
    "geom_friction": {"mode": "log_uniform", "base": 1.5, "low": -3.0, "high": 3.0},
}


@dataclass(frozen=True)
class MultiplierDistribution:
    """Per-element multipliers of one field; rows outside ``rows`` are exactly 1."""

    range: FieldRange
    rows: tuple[int, ...]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        r = self.range
        draws = rng.uniform(r.low, r.high, size=shape)
        values = np.power(r.base, draws) if r.mode == "log_uniform" else draws
        out = np.ones(shape)
        out[list(self.rows)] = values[list(self.rows)]
        return out

    def describe(self) -> str:
        r = self.range
        dist = (
            f"{r.base:g}^U({r.low:g}, {r.high:g})" if r.mode == "log_uniform" else f"U[{r.low:g}, {r.high:g}]"
        )
        return f"{dist} on {len(self.rows)} rows"


def _selected_rows(model: mujoco.MjModel, fr: FieldRange) -> tuple[int, ...]:
    """The rows of ``fr.field`` that vary, from ``fr.elements`` (names) or all but the world body."""
    if not hasattr(model, fr.field):
        raise ValueError(f"MjModel has no field {fr.field!r}")
    value = getattr(model, fr.field)
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.ndim == 0:
        raise ValueError(f"MjModel.{fr.field} is not a floating-point array")
    prefix = next(p for p in _OBJECT_OF_PREFIX if fr.field.startswith(p))
    obj = _OBJECT_OF_PREFIX[prefix]
    if fr.elements is None:
        rows = list(range(value.shape[0]))
        return tuple(rows[1:] if prefix == "body_" else rows)
    rows = []
    for name in fr.elements:
        idx = mujoco.mj_name2id(model, obj, name)
        if idx < 0:
            kind = obj.name.removeprefix("mjOBJ_").lower()
            raise ValueError(f"field {fr.field!r}: the model has no {kind} named {name!r}")
        if prefix == "dof_":
            start = int(model.jnt_dofadr[idx])
            ndof = {0: 6, 1: 3}.get(int(model.jnt_type[idx]), 1)  # free, ball, slide/hinge
            rows.extend(range(start, start + ndof))
        else:
            rows.append(idx)
    return tuple(sorted(set(rows)))


class DynamicsRandomizer:
    """Applies multipliers to an ``MjModel`` relative to the values it had when this was built.

    Args:
        model: the model to randomise (modified in place by :meth:`apply`).
        spec: which fields vary and how.
    """

    def __init__(self, model: mujoco.MjModel, spec: DynamicsSpec) -> None:
        self.model = model
        self.spec = spec
        self.rows = {fr.field: _selected_rows(model, fr) for fr in spec.fields}
        self.pristine = {fr.field: np.array(getattr(model, fr.field), copy=True) for fr in spec.fields}
        self._scratch = mujoco.MjData(model)

    def parameters(self) -> tuple[Param, ...]:
        """One :class:`Param` per field: the multiplier array, with the field's shape."""
        params = []
        for fr in self.spec.fields:
            low, high = fr.multiplier_bounds
            params.append(
                Param(
                    fr.field,
                    MultiplierDistribution(fr, self.rows[fr.field]),
                    shape=self.pristine[fr.field].shape,
                    low=min(low, 1.0),
                    high=max(high, 1.0),
                    doc=f"multiplier of MjModel.{fr.field}",
                )
            )
        return tuple(params)

    def apply(self, multipliers: Mapping[str, np.ndarray]) -> None:
        """Set every field to ``pristine * multiplier`` and recompute MuJoCo's derived constants."""
        for fr in self.spec.fields:
            getattr(self.model, fr.field)[...] = self.pristine[fr.field] * multipliers[fr.field]
        mujoco.mj_setConst(self.model, self._scratch)

    def reset(self) -> None:
        """Restore the pristine model."""
        self.apply({f: np.ones_like(v) for f, v in self.pristine.items()})


class _RandomizedDynamics(TaskEnv):
    """Mixin of the generated env classes: a Gymnasium MuJoCo env whose task sets its dynamics.

    ``step`` is the Gymnasium env's own (looked up once per class, not through ``super()``) plus one
    ``math.isfinite`` on its reward: an action whose control cost overflows (1e308) raises a
    ``ValueError`` naming it instead of returning an infinite reward, as the other MuJoCo families do.
    """

    _randomizer: DynamicsRandomizer
    _gymnasium_step: Any
    #: Set by the Gymnasium env (the generated class's other base); declared for the type checker.
    action_space: gym.spaces.Space[Any]

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._gymnasium_step(action)
        if not math.isfinite(reward):
            from metarl.envs.mujoco import huge_action_error

            raise huge_action_error(action, reward, self.action_space)
        return obs, reward, terminated, truncated, info

    def _apply_task(self, task: Task) -> None:
        self._randomizer.apply({f: task.array(f) for f in self._randomizer.pristine})

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Generated classes are not importable by name: pickle (and copy) rebuild the env through
        # the family and set the task, as Gymnasium's EzPickle rebuilds from constructor arguments.
        return (_rebuild_env, (self.task_family, self.task))


def _rebuild_env(family: RandParamsFamily, task: Task | None) -> TaskEnv:
    env = family._make_base_env()
    assert isinstance(env, TaskEnv)  # every make_randomized_env_class env is one
    if task is not None:
        env.set_task(task)
    return env


@functools.cache
def make_randomized_env_class(env_class: type[MujocoEnv]) -> type:
    """The class ``<EnvClass>RandParams(TaskEnv, env_class)`` (created once per ``env_class``)."""
    if not (isinstance(env_class, type) and issubclass(env_class, MujocoEnv)):
        raise TypeError(f"expected a Gymnasium MujocoEnv subclass, got {env_class!r}")
    return type(
        f"{env_class.__name__.removesuffix('Env')}RandParamsEnv",
        (_RandomizedDynamics, env_class),
        {
            "__module__": __name__,
            "__doc__": f"{env_class.__name__} with task-set dynamics.",
            "_gymnasium_step": env_class.step,
        },
    )


def _load_env_class(env_id: str) -> tuple[type[MujocoEnv], dict[str, Any]]:
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"{env_id!r} is not a registered Gymnasium env id: {exc}") from exc
    entry = spec.entry_point
    cls = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    if not (isinstance(cls, type) and issubclass(cls, MujocoEnv)):
        raise ValueError(f"{env_id!r} is not a Gymnasium MuJoCo env (its entry point is {entry!r})")
    return cls, dict(spec.kwargs)


class RandParamsFamily(TaskFamily):
    """Tasks are ``MjModel`` multipliers of a Gymnasium MuJoCo env (``rand_param_envs``).

    Args:
        env_id: a Gymnasium MuJoCo id, e.g. ``"Hopper-v5"``; the env keeps its observation,
            reward and termination.
        dynamics: a JSON-ready :class:`DynamicsSpec` dict; ``None`` for :data:`RAND_PARAM_ENVS_SPEC`.
        name: the family name; default ``"<Env>RandParams"`` (``"HopperRandParams"``).
        env_kwargs: keywords for the Gymnasium env (on top of its registered ones).
        split_sizes, split_seed, max_episode_steps: see :class:`~metarl.family.TaskFamily`.
    """

    name = "RandParams"
    version = 0
    varies = "dynamics"
    default_max_episode_steps = 200

    def __init__(
        self,
        env_id: str,
        *,
        dynamics: Mapping[str, Mapping[str, Any]] | None = None,
        name: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
    ) -> None:
        super().__init__(split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps)
        env_class, registered_kwargs = _load_env_class(env_id)
        self.env_id = env_id
        self.name = name or f"{parse_env_id(env_id)[1]}RandParams"  # type: ignore[misc]
        self.spec = DynamicsSpec.from_dict(RAND_PARAM_ENVS_SPEC if dynamics is None else dynamics)
        self.env_kwargs = {**registered_kwargs, **dict(env_kwargs or {})}
        self._base_env_class = env_class  # importable, so the family pickles
        # cast: mypy does not accept a class object (type[X]) as the Hashable that functools.cache's
        # wrapper asks of its arguments; classes are hashable.
        probe = make_randomized_env_class(cast(type, env_class))(
            **self.env_kwargs
        )  # reads shapes and rows; closed right away
        randomizer = DynamicsRandomizer(probe.model, self.spec)
        self.parameters = randomizer.parameters()
        self.description = f"{env_id} with per-element MjModel multipliers: " + "; ".join(
            f"{p.name} ~ {p.distribution.describe()}" for p in self.parameters
        )
        probe.close()

    def _validate_params(self, task: Task) -> None:
        for p in self.parameters:
            dist = p.distribution
            assert isinstance(dist, MultiplierDistribution)
            values = task.array(p.name)
            fixed = np.ones(values.shape[0], dtype=bool)
            fixed[list(dist.rows)] = False
            bad = np.flatnonzero(fixed & np.any(values.reshape(len(values), -1) != 1.0, axis=1))
            if bad.size:
                raise ValueError(
                    f"parameter {p.name!r}: row {int(bad[0])} does not vary in {self.id}; its "
                    f"multiplier must be 1, got {values[bad[0]]}"
                )

    def _make_base_env(self) -> MujocoEnv:
        """A ``make_randomized_env_class`` env: a :class:`TaskEnv` and a Gymnasium ``MujocoEnv``."""
        # cast: see __init__
        env = make_randomized_env_class(cast(type, self._base_env_class))(**self.env_kwargs)
        env.task_family = self
        env._randomizer = DynamicsRandomizer(env.model, self.spec)
        return env

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> BatchedTaskVectorEnv | None:
        """All sub-envs stepped together, one ``MjModel`` per task (:mod:`metarl.envs.mujoco_batched`),
        bit-identical to :meth:`make_env`; ``None`` for robots that module does not mirror."""
        from metarl.envs.mujoco_batched import make_mujoco_vector_env

        return make_mujoco_vector_env(self, tasks, envs_per_task)


def register_randomized(
    env_id: str,
    *,
    family_id: str | None = None,
    dynamics: Mapping[str, Mapping[str, Any]] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    override: bool = False,
) -> str:
    """Register a dynamics-randomised family of any Gymnasium MuJoCo env; return its id.

    ``register_randomized("Swimmer-v5")`` registers ``"SwimmerRandParams-v0"``. The registration is
    data: the entry point ``"metarl.envs.dynamics:RandParamsFamily"`` and JSON-ready keywords.

    Args:
        env_id: a Gymnasium MuJoCo id.
        family_id: the metarl id; default ``"<Env>RandParams-v0"``.
        dynamics: a JSON-ready :class:`DynamicsSpec` dict; default :data:`RAND_PARAM_ENVS_SPEC`.
        env_kwargs: keywords for the Gymnasium env.
        override: replace an existing registration.
    """
    _load_env_class(env_id)  # fail now on ids that are not MuJoCo envs
    if dynamics is not None:
        dynamics = DynamicsSpec.from_dict(dynamics).to_dict()
    family_id = family_id or f"{parse_env_id(env_id)[1]}RandParams-v{RandParamsFamily.version}"
    name = family_id.rsplit("-v", 1)[0]
    kwargs: dict[str, Any] = {"env_id": env_id, "name": name}
    if dynamics is not None:
        kwargs["dynamics"] = dynamics
    if env_kwargs:
        kwargs["env_kwargs"] = dict(env_kwargs)
    register_family(family_id, "metarl.envs.dynamics:RandParamsFamily", override=override, **kwargs)
    return family_id
