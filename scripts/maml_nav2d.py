"""MAML-TRPO on Navigation2D-v0 (Finn et al. 2017, section 5.3, 2D navigation).

20 tasks per meta-batch, 20 episodes per task and inner step, horizon 100, one inner step of size
0.1, TRPO with KL bound 0.01. The Gaussian policy is parametrised in units of the action box scaled
to [-1, 1], as the reference code's rllab ``normalize(env)`` does (the actions are in [-0.1, 0.1]).
Policy (64, 64) tanh (the reference port's setting; the paper used (100, 100) ReLU) - half the cost
per iteration on CPU. The validation tasks are meta-tested every 10 iterations and the best
initialisation is kept in best.pt.

    python scripts/maml_nav2d.py --seed 0 [--resume]
"""

from _maml_common import run

from metarl.agents.maml_trpo import MAMLTRPOConfig

CONFIG = MAMLTRPOConfig(
    family="Navigation2D-v0",
    meta_iterations=500,
    meta_batch_size=20,
    episodes_per_task=20,
    hidden_sizes=(64, 64),
    nonlinearity="tanh",
    inner_steps=1,
    inner_lr=0.1,
    gamma=0.99,
    gae_lambda=1.0,
    max_kl=0.01,
    cg_iters=10,
    cg_damping=1e-5,
    ls_max_steps=15,
    ls_backtrack_ratio=0.8,
    eval_every=10,
    normalize_actions=True,
)

if __name__ == "__main__":
    run(CONFIG)
