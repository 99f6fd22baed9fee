"""metarl's built-in task families (installed as ``metarl.envs``).

Importing this package registers every family by a string entry point; no family module (and no
MuJoCo) is imported until the family is made.
"""

from metarl.registry import register_family

register_family("Navigation2D-v0", "metarl.envs.navigation:Navigation2DFamily")
