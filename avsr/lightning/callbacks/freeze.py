"""Keep parts of the model frozen for the first updates of a run (AV-HuBERT's
``freeze_finetune_updates``; Pan et al.'s staged fine-tuning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl

__all__ = ["FreezeSchedule"]


class FreezeSchedule(pl.Callback):
    """Freezes sub-modules of the LightningModule for the first ``steps`` optimiser updates.

    Frozen parameters get ``requires_grad=False`` (no gradient is computed for them, and
    AdamW skips parameters without gradients, weight decay included); the optimiser still
    holds them, so they train once unfrozen. Decided from ``trainer.global_step`` before every
    batch, so a resumed run freezes exactly as the uninterrupted one.

    Args:
        modules: dotted names inside the LightningModule, e.g. ``model.encoder``.
        steps: updates to keep them frozen; ``None`` keeps them frozen for the whole run.
    """

    def __init__(self, modules: Sequence[str], steps: int | None = None) -> None:
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0 or None, got {steps}")
        self.modules = list(modules)
        self.steps = steps

    def frozen(self, global_step: int) -> bool:
        return self.steps is None or global_step < self.steps

    def _set(self, pl_module: pl.LightningModule, trainable: bool) -> None:
        for name in self.modules:
            module = pl_module.get_submodule(name)
            for p in module.parameters():
                p.requires_grad_(trainable)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._set(pl_module, not self.frozen(trainer.global_step))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._set(pl_module, True)
