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
