"""Native batched vector envs for metarl's MuJoCo families, bit-identical to the single envs.

:class:`MujocoVectorEnv` runs every sub-env of a MuJoCo family in one
:class:`~metarl.envs.mujoco_physics.BatchedPhysics` (every sub-env's integration state in one
array, stepped by a persistent thread pool) and computes observations, every reward term, healthy
terminations and Gymnasium v5's reset noise in vectorised numpy, in the same floating-point order
as the single env, so for the same tasks, seeds and actions it returns exactly the single env's
observations, rewards, terminations and truncations (the contract tests compare them for equality).

Supported robots: Gymnasium v5's HalfCheetah, Hopper, Walker2d, Ant and Humanoid, for the
reward/goal families of :mod:`metarl.envs.mujoco` (HalfCheetahVel/Dir, AntVel/Dir/Dir2D/Goal,
HumanoidDir) and the dynamics families of :mod:`metarl.envs.dynamics` on those robots (one
``MjModel`` per task there; the reward families share one model). :func:`make_mujoco_vector_env`
returns ``None`` for anything else (another Gymnasium env, a subclass it does not know), which
keeps that family on Gymnasium's ``SyncVectorEnv``.

``infos`` after ``step`` holds one array per key: ``x_position``, ``x_velocity`` (and
``y_position``, ``y_velocity`` for Ant and Humanoid), every reward term (``reward_forward`` or
``reward_goal``, ``reward_ctrl``, ``reward_survive``, ``reward_contact`` as the robot has them, so
``rewards == sum of the terms``), and the task quantity (``target_velocity``, ``direction`` or
``goal``) for the reward families.

Threads: ``METARL_MUJOCO_THREADS`` (default: the cores this process may use); see
``benchmarks/mujoco_speed/README.md`` for the measurements behind the default.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarl.envs import mujoco as fam
from metarl.envs.dynamics import DynamicsRandomizer, RandParamsFamily
from metarl.envs.mujoco_physics import BatchedPhysics, FieldSpec
from metarl.family import TaskFamily
from metarl.task import Task
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["ROBOTS", "MujocoVectorEnv", "make_mujoco_vector_env"]

#: The Gymnasium v5 env classes this module mirrors, by robot name.
ROBOTS: dict[str, type] = {
    "half_cheetah": HalfCheetahEnv,
    "hopper": HopperEnv,
    "walker2d": Walker2dEnv,
    "ant": AntEnv,
    "humanoid": HumanoidEnv,
}

# Gymnasium's private settings each robot reads (attribute name without the leading underscore).
_SETTINGS: dict[str, tuple[str, ...]] = {
    "half_cheetah": (),
    "hopper": (
        "healthy_reward",
        "terminate_when_unhealthy",
        "healthy_state_range",
        "healthy_z_range",
        "healthy_angle_range",
    ),
    "walker2d": ("healthy_reward", "terminate_when_unhealthy", "healthy_z_range", "healthy_angle_range"),
    "ant": (
        "healthy_reward",
        "terminate_when_unhealthy",
        "healthy_z_range",
        "contact_cost_weight",
        "contact_force_range",
        "main_body",
        "include_cfrc_ext_in_observation",
    ),
    "humanoid": (
        "healthy_reward",
        "terminate_when_unhealthy",
        "healthy_z_range",
        "contact_cost_weight",
        "contact_cost_range",
        "include_cinert_in_observation",
        "include_cvel_in_observation",
        "include_qfrc_actuator_in_observation",
        "include_cfrc_ext_in_observation",
    ),
}
_COMMON = (
    "forward_reward_weight",
    "ctrl_cost_weight",
    "reset_noise_scale",
    "exclude_current_positions_from_observation",
)

# ------------------------------------------------------------------------------- task terms
# Each reward family's task term, written in the single env's operation order (see envs/mujoco.py).
# Arguments: (forward_reward_weight, per-sub-env task arrays, step quantities).
_TaskTerm = Callable[[float, dict[str, np.ndarray], dict[str, np.ndarray]], np.ndarray]


def _velocity_arrays(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    return {"target_velocity": np.array([float(t["velocity"]) for t in tasks])}  # type: ignore[arg-type]


def _direction_arrays(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    return {"direction": np.array([float(t["direction"]) for t in tasks])}  # type: ignore[arg-type]


def _angle_arrays(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    angles = [float(t["angle"]) for t in tasks]  # type: ignore[arg-type]
    # math.cos/sin as in the single env (numpy's may differ in the last bit).
    return {"direction": np.array([(math.cos(a), math.sin(a)) for a in angles])}


def _goal_arrays(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    return {"goal": np.stack([t.array("goal").astype(np.float64) for t in tasks])}


def _velocity_term(w: float, task: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> np.ndarray:
    return -w * np.abs(q["x_velocity"] - task["target_velocity"])


def _direction_term(w: float, task: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> np.ndarray:
    return w * task["direction"] * q["x_velocity"]


def _direction2d_term(w: float, task: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> np.ndarray:
    d = task["direction"]
    return w * (d[:, 0] * q["x_velocity"] + d[:, 1] * q["y_velocity"])


def _goal_term(w: float, task: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> np.ndarray:
    g = task["goal"]
    return -(np.abs(q["x_position"] - g[:, 0]) + np.abs(q["y_position"] - g[:, 1]))


#: Reward-family env class -> (task arrays from tasks, task term).
_TASK_TERMS: dict[type, tuple[Callable[[Sequence[Task]], dict[str, np.ndarray]], _TaskTerm]] = {
    fam.HalfCheetahVelEnv: (_velocity_arrays, _velocity_term),
    fam.HalfCheetahDirEnv: (_direction_arrays, _direction_term),
    fam.AntVelEnv: (_velocity_arrays, _velocity_term),
    fam.AntDirEnv: (_direction_arrays, _direction_term),
    fam.AntDir2DEnv: (_angle_arrays, _direction2d_term),
    fam.AntGoalEnv: (_goal_arrays, _goal_term),
    fam.HumanoidDirEnv: (_angle_arrays, _direction2d_term),
}


def _robot_of(family: TaskFamily) -> str | None:
    """The robot a family's env mirrors exactly, or ``None`` if this module does not batch it."""
    if isinstance(family, fam.MujocoTaskFamily):
        if family.env_class not in _TASK_TERMS:
            return None
        base = next(c for c in family.env_class.__mro__ if c in ROBOTS.values())
    elif isinstance(family, RandParamsFamily):
        base = family._base_env_class
    else:
        return None
    return next((name for name, cls in ROBOTS.items() if cls is base), None)


