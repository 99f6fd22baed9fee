"""Reward- and goal-varying MuJoCo locomotion families on Gymnasium's v5 envs.

The families of MAML (Finn et al., 2017), ProMP (Rothfuss et al., 2019) and PEARL (Rakelly et al.,
2019), rebuilt on Gymnasium's v5 MuJoCo envs (the old ``rllab``/``mujoco-py`` envs no longer
install). Each env subclasses the Gymnasium env, keeps its dynamics, observation, reset noise and
termination, and replaces only the task-dependent reward term:

============== ================================ ==============================================
family         task                             reward
============== ================================ ==============================================
HalfCheetahVel target velocity v* ~ U[0, 2]     -|v_x - v*| - 0.05 |a|^2
HalfCheetahDir direction d in {-1, +1}          d v_x - 0.05 |a|^2
AntVel         target velocity v* ~ U[0, 3]     -|v_x - v*| + survive - ctrl - contact
AntDir         direction d in {-1, +1}          d v_x + survive - ctrl - contact
AntDir2D       angle t ~ U[0, 2 pi)             (cos t, sin t) . (v_x, v_y) + survive - costs
AntGoal        goal g ~ U[-3, 3]^2              -|xy - g|_1 + survive - ctrl - contact
HumanoidDir    angle t ~ U[0, 2 pi)             1.25 (cos t, sin t) . v_com + alive - costs
============== ================================ ==============================================

* Velocities are exactly Gymnasium's ``info["x_velocity"]`` / ``info["y_velocity"]``: the torso's
  for HalfCheetah and Ant, the centre of mass's for Humanoid. Direction and velocity terms are
  multiplied by the env's ``forward_reward_weight`` (1 for HalfCheetah and Ant, 1.25 for Humanoid,
  as in ProMP's ``HumanoidRandDirec2DEnv``).
* Survive bonus, control cost and contact cost are Gymnasium v5's, with its default weights
  (Ant: healthy 1.0, ctrl 0.5, contact 5e-4 on clipped ``cfrc_ext``; Humanoid: healthy 5.0, ctrl
  0.1, contact 5e-7 capped at 10). HalfCheetah's control weight is 0.05 (MAML) instead of
  Gymnasium's 0.1.
* AntGoal uses the L1 distance of ProMP's ``AntRandGoalEnv`` and PEARL's ``AntGoalEnv``.
* Every term is in ``info`` (``reward_forward`` or ``reward_goal``, ``reward_ctrl``, and for Ant and
  Humanoid ``reward_survive`` and ``reward_contact``; ``env.reward_terms`` lists them), so
  ``reward == sum(info[k] for k in env.reward_terms)``. The task quantity is in ``info`` too
  (``target_velocity``, ``direction`` or ``goal``), after ``reset`` and every ``step``.
* Observations are Gymnasium v5's defaults: HalfCheetah 17 dims; Ant 105 dims *with* contact forces
  (``cfrc_ext``), as the ``rllab`` Ant of MAML and Gym's Ant of ProMP included them; Humanoid 348
  dims. Positions ``x, y`` are excluded, so AntGoal's policy must infer its position from motion,
  as in ProMP and PEARL. Any Gymnasium keyword (``include_cfrc_ext_in_observation=False``,
  ``ctrl_cost_weight=...``) can be passed to the family and goes to every env it makes.
* Termination follows Gymnasium v5 (the published setups agree): never for HalfCheetah; Ant when
  the torso height leaves ``[0.2, 1.0]`` or the state is not finite; Humanoid when the height
  leaves ``[1.0, 2.0]``. The horizon is 200 steps (``max_episode_steps=`` changes it).
* Actions are not clipped, as in Gymnasium: MuJoCo clamps the controls to the actuators' range (the
  action space's bounds), and the control cost is taken on the action as given. An action so large
  that the reward is not finite (its squared entries overflow the control cost: 1e308, or 3e38 in
  float32) raises ``ValueError`` naming it (:func:`huge_action_error`) instead of returning an
  infinite reward; the physics step has been taken (the batched env then needs a ``reset``). The check costs one ``math.isfinite`` on the
  reward per step (one ``np.isfinite`` over the rewards in the batched env).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils import EzPickle

from metarl.family import TaskEnv, TaskFamily
from metarl.task import Choice, Param, Task, Uniform

if TYPE_CHECKING:
    from metarl.vector import BatchedTaskVectorEnv

__all__ = [
    "AntDir2DEnv",
    "AntDir2DFamily",
    "AntDirEnv",
    "AntDirFamily",
    "AntGoalEnv",
    "AntGoalFamily",
    "AntVelEnv",
    "AntVelFamily",
    "HalfCheetahDirEnv",
    "HalfCheetahDirFamily",
    "HalfCheetahVelEnv",
    "HalfCheetahVelFamily",
    "HumanoidDirEnv",
    "HumanoidDirFamily",
    "MujocoTaskFamily",
    "check_env_kwargs",
    "huge_action_error",
]

TWO_PI = 2.0 * math.pi


def check_env_kwargs(env_class: type, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``env_kwargs`` as a dict if every key is a keyword of ``env_class`` or ``MujocoEnv``.

    Raises:
        ValueError: naming the unknown keyword and listing the accepted ones.
    """
    accepted: set[str] = set()
    for cls in env_class.__mro__:  # the Gymnasium classes' keywords (metarl's envs take **kwargs)
        if issubclass(cls, MujocoEnv) and "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            accepted |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    accepted -= {"self", "family", "model_path", "observation_space"}
    unknown = sorted(set(env_kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"unknown keyword(s) {unknown} for {env_class.__name__}; accepted: {sorted(accepted)}"
        )
    return dict(env_kwargs)


class MujocoTaskFamily(TaskFamily):
    """A family whose env is :attr:`env_class` built with the family's Gymnasium keywords.

    Args:
        split_sizes, split_seed, max_episode_steps: see :class:`~metarl.family.TaskFamily`.
        **env_kwargs: keywords of the Gymnasium env (``ctrl_cost_weight``, ``frame_skip``,
            ``include_cfrc_ext_in_observation``, ``render_mode`` ...), given to every env made.
    """

    env_class: ClassVar[type]
    default_max_episode_steps = 200

    def __init__(
        self,
        *,
        split_sizes: Mapping[str, int] | None = None,
        split_seed: int = 0,
        max_episode_steps: int | None = None,
        **env_kwargs: Any,
    ) -> None:
        super().__init__(split_sizes=split_sizes, split_seed=split_seed, max_episode_steps=max_episode_steps)
        self.env_kwargs = check_env_kwargs(self.env_class, env_kwargs)

    def _make_base_env(self) -> MujocoEnv:
        """An :attr:`env_class` env: a :class:`TaskEnv` and a Gymnasium ``MujocoEnv``."""
        return self.env_class(self, **self.env_kwargs)

    def make_batched_env(self, tasks: Sequence[Task], envs_per_task: int = 1) -> BatchedTaskVectorEnv | None:
        """All sub-envs stepped together (:mod:`metarl.envs.mujoco_batched`), bit-identical to
        :meth:`make_env`; ``None`` for env classes that module does not mirror."""
        from metarl.envs.mujoco_batched import make_mujoco_vector_env

        return make_mujoco_vector_env(self, tasks, envs_per_task)


def huge_action_error(action: Any, reward: Any, action_space: Any, where: str = "action") -> ValueError:
    """The error for an ``action`` after which the ``reward`` is not finite, naming its largest entry
    (built only on that path; the check itself is one ``isfinite`` on the reward)."""
    arr = np.asarray(action, dtype=np.float64)
    flat = arr.reshape(-1)
    i = int(np.argmax(np.abs(flat))) if flat.size else 0
    entry = tuple(int(k) for k in np.unravel_index(i, arr.shape)) if arr.ndim > 1 else i
    text = np.array2string(arr, threshold=20, precision=6, max_line_width=10**6)
    with np.errstate(over="ignore"):
        overflows = not np.isfinite(np.sum(np.square(flat)))
    why = (
        "the control cost (a weight times the sum of squared actions) overflows"
        if overflows
        else "the physics or a cost term diverged"
    )
    return ValueError(
        f"{where} {text} makes the reward non-finite ({reward}): {why}; its largest entry is "
        f"{entry}: {flat[i].item()!r}. MuJoCo clamps controls to the action space {action_space}, so clip "
        f"actions to its bounds"
    )


class _TaskInfo:
    """Shared by the task envs below (put it after :class:`TaskEnv`): the family, the ``info`` keys
    that sum to the reward, and the task quantity reported after ``reset`` and every ``step``."""

    #: The ``info`` keys whose values sum to the reward; the first is the task-dependent term.
    reward_terms: ClassVar[tuple[str, ...]]

    def _init_task_env(self, family: TaskFamily, env_kwargs: dict[str, Any]) -> None:
        self.task_family = family
        self._cost_terms = self.reward_terms[1:]
        # Gymnasium's EzPickle recorded the base class's arguments; record ours instead.
        EzPickle.__init__(cast(EzPickle, self), family, **env_kwargs)  # the Gymnasium env is an EzPickle

    def _task_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def _get_reset_info(self) -> dict[str, Any]:
        info = super()._get_reset_info()  # type: ignore[misc]
        info.update(self._task_info())
        return info


class _TaskReward(_TaskInfo):
    """Wraps Gymnasium's ``step``: replaces its forward term by :meth:`_task_term` of its ``info``."""

    #: Gymnasium's term the task term replaces (removed from ``info`` if named differently).
    _replaced_term: ClassVar[str] = "reward_forward"
    #: The Gymnasium env class's ``step`` (the next in the MRO), found once per class: calling it
    #: directly spares a ``super()`` lookup per step.
    _gymnasium_step: ClassVar[Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        after = mro[mro.index(_TaskReward) + 1 :]
        cls._gymnasium_step = next((c.__dict__["step"] for c in after if "step" in c.__dict__), None)

    def _task_term(self, info: dict[str, Any]) -> float:
        raise NotImplementedError

    # The env classes mixing this in carry ``# type: ignore[misc]``: Gymnasium annotates MujocoEnv.step's
    # reward as np.float64, and this step returns a Python float (the sum below), so the two bases'
    # signatures conflict; annotating np.float64 here would be false, and converting would cost time.
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self._gymnasium_step(action)
        term = self._task_term(info)
        key = self.reward_terms[0]
        if key != self._replaced_term:
            del info[self._replaced_term]
        info[key] = term
        # Summed as Python floats, in the order of reward_terms: the same IEEE double additions as
        # numpy's scalars (the batched env's sums), without numpy's per-scalar dispatch.
        reward = float(term)
        for name in self._cost_terms:
            reward += float(info[name])
        if not math.isfinite(reward):
            raise huge_action_error(action, reward, self.action_space)  # type: ignore[attr-defined]
        info.update(self._task_info())
        return obs, reward, terminated, truncated, info


def _vector(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --------------------------------------------------------------------------------- HalfCheetah


class HalfCheetahVelEnv(TaskEnv, _TaskInfo, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 (17-dim observation) with a target-velocity reward."""

    reward_terms = ("reward_forward", "reward_ctrl")

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        HalfCheetahEnv.__init__(self, **{"ctrl_cost_weight": 0.05, **env_kwargs})
        self._init_task_env(family, env_kwargs)
        self._velocity = 0.0

    def _apply_task(self, task: Task) -> None:
        self._velocity = float(task["velocity"])  # type: ignore[arg-type]

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        # Replaces Gymnasium's reward (HalfCheetah's step is cheap, so no extra layer around it);
        # x_velocity is the value Gymnasium reports as info["x_velocity"].
        forward = -self._forward_reward_weight * abs(x_velocity - self._velocity)
        ctrl_cost = self.control_cost(action)
        reward = forward - ctrl_cost
        if not math.isfinite(reward):
            raise huge_action_error(action, reward, self.action_space)
        info = {"reward_forward": forward, "reward_ctrl": -ctrl_cost, "target_velocity": self._velocity}
        return reward, info

    def _task_info(self) -> dict[str, Any]:
        return {"target_velocity": self._velocity}


class HalfCheetahVelFamily(MujocoTaskFamily):
    """HalfCheetah must run at a target forward velocity (MAML's ``HalfCheetahVel``)."""

    name = "HalfCheetahVel"
    varies = "reward"
    description = "HalfCheetah runs at a target velocity ~ U[0, 2]; reward -|v_x - v*| - 0.05|a|^2."
    env_class = HalfCheetahVelEnv
    parameters = (Param("velocity", Uniform(0.0, 2.0), low=0.0, high=2.0, doc="target x-velocity"),)


class HalfCheetahDirEnv(TaskEnv, _TaskInfo, HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5 (17-dim observation) rewarded for running in direction ``d``."""

    reward_terms = ("reward_forward", "reward_ctrl")

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        HalfCheetahEnv.__init__(self, **{"ctrl_cost_weight": 0.05, **env_kwargs})
        self._init_task_env(family, env_kwargs)
        self._direction = 1.0

    def _apply_task(self, task: Task) -> None:
        self._direction = float(task["direction"])  # type: ignore[arg-type]

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        forward = self._forward_reward_weight * self._direction * x_velocity
        ctrl_cost = self.control_cost(action)
        reward = forward - ctrl_cost
        if not math.isfinite(reward):
            raise huge_action_error(action, reward, self.action_space)
        info = {"reward_forward": forward, "reward_ctrl": -ctrl_cost, "direction": self._direction}
        return reward, info

    def _task_info(self) -> dict[str, Any]:
        return {"direction": self._direction}


class HalfCheetahDirFamily(MujocoTaskFamily):
    """HalfCheetah must run forward or backward (MAML's ``HalfCheetahDir``)."""

    name = "HalfCheetahDir"
    varies = "reward"
    description = "HalfCheetah runs in direction d in {-1, +1}; reward d v_x - 0.05|a|^2."
    disjoint_splits = False
    env_class = HalfCheetahDirEnv
    parameters = (
        Param(
            "direction", Choice((-1.0, 1.0)), low=-1.0, high=1.0, integer=True, doc="+1 forward, -1 backward"
        ),
    )


# --------------------------------------------------------------------------------- Ant
_ANT_TERMS = ("reward_survive", "reward_ctrl", "reward_contact")


# ignore[misc]: _TaskReward.step's float reward against MujocoEnv.step's np.float64 (see there).
class AntVelEnv(TaskEnv, _TaskReward, AntEnv):  # type: ignore[misc]
    """Gymnasium's Ant-v5 (105-dim observation with contact forces) with a target velocity."""

    reward_terms = ("reward_forward", *_ANT_TERMS)

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        AntEnv.__init__(self, **env_kwargs)
        self._init_task_env(family, env_kwargs)
        self._velocity = 0.0

    def _apply_task(self, task: Task) -> None:
        self._velocity = float(task["velocity"])  # type: ignore[arg-type]

    def _task_term(self, info: dict[str, Any]) -> float:
        return -self._forward_reward_weight * abs(info["x_velocity"] - self._velocity)

    def _task_info(self) -> dict[str, Any]:
        return {"target_velocity": self._velocity}


class AntVelFamily(MujocoTaskFamily):
    """Ant must walk forward at a target velocity (MAML's ``AntVel``)."""

    name = "AntVel"
    varies = "reward"
    description = "Ant walks at a target x-velocity ~ U[0, 3]; reward -|v_x - v*| + survive - costs."
    env_class = AntVelEnv
    parameters = (Param("velocity", Uniform(0.0, 3.0), low=0.0, high=3.0, doc="target x-velocity"),)


# ignore[misc]: _TaskReward.step's float reward against MujocoEnv.step's np.float64 (see there).
class AntDirEnv(TaskEnv, _TaskReward, AntEnv):  # type: ignore[misc]
    """Gymnasium's Ant-v5 (105-dim observation) rewarded for walking in direction ``d`` along x."""

    reward_terms = ("reward_forward", *_ANT_TERMS)

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        AntEnv.__init__(self, **env_kwargs)
        self._init_task_env(family, env_kwargs)
        self._direction = 1.0

    def _apply_task(self, task: Task) -> None:
        self._direction = float(task["direction"])  # type: ignore[arg-type]

    def _task_term(self, info: dict[str, Any]) -> float:
        return self._forward_reward_weight * self._direction * info["x_velocity"]

    def _task_info(self) -> dict[str, Any]:
        return {"direction": self._direction}


_ANGLE = Param(
    "angle",
    Uniform(0.0, TWO_PI),
    low=0.0,
    high=TWO_PI,
    doc="direction of travel in the plane, radians from +x: d = (cos, sin)",
)


class AntDirFamily(MujocoTaskFamily):
    """Ant must walk forward or backward along x (MAML's ``AntDir``)."""

    name = "AntDir"
    varies = "reward"
    description = "Ant walks in direction d in {-1, +1} along x; reward d v_x + survive - costs."
    disjoint_splits = False
    env_class = AntDirEnv
    parameters = (
        Param(
            "direction", Choice((-1.0, 1.0)), low=-1.0, high=1.0, integer=True, doc="+1 forward, -1 backward"
        ),
    )


class _PlanarDirection:
    """Task term ``w * d . v_xy`` for a unit direction ``d = (cos t, sin t)``; task parameter ``angle``.

    Put it first among the bases, before :class:`TaskEnv` and ``_TaskReward``, so its methods win.
    """

    _forward_reward_weight: float
    _dx: float
    _dy: float
    _direction: np.ndarray

    def _apply_task(self, task: Task) -> None:
        angle = float(task["angle"])  # type: ignore[arg-type]
        self._dx, self._dy = math.cos(angle), math.sin(angle)
        self._direction = _vector((self._dx, self._dy))

    def _task_term(self, info: dict[str, Any]) -> float:
        return self._forward_reward_weight * (self._dx * info["x_velocity"] + self._dy * info["y_velocity"])

    def _task_info(self) -> dict[str, Any]:
        return {"direction": self._direction.copy()}


# ignore[misc]: _TaskReward.step's float reward against MujocoEnv.step's np.float64 (see there).
class AntDir2DEnv(_PlanarDirection, TaskEnv, _TaskReward, AntEnv):  # type: ignore[misc]
    """Gymnasium's Ant-v5 (105-dim observation) rewarded for velocity along ``(cos t, sin t)``."""

    reward_terms = ("reward_forward", *_ANT_TERMS)

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        AntEnv.__init__(self, **env_kwargs)
        self._init_task_env(family, env_kwargs)
        self._dx, self._dy = 1.0, 0.0
        self._direction = _vector((1.0, 0.0))


class AntDir2DFamily(MujocoTaskFamily):
    """Ant must walk in a random direction of the plane (ProMP's ``AntRandDirec2DEnv``)."""

    name = "AntDir2D"
    varies = "reward"
    description = "Ant walks along a random unit direction d; reward d . v_xy + survive - costs."
    env_class = AntDir2DEnv
    parameters = (_ANGLE,)


# ignore[misc]: _TaskReward.step's float reward against MujocoEnv.step's np.float64 (see there).
class AntGoalEnv(TaskEnv, _TaskReward, AntEnv):  # type: ignore[misc]
    """Gymnasium's Ant-v5 (105-dim observation) rewarded by minus the L1 distance to a goal.

    ``reward_goal = -(|x - g_x| + |y - g_y|)`` of the torso after the step replaces Gymnasium's
    ``reward_forward``, which is removed from ``info``.
    """

    reward_terms = ("reward_goal", *_ANT_TERMS)

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        AntEnv.__init__(self, **env_kwargs)
        self._init_task_env(family, env_kwargs)
        self._gx, self._gy = 0.0, 0.0
        self._goal = _vector((0.0, 0.0))

    def _apply_task(self, task: Task) -> None:
        self._gx, self._gy = (float(v) for v in task.array("goal"))
        self._goal = _vector((self._gx, self._gy))

    def _task_term(self, info: dict[str, Any]) -> float:
        return -(abs(float(info["x_position"]) - self._gx) + abs(float(info["y_position"]) - self._gy))

    def _task_info(self) -> dict[str, Any]:
        return {"goal": self._goal.copy()}


class AntGoalFamily(MujocoTaskFamily):
    """Ant must walk to a goal position (ProMP's ``AntRandGoalEnv``, PEARL's ``AntGoalEnv``)."""

    name = "AntGoal"
    varies = "goal"
    description = "Ant walks to a goal ~ U[-3, 3]^2; reward -|xy - goal|_1 + survive - costs."
    env_class = AntGoalEnv
    parameters = (
        Param("goal", Uniform(-3.0, 3.0), shape=(2,), low=-3.0, high=3.0, doc="goal position (x, y)"),
    )


# --------------------------------------------------------------------------------- Humanoid


# ignore[misc]: _TaskReward.step's float reward against MujocoEnv.step's np.float64 (see there).
class HumanoidDirEnv(_PlanarDirection, TaskEnv, _TaskReward, HumanoidEnv):  # type: ignore[misc]
    """Gymnasium's Humanoid-v5 (348-dim observation) rewarded for centre-of-mass velocity along d."""

    reward_terms = ("reward_forward", *_ANT_TERMS)

    def __init__(self, family: TaskFamily, **env_kwargs: Any) -> None:
        HumanoidEnv.__init__(self, **env_kwargs)
        self._init_task_env(family, env_kwargs)
        self._dx, self._dy = 1.0, 0.0
        self._direction = _vector((1.0, 0.0))


class HumanoidDirFamily(MujocoTaskFamily):
    """Humanoid must walk in a random direction of the plane (ProMP's ``HumanoidRandDirec2DEnv``)."""

    name = "HumanoidDir"
    varies = "reward"
    description = "Humanoid walks along a random unit direction d; reward 1.25 d . v_com + alive - costs."
    env_class = HumanoidDirEnv
    parameters = (_ANGLE,)
