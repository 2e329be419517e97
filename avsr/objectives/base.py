"""What every training objective is to :class:`~avsr.lightning.task.TrainTask`.

An objective is an ``nn.Module`` that owns the parts a paper adds around the model (an EMA
teacher, a predictor, pseudo-label heads, a word classifier) and turns a batch into a loss.
The task owns everything else a stage needs once: the guarded step, the optimiser and its
schedule, DDP bookkeeping, validation, checkpoint hooks and logging. A new paper idea is a new
subclass, composed by config (``stage.objective``), never a new LightningModule.

The protocol, with the default each hook has here:

- ``bind(model)``: build the parts that depend on the model (called once, from
  ``configure_model``, before a checkpoint is restored or the optimiser is built).
- ``start_step(model, step)``: before the forward of optimiser step ``step``.
- ``forward(model, batch, generator=None) -> {"loss": tensor, name: scalar, ...}``: the loss
  to minimise and the parts to log (``train/<name>``); ``loss`` None when the batch holds
  nothing to learn from (the task then treats it as an empty batch).
- ``evaluate(model, batch, generator) -> (logs, outputs)``: the same on a validation or test
  batch, plus per-stream outputs for the task's evaluators (``None`` when there are none).
- ``skip_batch(model)``: on a DDP rank whose batch is empty, instead of ``forward``: take part
  in the collectives ``forward`` runs, so the other ranks do not wait forever.
- ``update_teacher(model, step, total_steps) -> momentum or None``: after each optimiser step.
- ``batch_size(batch)`` and ``is_empty(batch)``: the batch's size for logging, and whether it
  holds no utterance at all.
- ``frozen_parts``: top-level model parts this objective never trains (they get no gradient;
  DDP rejects parameters without one unless it searches for them every step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from avsr.modalities import MODALITIES

__all__ = ["Objective", "check_modalities", "available_modalities", "stream_weights"]


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """``modalities`` as a tuple; ValueError unless a non-empty subset of :data:`MODALITIES`."""
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got "
                         f"{list(modalities)}")
    return tuple(modalities)


def stream_weights(modalities: Sequence[str], weights: Mapping[str, float] | None
                   ) -> dict[str, float]:
    """The loss weight of each stream (1.0 where ``weights`` leaves it unset)."""
    given = dict(weights or {})
    return {m: float(given.get(m, 1.0)) for m in modalities}


def available_modalities(batch: Mapping[str, Any], modalities: Sequence[str]
                         ) -> tuple[str, ...]:
    """The streams of ``modalities`` that the batch's present media can run."""
    has_a, has_v = batch.get("audio") is not None, batch.get("video") is not None
    ok = {"audio": has_a, "video": has_v, "audiovisual": has_a and has_v}
    return tuple(m for m in modalities if ok[m])


class Objective(nn.Module):
    """Base class of the training objectives (see the module docstring for the protocol).

    Subclasses set ``self.modalities`` (the streams they train and score) and implement
    :meth:`forward`.
    """

    modalities: tuple[str, ...] = ()
    frozen_parts: tuple[str, ...] = ()

    def bind(self, model: nn.Module) -> None:
        """Build the model-dependent parts; idempotent. Nothing to build by default."""

    def start_step(self, model: nn.Module, step: int) -> None:
        """Called before the forward of optimiser step ``step``. Nothing by default."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batch: Mapping[str, Any],
                 generator: torch.Generator | None = None
                 ) -> tuple[dict[str, torch.Tensor], Any]:
        """Validation/test logs and per-stream outputs; by default the training loss only."""
        return self(model, batch, generator=generator), None

    def skip_batch(self, model: nn.Module) -> None:
        """Match ``forward``'s collectives on a DDP rank with an empty batch. None by default."""

    def update_teacher(self, model: nn.Module, step: int, total_steps: int) -> float | None:
        """Move a teacher after optimiser step ``step``; the momentum used, or None."""
        return None

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        return len(batch["ids"])

    def is_empty(self, batch: Mapping[str, Any]) -> bool:
        return not batch["ids"]