def make_mujoco_vector_env(
    family: TaskFamily, tasks: Sequence[Task], envs_per_task: int = 1, *, num_threads: int | None = None
) -> MujocoVectorEnv | None:
    """A :class:`MujocoVectorEnv` for ``family``, or ``None`` if its env is not one this module mirrors."""
    if _robot_of(family) is None:
        return None
    return MujocoVectorEnv(family, tasks, envs_per_task, num_threads=num_threads)


@dataclass
class _Robot:
    """A robot's fixed settings, read from a probe env so family keywords are honoured."""

    name: str
    frame_skip: int
    init_qpos: np.ndarray
    init_qvel: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["settings"][key]
        except KeyError:
            raise AttributeError(key) from None


class MujocoVectorEnv(BatchedTaskVectorEnv):
    """All sub-envs of a MuJoCo family, stepped together; matches the single env bit for bit.

    Args:
        family: a reward/goal family of :mod:`metarl.envs.mujoco` or a dynamics family of
            :mod:`metarl.envs.dynamics` on HalfCheetah, Hopper, Walker2d, Ant or Humanoid.
        tasks, envs_per_task: see :func:`metarl.make_vec`.
        num_threads: physics threads; ``None`` for ``METARL_MUJOCO_THREADS`` or the usable cores.
        kernel: the stepping loop, ``"c"`` or ``"python"`` (same results); ``None`` for
            ``METARL_MUJOCO_KERNEL`` or the C loop (see :class:`~metarl.envs.mujoco_physics.BatchedPhysics`).
    """

    def __init__(
        self,
        family: TaskFamily,
        tasks: Sequence[Task],
        envs_per_task: int = 1,
        *,
        num_threads: int | None = None,
        kernel: str | None = None,
    ) -> None:
        robot = _robot_of(family)
        if robot is None:
            raise ValueError(f"{family.id} has no batched MuJoCo implementation")
        probe = family.make_env()
        env: Any = probe.unwrapped  # a Gymnasium MujocoEnv subclass
        self._robot = _Robot(
            name=robot,
            frame_skip=int(env.frame_skip),
            init_qpos=env.init_qpos.copy(),
            init_qvel=env.init_qvel.copy(),
            settings={k: getattr(env, "_" + k) for k in (*_COMMON, *_SETTINGS[robot])},
        )
        self._task_term: _TaskTerm | None = None
        self._task_arrays_of: Callable[[Sequence[Task]], dict[str, np.ndarray]] | None = None
        self._reward_terms: tuple[str, ...] = ()
        if isinstance(family, fam.MujocoTaskFamily):
            self._task_arrays_of, self._task_term = _TASK_TERMS[family.env_class]
            # a _TASK_TERMS key (robot is not None), so one of the task envs of metarl.envs.mujoco
            env_class = cast("type[fam._TaskInfo]", family.env_class)
            self._reward_terms = tuple(env_class.reward_terms)
        self._base_model: mujoco.MjModel = env.model
        self._randomizers: list[DynamicsRandomizer] | None = None
        self._num_threads = num_threads
        self._kernel = kernel
        self._physics: BatchedPhysics | None = None
        self._main_body = (
            int(env.data.body(self._robot.main_body).id) if robot == "ant" else 1
        )  # Gymnasium reads data.body(main_body).xpos
        probe.close()
        super().__init__(family, tasks, envs_per_task)

    # ------------------------------------------------------------------------------- set-up
    def _fields(self) -> dict[str, FieldSpec]:
        r = self._robot
        fields: dict[str, FieldSpec] = {"qpos": ("qpos", None), "qvel": ("qvel", None)}
        if r.name == "ant":
            fields["body_xy"] = ("xpos", (self._main_body, slice(0, 2)))
            fields["cfrc_ext"] = ("cfrc_ext", None)
        if r.name == "humanoid":
            fields["xipos"] = ("xipos", None)
            fields["cfrc_ext"] = ("cfrc_ext", None)
            if r.include_cinert_in_observation:
                fields["cinert"] = ("cinert", None)
            if r.include_cvel_in_observation:
                fields["cvel"] = ("cvel", None)
            if r.include_qfrc_actuator_in_observation:
                fields["qfrc_actuator"] = ("qfrc_actuator", None)
        return fields

    def _apply_tasks(self, tasks: tuple[Task, ...]) -> None:
        distinct = tasks[:: self.envs_per_task]
        if isinstance(self.family, RandParamsFamily):
            # One model per task, randomised exactly as the single env's (pristine copy x multiplier).
            if self._randomizers is None:
                self._randomizers = [
                    DynamicsRandomizer(_copy_model(self._base_model), self.family.spec) for _ in distinct
                ]
            for randomizer, task in zip(self._randomizers, distinct, strict=True):
                randomizer.apply({f: task.array(f) for f in randomizer.pristine})
            models = [r.model for r in self._randomizers for _ in range(self.envs_per_task)]
        else:
            models = [self._base_model] * self.num_envs
        if self._physics is None:
            self._physics = BatchedPhysics(
                models,
                self._robot.frame_skip,
                self._fields(),
                post_constraint=self._robot.name in ("ant", "humanoid"),
                num_threads=self._num_threads,
                kernel=self._kernel,
            )
        self._dt = np.array([m.opt.timestep * self._robot.frame_skip for m in models])
        if self._robot.name == "humanoid":
            self._body_mass = np.stack([m.body_mass for m in models])
            self._total_mass = np.array([m.body_mass.sum() for m in models])
            self._com = np.zeros((self.num_envs, 2))
        self._task_info = self._task_arrays_of(tasks) if self._task_arrays_of is not None else {}

    def close_extras(self, **kwargs: Any) -> None:
        if self._physics is not None:
            self._physics.close()

    # ------------------------------------------------------------------------------- helpers
    def _mass_center(self, rows: np.ndarray | slice) -> np.ndarray:
        """Humanoid's ``mass_center`` (Gymnasium's einsum over bodies), for sub-envs ``rows``."""
        assert self._physics is not None
        num = np.einsum("nb,nbj->nj", self._body_mass[rows], self._physics.out["xipos"][rows])
        return (num / self._total_mass[rows, None])[:, 0:2]

    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        assert self._physics is not None
        out, r = self._physics.out, self._robot
        qpos, qvel = out["qpos"][rows], out["qvel"][rows]
        n = qpos.shape[0]
        excl = bool(r.exclude_current_positions_from_observation)
        if r.name in ("half_cheetah", "hopper", "walker2d"):
            vel = qvel if r.name == "half_cheetah" else np.clip(qvel, -10, 10)
            return np.concatenate((qpos[:, int(excl) :], vel), axis=1)
        parts = [qpos[:, 2 * int(excl) :], qvel]
        if r.name == "ant":
            if r.include_cfrc_ext_in_observation:
                lo, hi = r.contact_force_range
                parts.append(np.clip(out["cfrc_ext"][rows], lo, hi)[:, 1:].reshape(n, -1))
        else:
            for key, flag in (
                ("cinert", r.include_cinert_in_observation),
                ("cvel", r.include_cvel_in_observation),
            ):
                if flag:
                    parts.append(out[key][rows][:, 1:].reshape(n, -1))
            if r.include_qfrc_actuator_in_observation:
                parts.append(out["qfrc_actuator"][rows][:, 6:])
            if r.include_cfrc_ext_in_observation:
                parts.append(out["cfrc_ext"][rows][:, 1:].reshape(n, -1))
        return np.concatenate(parts, axis=1)

    def _healthy(self) -> np.ndarray:
        assert self._physics is not None
        out, r = self._physics.out, self._robot
        qpos, qvel = out["qpos"], out["qvel"]
        if r.name == "hopper":
            state = np.concatenate((qpos, qvel), axis=1)[:, 2:]
            lo, hi = r.healthy_state_range
            z_lo, z_hi = r.healthy_z_range
            a_lo, a_hi = r.healthy_angle_range
            z, angle = qpos[:, 1], qpos[:, 2]
            return (
                np.all((lo < state) & (state < hi), axis=1)
                & ((z_lo < z) & (z < z_hi))
                & ((a_lo < angle) & (angle < a_hi))
            )
        if r.name == "walker2d":
            z_lo, z_hi = r.healthy_z_range
            a_lo, a_hi = r.healthy_angle_range
            z, angle = qpos[:, 1], qpos[:, 2]
            return ((z_lo < z) & (z < z_hi)) & ((a_lo < angle) & (angle < a_hi))
        z_lo, z_hi = r.healthy_z_range
        z = qpos[:, 2]
        if r.name == "ant":
            finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
            return finite & (z_lo <= z) & (z <= z_hi)
        return (z_lo < z) & (z < z_hi)  # humanoid

    # ------------------------------------------------------------------------------- API
    def _reset_envs(self, mask: np.ndarray) -> np.ndarray:
        assert self._physics is not None
        r = self._robot
        s = r.reset_noise_scale
        nq, nv = r.init_qpos.size, r.init_qvel.size
        rows = np.flatnonzero(mask)
        for i in rows:
            rng = self.np_randoms[i]
            assert rng is not None
            # Gymnasium v5's reset_model, draw for draw.
            qpos = r.init_qpos + rng.uniform(low=-s, high=s, size=nq)
            if r.name in ("half_cheetah", "ant"):
                qvel = r.init_qvel + s * rng.standard_normal(nv)
            else:
                qvel = r.init_qvel + rng.uniform(low=-s, high=s, size=nv)
            self._physics.set_state(int(i), qpos, qvel)
        if r.name == "humanoid":
            self._com[rows] = self._mass_center(rows)
        return self._observe(rows)

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        assert self._physics is not None
        phys, r = self._physics, self._robot
        out = phys.out
        if r.name == "ant":
            before = out["body_xy"].copy()
        elif r.name == "humanoid":
            before = self._com.copy()
        else:
            before = out["qpos"][:, :1].copy()
        phys.step(actions)
        if r.name == "ant":
            after = out["body_xy"]
        elif r.name == "humanoid":
            after = self._com = self._mass_center(slice(None))
        else:
            after = out["qpos"][:, :1]
        velocity = (after - before) / self._dt[:, None]
        qpos = out["qpos"]
        q: dict[str, np.ndarray] = {"x_position": qpos[:, 0].copy(), "x_velocity": velocity[:, 0]}
        if r.name in ("ant", "humanoid"):
            q["y_position"] = qpos[:, 1].copy()
            q["y_velocity"] = velocity[:, 1]

        # Reward terms, each as Gymnasium computes it (ctrl cost in the action's dtype, as there).
        ctrl_source = phys.ctrl if r.name == "humanoid" else actions  # Humanoid reads data.ctrl
        ctrl_cost = r.ctrl_cost_weight * np.sum(np.square(ctrl_source), axis=1)
        terms: dict[str, np.ndarray] = {"reward_ctrl": -ctrl_cost}
        forward = r.forward_reward_weight * q["x_velocity"]
        healthy = contact_cost = None
        if r.name != "half_cheetah":
            healthy_mask = self._healthy()
            healthy = healthy_mask * r.healthy_reward
            terms["reward_survive"] = healthy
            terminated = ~healthy_mask & bool(r.terminate_when_unhealthy)
        else:
            terminated = np.zeros(self.num_envs, dtype=bool)
        if r.name == "ant":
            lo, hi = r.contact_force_range
            forces = np.clip(out["cfrc_ext"], lo, hi).reshape(self.num_envs, -1)
            contact_cost = r.contact_cost_weight * np.sum(np.square(forces), axis=1)
        elif r.name == "humanoid":
            raw = r.contact_cost_weight * np.sum(
                np.square(out["cfrc_ext"].reshape(self.num_envs, -1)), axis=1
            )
            contact_cost = np.clip(raw, *r.contact_cost_range)
        if contact_cost is not None:
            terms["reward_contact"] = -contact_cost

        if self._task_term is None:  # the base env's reward (dynamics families)
            terms = {"reward_forward": forward, **terms}
            rewards = forward if healthy is None else forward + healthy
            rewards = rewards - (ctrl_cost if contact_cost is None else ctrl_cost + contact_cost)
        else:  # metarl's task reward: task term, then the other terms in order (envs/mujoco.py)
            terms = {
                self._reward_terms[0]: self._task_term(r.forward_reward_weight, self._task_info, q),
                **terms,
            }
            rewards = terms[self._reward_terms[0]]
            for name in self._reward_terms[1:]:
                rewards = rewards + terms[name]
        rewards = np.asarray(rewards, dtype=np.float64)
        if not np.isfinite(rewards).all():  # a huge action's control cost overflowed (envs/mujoco.py)
            self._needs_reset = True
            i = int(np.flatnonzero(~np.isfinite(rewards))[0])
            raise fam.huge_action_error(
                actions[i], rewards[i], self.single_action_space, f"sub-env {i}'s action"
            )
        infos: dict[str, Any] = {**q, **terms, **{k: v.copy() for k, v in self._task_info.items()}}
        return self._observe(slice(None)), rewards, terminated, infos


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    """A bitwise copy of ``model`` (``mj_copyModel``)."""
    return copy.copy(model)
