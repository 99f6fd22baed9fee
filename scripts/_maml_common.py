"""Shared command line of the ``maml_*.py`` scripts: each script is one published config."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import typer

from metarl.agents.maml_train import train
from metarl.agents.maml_trpo import MAMLTRPOConfig

__all__ = ["LOCOMOTION", "run"]

#: Finn et al. 2017's locomotion settings (section 5.3 and the reference port's configs): 40 tasks
#: per meta-batch, 20 episodes per task and inner step, one inner step of size 0.1, TRPO with KL
#: bound 0.01 (conjugate gradient 10 iterations, damping 1e-5; line search 15 steps, ratio 0.8),
#: a Gaussian policy with two hidden layers of 100 ReLU units, up to 500 meta-iterations. The
#: horizon is the family's (200 in the paper). The validation tasks are meta-tested every 10
#: iterations and the best initialisation is kept in best.pt (the paper evaluated "the model with
#: the best average return during training"). Each locomotion script replaces only what differs.
LOCOMOTION = MAMLTRPOConfig(
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
    eval_every=10,
)


def run(config: MAMLTRPOConfig) -> None:
    """Parse ``--seed``, ``--iterations``, ``--meta-batch-size``, ``--episodes-per-task``, ``--run-dir``, ``--time-budget-s``, ``--threads``,
    ``--optim-threads``, ``--hvp-subsample``, ``--inner-steps``, ``--eval-every``, ``--clip-actions`` and ``--resume``, then train ``config`` with them applied."""

    def main(
        seed: Annotated[int, typer.Option(help="Run seed.")] = config.seed,
        iterations: Annotated[int, typer.Option(help="Meta-iterations.")] = config.meta_iterations,
        meta_batch_size: Annotated[
            int, typer.Option(help="Tasks per meta-batch (default: the published setting).")
        ] = config.meta_batch_size,
        episodes_per_task: Annotated[
            int, typer.Option(help="Episodes per task and inner step (default: the published setting).")
        ] = config.episodes_per_task,
        run_dir: Annotated[
            str, typer.Option(help="Run directory (default: runs/maml_trpo/<family>/seed<seed>).")
        ] = "",
        time_budget_s: Annotated[
            float, typer.Option(help="Stop after this many seconds (0: no limit).")
        ] = 0.0,
        threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
        optim_threads: Annotated[
            int, typer.Option(help="torch threads for the inner and outer updates only (0: --threads).")
        ] = 0,
        hvp_subsample: Annotated[
            float, typer.Option(help="Fraction of steps in the KL Hessian products (1: exact, the paper's).")
        ] = config.hvp_subsample,
        inner_steps: Annotated[
            int, typer.Option(help="Inner gradient steps in meta-training (the paper: 1).")
        ] = config.inner_steps,
        eval_every: Annotated[
            int,
            typer.Option(help="Meta-test the validation tasks every N iterations; keep best.pt (0: off)."),
        ] = config.eval_every,
        clip_actions: Annotated[
            bool,
            typer.Option(help="Clip actions to the action box before stepping (the reference envs did)."),
        ] = config.clip_actions,
        resume: Annotated[bool, typer.Option(help="Continue from the newest valid checkpoint.")] = False,
    ) -> None:
        torch.set_num_threads(threads)
        cfg = dataclasses.replace(
            config,
            seed=seed,
            meta_iterations=iterations,
            meta_batch_size=meta_batch_size,
            episodes_per_task=episodes_per_task,
            run_dir=run_dir or f"runs/maml_trpo/{config.family}/seed{seed}",
            time_budget_s=time_budget_s or None,
            hvp_subsample=hvp_subsample,
            eval_every=eval_every,
            inner_steps=inner_steps,
            clip_actions=clip_actions,
            optim_threads=optim_threads or config.optim_threads,
        )
        print(cfg.to_json())
        train(cfg, resume=resume)

    typer.run(main)
