"""metarl's built-in task families (installed as ``metarl.envs``).

Importing this package registers every family by a string entry point; no family module (and no
MuJoCo) is imported until the family is made.
"""

from metarl.registry import register_family

register_family("Navigation2D-v0", "metarl.envs.navigation:Navigation2DFamily")

# MuJoCo locomotion families with task-dependent rewards (metarl.envs.mujoco).
register_family("HalfCheetahVel-v0", "metarl.envs.mujoco:HalfCheetahVelFamily")
register_family("HalfCheetahDir-v0", "metarl.envs.mujoco:HalfCheetahDirFamily")
register_family("AntVel-v0", "metarl.envs.mujoco:AntVelFamily")
register_family("AntDir-v0", "metarl.envs.mujoco:AntDirFamily")
register_family("AntDir2D-v0", "metarl.envs.mujoco:AntDir2DFamily")
register_family("AntGoal-v0", "metarl.envs.mujoco:AntGoalFamily")
register_family("HumanoidDir-v0", "metarl.envs.mujoco:HumanoidDirFamily")
register_family("BernoulliBandit-v0", "metarl.envs.bandit:BernoulliBanditFamily")
register_family("TabularMDP-v0", "metarl.envs.tabular_mdp:TabularMDPFamily")

# Dynamics-randomised MuJoCo families, rand_param_envs multipliers (metarl.envs.dynamics).
register_family(
    "HopperRandParams-v0",
    "metarl.envs.dynamics:RandParamsFamily",
    env_id="Hopper-v5",
    name="HopperRandParams",
)
register_family(
    "Walker2dRandParams-v0",
    "metarl.envs.dynamics:RandParamsFamily",
    env_id="Walker2d-v5",
    name="Walker2dRandParams",
)
register_family(
    "HalfCheetahRandParams-v0",
    "metarl.envs.dynamics:RandParamsFamily",
    env_id="HalfCheetah-v5",
    name="HalfCheetahRandParams",
)

# Meta-World v3 families (metarl.envs.meta_world; needs `pip install 'metarl[metaworld]'` when made).
# One ML1 family per Meta-World env name; the name is passed as data, not captured by a closure.
for _task_name in (
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown",
    "button-press-topdown-wall", "button-press", "button-press-wall", "coffee-button", "coffee-pull",
    "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-open", "door-unlock",
    "hand-insert", "drawer-close", "drawer-open", "faucet-open", "faucet-close", "hammer",
    "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
    "pick-place-wall", "pick-out-of-hole", "pick-place", "plate-slide", "plate-slide-side",
    "plate-slide-back", "plate-slide-back-side", "peg-insert-side", "peg-unplug-side", "soccer",
    "stick-push", "stick-pull", "push", "push-wall", "push-back", "reach", "reach-wall",
    "shelf-place", "sweep-into", "sweep", "window-open", "window-close",
):  # fmt: skip
    register_family(f"ML1-{_task_name}-v0", "metarl.envs.meta_world:ML1Family", task_name=_task_name)
del _task_name
register_family("ML10-v0", "metarl.envs.meta_world:ML10Family")
register_family("ML45-v0", "metarl.envs.meta_world:ML45Family")
