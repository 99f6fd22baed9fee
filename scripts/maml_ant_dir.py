"""MAML-TRPO on AntDir-v0 (direction in {-1, +1}; Finn et al. 2017, section 5.3, locomotion).

The published locomotion settings are ``_maml_common.LOCOMOTION`` (40 tasks per meta-batch, 20
episodes per task, one inner step of 0.1, TRPO with KL bound 0.01, (100, 100) ReLU policy).
Differs from the common settings: 40 episodes per task and inner step (as the paper's Ant runs).

    python scripts/maml_ant_dir.py --seed 0 [--resume]
"""

import dataclasses

from _maml_common import LOCOMOTION, run

CONFIG = dataclasses.replace(LOCOMOTION, family="AntDir-v0", episodes_per_task=40)

if __name__ == "__main__":
    run(CONFIG)
