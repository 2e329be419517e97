"""The optimiser and per-step learning-rate schedule that every training stage configures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["configure_step_optimizer", "total_steps"]


def total_steps(module: pl.LightningModule) -> int:
    """Optimiser steps the attached trainer will run (at least 1; 1 without a trainer)."""
    trainer = module._trainer
    return max(1, int(trainer.estimated_stepping_batches)) if trainer is not None else 1


def configure_step_optimizer(
    module: pl.LightningModule,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None,
) -> Any:
    """``configure_optimizers``' return value: the optimiser over ``module``'s trainable
    parameters and, if a scheduler factory is set, its schedule stepped every optimiser step
    over the run's :func:`total_steps`."""
    optimizer = optimizer_factory(params=[p for p in module.parameters() if p.requires_grad])
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer, total_steps=total_steps(module))
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
