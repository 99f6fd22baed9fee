"""MAML-TRPO on HalfCheetahDir-v0 (direction in {-1, +1}; Finn et al. 2017, section 5.3, locomotion).

Published settings: 40 tasks per meta-batch, 20 episodes per task and inner step, one inner step
of size 0.1, TRPO with KL bound 0.01 (conjugate gradient 10 iterations, damping 1e-5; line search
15 steps, ratio 0.8), Gaussian policy with two hidden layers of 100 ReLU units, up to 500
meta-iterations. The horizon is the family's (200 in the paper).

    python scripts/maml_cheetah_dir.py --seed 0 [--resume]
"""

from _maml_common import run

from metarl.agents.maml_trpo import MAMLTRPOConfig

CONFIG = MAMLTRPOConfig(
    family="HalfCheetahDir-v0",
    meta_iterations=500,
    meta_batch_size=40,
    episodes_per_task=20,
    hidden_sizes=(100, 100),
    nonlinearity="relu",
    inner_steps=1,
    inner_lr=0.1,
    gamma=0.99,
    gae_lambda=1.0,
    max_kl=0.01,
    cg_iters=10,
    cg_damping=1e-5,
    ls_max_steps=15,
    ls_backtrack_ratio=0.8,
)

if __name__ == "__main__":
    run(CONFIG)
