"""MAML-TRPO on Meta-World ML1 reach (``ML1-reach-v0``: 50 training goals, 500-step episodes).

Settings of garage's ML1 MAML-TRPO examples (the Meta-World paper's MAML baseline): 20 tasks per
meta-batch, 10 episodes per task and inner step, one inner step of 0.1, TRPO with KL bound 0.01,
(100, 100) tanh Gaussian policy, 300 meta-iterations. One iteration is 200,000 env steps; Meta-World
steps run at a few thousand per second on a 2-core machine, so the published size takes days there:
``--meta-batch-size``, ``--episodes-per-task`` and ``--iterations`` shrink it (the run records what
was used in its config.json).

    python scripts/maml_ml1_reach.py --seed 0 [--resume]
"""

from _maml_common import LOCOMOTION, run

CONFIG = LOCOMOTION.replace(
    family="ML1-reach-v0",
    meta_iterations=300,
    meta_batch_size=20,
    episodes_per_task=10,
    nonlinearity="tanh",
)

if __name__ == "__main__":
    run(CONFIG)
