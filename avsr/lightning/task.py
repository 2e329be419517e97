"""The one training task: a model, an objective, an optimiser, a schedule and evaluators.

Every stage (supervised, fine-tuning, BRAVEn/USR and AV-HuBERT pre-training, USR
semi-supervision, word classification) is this LightningModule with another objective
(``stage.objective``, :mod:`avsr.objectives`). It owns what each stage needs once:

- the guarded step: a NaN or infinite loss on any rank skips the update on every rank, and
  ``max_nonfinite_steps`` consecutive ones stop the run
  (:class:`~avsr.lightning.guards.NonFiniteLossGuard`); an empty batch (every item unreadable)
  is skipped, or under DDP contributes zero gradients so the other ranks do not wait;
- binding the objective to the model (teacher, heads) in ``configure_model``, before a
  checkpoint is restored or the optimiser is built, and moving the teacher after each step;
- the optimiser over every trainable parameter and the per-step schedule;
- validation and test through evaluators; logging (``train/<part>``, ``train/lr``,
  ``train/ema_momentum``, ``val/<part>``, ``val/wer_<m>``...); the guard's counts in
  checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from avsr.lightning.evaluators import Evaluator, ObjectiveLoss
from avsr.lightning.guards import GuardedCheckpoint, NonFiniteLossGuard, skipped_step
from avsr.lightning.optim import configure_step_optimizer, total_steps
from avsr.objectives.base import Objective
from avsr.utils.distributed import world_size

__all__ = ["TrainTask"]

# checkpoints written before the one task kept an objective's parts on the task itself
_LEGACY_PREFIXES = {"teacher.": "objective.teacher.", "ctc_heads.": "objective.ctc_heads.",
                    "att_heads.": "objective.att_heads.", "head.": "objective.head.",
                    "boundary.": "objective.boundary."}


class TrainTask(GuardedCheckpoint, pl.LightningModule):
    """Trains an injected model with an injected objective.

    Args:
        model: the model (built by Hydra from ``model/``; the run's ``init`` list has already
            loaded its weights).
        objective: the training objective (:class:`~avsr.objectives.base.Objective`).
        optimizer: optimiser factory taking the parameters (``_partial_`` config).
        scheduler: factory taking ``(optimizer, total_steps=...)``, stepped every update, or
            None.
        evaluators: what validation and test score besides the objective's loss (e.g.
            :class:`~avsr.lightning.evaluators.CTCGreedyWER`).
        tokenizer: the run's tokenizer: special ids for the objective (``bind_tokenizer``),
            text for the evaluators.
        max_nonfinite_steps: consecutive NaN/inf-loss steps (updates skipped) that stop the
            run; 0 never stops.
        val_seed: seed of the objective's validation randomness (masks), so that ``val/loss``
            is comparable across epochs.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        evaluators: Sequence[Evaluator] = (),
        tokenizer: Any = None,
        max_nonfinite_steps: int = 10,
        val_seed: int = 0,
    ) -> None:
        super().__init__()
        # parts the objective never trains get no gradient, which DDP rejects unless it
        # searches every step for unused parameters
        for name in getattr(objective, "frozen_parts", ()):
            part = getattr(model, name, None)
            if isinstance(part, nn.Module):
                part.requires_grad_(False)
        if tokenizer is not None and hasattr(objective, "bind_tokenizer"):
            objective.bind_tokenizer(tokenizer)
        self.model = model
        self.objective = objective
        self.modalities = tuple(getattr(objective, "modalities", ()))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.evaluators = [ObjectiveLoss(), *evaluators]
        self.tokenizer = tokenizer
        self.nonfinite_guard = NonFiniteLossGuard(max_nonfinite_steps)
        self.val_seed = val_seed
        self._eval_generator: torch.Generator | None = None
        self._bound = False

    def configure_model(self) -> None:
        """Bind the objective to the model before the Trainer restores a checkpoint or builds
        the optimiser; idempotent (call it yourself outside a Trainer)."""
        if not self._bound:
            self.objective.bind(self.model)
            self._bound = True

    # ------------------------------------------------------------------ training
    def _optimizer(self) -> torch.optim.Optimizer | None:
        return self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        step = self.global_step
        if self.objective.is_empty(batch):
            # every item was an unreadable file (counted by the dataset). Alone: skip the step.
            if world_size() > 1:
                self.objective.skip_batch(self.model)
            return self.nonfinite_guard.empty_batch(self, step)
        self.objective.start_step(self.model, step)
        out = self.objective(self.model, batch)
        loss = out["loss"]
        if loss is None:  # the objective found nothing to learn from
            return self.nonfinite_guard.empty_batch(self, step)
        skip = self.nonfinite_guard.vote(loss, step)
        self.log("train/nonfinite_skipped", float(self.nonfinite_guard.total), on_step=True,
                 on_epoch=False)
        if skip:
            return skipped_step(self)  # every rank skips together: the vote is global
        bs = self.objective.batch_size(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items() if k != "loss"},
                      batch_size=bs, on_step=True, on_epoch=False, prog_bar=False)
        self.log("train/loss", loss.detach(), batch_size=bs, prog_bar=True, on_step=True,
                 on_epoch=False)
        opt = self._optimizer()
        if opt is not None:
            self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after the optimiser step of this batch: global_step already counts it
        momentum = self.objective.update_teacher(self.model, self.global_step,
                                                 total_steps(self))
        if momentum is not None:
            self.log("train/ema_momentum", float(momentum), on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ validation and test
    def _start(self, prefix: str) -> None:
        self._eval_generator = torch.Generator().manual_seed(self.val_seed)
        for evaluator in self.evaluators:
            evaluator.start(prefix, self.tokenizer, self.modalities)

    def _step(self, batch: Mapping[str, Any]) -> None:
        if not batch["ids"]:
            return
        logs, outputs = self.objective.evaluate(self.model, batch, self._eval_generator)
        for evaluator in self.evaluators:
            evaluator.step(batch, logs, outputs, self.log)

    def _end(self) -> None:
        for evaluator in self.evaluators:
            evaluator.end(self.device, self.log)

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch)

    def on_validation_epoch_end(self) -> None:
        self._end()

    def on_test_epoch_start(self) -> None:
        self._start("test")

    # the test split is scored as the validation split, under test/
    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ------------------------------------------------------------------ checkpoints, optimiser
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(tuple(_LEGACY_PREFIXES))]:
            old = next(p for p in _LEGACY_PREFIXES if key.startswith(p))
            state[_LEGACY_PREFIXES[old] + key[len(old):]] = state.pop(key)

    def configure_optimizers(self):
        return configure_step_optimizer(self, self.optimizer_factory, self.scheduler_factory)
