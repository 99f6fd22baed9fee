"""MAML-TRPO on HalfCheetahVel-v0 (target velocity ~ U[0, 2]; Finn et al. 2017, section 5.3, locomotion).

The published locomotion settings are ``_maml_common.LOCOMOTION`` (40 tasks per meta-batch, 20
episodes per task, one inner step of 0.1, TRPO with KL bound 0.01, (100, 100) ReLU policy).

    python scripts/maml_cheetah_vel.py --seed 0 [--resume]
"""

import dataclasses

from _maml_common import LOCOMOTION, run

CONFIG = dataclasses.replace(LOCOMOTION, family="HalfCheetahVel-v0")

if __name__ == "__main__":
    run(CONFIG)
