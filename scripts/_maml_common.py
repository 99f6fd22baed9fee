"""Shared command line of the ``maml_*.py`` scripts: each script is one published config."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import typer

from metarl.agents.maml_train import train
from metarl.agents.maml_trpo import MAMLTRPOConfig

__all__ = ["run"]


def run(config: MAMLTRPOConfig) -> None:
    """Parse ``--seed``, ``--iterations``, ``--run-dir``, ``--time-budget-s``, ``--threads`` and
    ``--resume``, then train ``config`` with them applied."""

    def main(
        seed: Annotated[int, typer.Option(help="Run seed.")] = config.seed,
        iterations: Annotated[int, typer.Option(help="Meta-iterations.")] = config.meta_iterations,
        run_dir: Annotated[
            str, typer.Option(help="Run directory (default: runs/maml_trpo/<family>/seed<seed>).")
        ] = "",
        time_budget_s: Annotated[
            float, typer.Option(help="Stop after this many seconds (0: no limit).")
        ] = 0.0,
        threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
        resume: Annotated[bool, typer.Option(help="Continue from the newest valid checkpoint.")] = False,
    ) -> None:
        torch.set_num_threads(threads)
        cfg = dataclasses.replace(
            config,
            seed=seed,
            meta_iterations=iterations,
            run_dir=run_dir or f"runs/maml_trpo/{config.family}/seed{seed}",
            time_budget_s=time_budget_s or None,
        )
        print(cfg.to_json())
        train(cfg, resume=resume)

    typer.run(main)
