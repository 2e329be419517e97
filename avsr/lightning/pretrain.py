"""Self-supervised pre-training stage: one thin LightningModule, the objective by config.

The objective (:class:`~avsr.objectives.braven.BRAVEnObjective`,
:class:`~avsr.objectives.avhubert.AVHuBERTObjective`) is an ``nn.Module`` that owns its extra
parts (EMA teacher, predictor, mask embeddings, cluster head); this task binds it to the
injected model in ``configure_model`` (so building the stage reads no label files; call it
yourself outside a Trainer), steps the optimiser over both, updates the teacher after every
optimiser step and reports the objective's loss on the validation split (``val/loss``, the
checkpoint monitor of pre-training). Transcripts are not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from avsr.lightning.finetune import apply_init
from avsr.lightning.guards import GuardedCheckpoint, NonFiniteLossGuard, skipped_step
from avsr.lightning.optim import configure_step_optimizer, total_steps

__all__ = ["PretrainTask"]


class PretrainTask(GuardedCheckpoint, pl.LightningModule):
    """Pre-trains the encoder side of an injected model with a self-supervised objective.

    Args:
        model: the unified model (its decoder and CTC head, if any, are not trained here).
        objective: an objective module with ``bind(model)``, ``forward(model, batch,
            generator) -> dict`` (``loss`` and logged parts) and ``update_teacher(model, step,
            total_steps)``.
        optimizer: optimiser factory (``_partial_``).
        scheduler: factory ``(optimizer, total_steps=...)`` stepped every update, or None.
        init: optional sources to initialise parts of the model first
            (:func:`~avsr.lightning.finetune.apply_init`), e.g. a later AV-HuBERT iteration
            starting from the previous one.
        tokenizer: unused (accepted because ``avsr.train`` passes it to every stage).
        loss: unused; accepted so that a recipe derived from a supervised one (which sets
            ``stage.loss``) composes with this stage.
        max_nonfinite_steps: consecutive NaN/inf-loss steps that stop the run.
        val_seed: seed of the validation masks, so ``val/loss`` is comparable across epochs.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        objective: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        init: Sequence[Mapping[str, Any]] | None = None,
        tokenizer: Any = None,
        loss: Any = None,
        max_nonfinite_steps: int = 10,
        val_seed: int = 0,
    ) -> None:
        super().__init__()
        apply_init(model, init)
        # the objectives read the encoder side only: the decoder and CTC head would get no
        # gradient, which DDP rejects unless it searches every step for unused parameters
        for name in ("decoder", "ctc"):
            part = getattr(model, name, None)
            if isinstance(part, nn.Module):
                part.requires_grad_(False)
        self.model = model
        self.objective = objective
        self.modalities = tuple(getattr(objective, "modalities", ()))
        self._bound = False
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.nonfinite_guard = NonFiniteLossGuard(max_nonfinite_steps)
        self.val_seed = val_seed
        self._val_generator: torch.Generator | None = None

    def configure_model(self) -> None:
        """Bind the objective to the model (teacher, predictor, heads) before the Trainer
        restores a checkpoint or builds the optimiser; idempotent."""
        if not self._bound:
            self.objective.bind(self.model)
            self._bound = True

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch["ids"]:
            return self.nonfinite_guard.empty_batch(self, self.global_step)
        out = self.objective(self.model, batch)
        loss = out["loss"]
        if self.nonfinite_guard.vote(loss, self.global_step):
            return skipped_step(self)
        bs = len(batch["ids"])
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, batch_size=bs,
                      on_step=True, on_epoch=False, prog_bar=False)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None:
            self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the optimiser step of this batch: global_step already counts it
        momentum = self.objective.update_teacher(self.model, self.global_step,
                                                 total_steps(self))
        if momentum is not None:
            self.log("train/ema_momentum", float(momentum), on_step=True, on_epoch=False)

    def on_validation_epoch_start(self) -> None:
        self._val_generator = torch.Generator().manual_seed(self.val_seed)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not batch["ids"]:
            return
        out = self.objective(self.model, batch, generator=self._val_generator)
        self.log_dict({f"val/{k}": v.detach() for k, v in out.items()},
                      batch_size=len(batch["ids"]), on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        return configure_step_optimizer(self, self.optimizer_factory, self.scheduler_factory)
