"""Fine-tuning stage: a supervised task whose model starts from pre-trained parts.

``stage=finetune`` builds the ordinary :class:`~avsr.lightning.supervised.SupervisedTask` (no
copied learner) after loading chosen sub-modules (front-ends, fusion, encoder) from one or
more avsr checkpoints. Loading several sources in turn gives Pan et al.'s unimodal staging
(ACL 2022): the audio front-end from one run, the video front-end from another, then fuse.
:class:`FreezeSchedule` keeps chosen parts frozen for the first N updates (AV-HuBERT's
``freeze_finetune_updates``) or for the whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from avsr.checkpoints import read_checkpoint
from avsr.lightning.supervised import SupervisedTask

__all__ = ["load_pretrained", "apply_init", "finetune_task", "FreezeSchedule"]

log = logging.getLogger(__name__)

#: the parts a pre-training run produces; decoder and CTC head start fresh
PRETRAINED_PARTS = ("audio_frontend", "video_frontend", "fusion", "encoder")


def load_pretrained(
    model: nn.Module,
    checkpoint: str | Path | Mapping[str, Any],
    modules: Sequence[str] = PRETRAINED_PARTS,
    source: str = "model",
) -> list[str]:
    """Copy sub-modules of a model stored in an avsr (Lightning) checkpoint into ``model``.

    Args:
        model: the target model (an ``AVSRModel``).
        checkpoint: a checkpoint path or a loaded checkpoint dict (``state_dict`` inside).
        modules: top-level sub-module names of the model to copy (e.g. ``encoder``).
        source: prefix of the model inside the checkpoint's ``state_dict``: ``"model"`` (the
            trained student) or ``"objective.teacher.model"`` (the EMA teacher of pre-training).

    Returns:
        The model keys that were loaded.

    Raises:
        ValueError: a requested module is absent from the checkpoint or from the model, or a
            tensor's shape differs (the model config must match the pre-training one).
    """
    if isinstance(checkpoint, (str, Path)):
        checkpoint = read_checkpoint(checkpoint, what="init checkpoint")
    state = checkpoint.get("state_dict", checkpoint)
    prefix = source.rstrip(".") + "."
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for name in modules:
        keys = [k for k in target if k.startswith(name + ".")]
        if not keys:
            raise ValueError(f"model has no parameters under {name!r}")
        for k in keys:
            src = prefix + k
            if src not in state:
                raise ValueError(f"checkpoint has no {src!r} (needed to initialise {name!r})")
            if state[src].shape != target[k].shape:
                raise ValueError(f"{src}: checkpoint shape {tuple(state[src].shape)} != model "
                                 f"shape {tuple(target[k].shape)}; use the pre-training config")
            loaded[k] = state[src]
    model.load_state_dict(loaded, strict=False)
    return sorted(loaded)


def apply_init(model: nn.Module, init: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """Apply a list of ``{checkpoint, modules, source}`` sources in order (later wins).

    A source whose ``checkpoint`` is null is skipped, so a config can leave it unset.
    """
    loaded: list[str] = []
    for item in init or ():
        item = dict(item)
        if not item.get("checkpoint"):
            continue
        keys = load_pretrained(model, item["checkpoint"], item.get("modules", PRETRAINED_PARTS),
                               item.get("source", "model"))
        log.info("initialised %d tensors of %s from %s", len(keys),
                 list(item.get("modules", PRETRAINED_PARTS)), item["checkpoint"])
        loaded.extend(keys)
    return loaded


def finetune_task(*, model: nn.Module, init: Sequence[Mapping[str, Any]] | None = None,
                  **supervised: Any) -> SupervisedTask:
    """Initialise ``model`` from pre-training checkpoints, then build the supervised task.

    Args:
        model: the model to fine-tune.
        init: sources for :func:`apply_init`.
        **supervised: :class:`SupervisedTask` arguments.
    """
    apply_init(model, init)
    return SupervisedTask(model=model, **supervised)


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
