"""Speed options applied when training starts: TF32, activation checkpointing, torch.compile.

Mixed precision itself is the Trainer's ``precision`` (``bf16-mixed`` in ``trainer=gpu`` and
``trainer=ddp``): Lightning runs the step under ``torch.autocast``; our CTC and attention
losses take log-softmax in float32 and ``F.ctc_loss`` runs in float32 (autocast's float32
list), so only matrix products run in bfloat16.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from avsr.utils.activation_checkpointing import enable_activation_checkpointing

__all__ = ["PerformanceOptions"]

log = logging.getLogger(__name__)


class PerformanceOptions(pl.Callback):
    """Apply speed/memory options to the LightningModule before training.

    Args:
        tf32: let float32 matrix products and convolutions use TF32 tensor cores on CUDA
            (``torch.set_float32_matmul_precision("high")``). Only applied when training on
            CUDA, so CPU results stay bit-exact.
        activation_checkpointing: dotted names (relative to the LightningModule) whose layers
            are checkpointed, e.g. ``[model.encoder.layers]`` for Large models; empty = off.
        compile: ``torch.compile`` the modules of ``compile_modules`` (in place: names and
            checkpoints are unchanged).
        compile_modules: dotted names of the modules to compile.
        compile_kwargs: keyword arguments of ``torch.compile`` (``dynamic``, ``backend``, ...).
    """

    def __init__(
        self,
        *,
        tf32: bool = True,
        activation_checkpointing: Sequence[str] = (),
        compile: bool = False,
        compile_modules: Sequence[str] = ("model.encoder", "model.decoder"),
        compile_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.tf32 = tf32
        self.activation_checkpointing = list(activation_checkpointing or ())
        self.compile = compile
        self.compile_modules = list(compile_modules)
        self.compile_kwargs = dict(compile_kwargs or {"dynamic": True})
        self._applied = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self._applied:
            return
        self._applied = True
        if self.tf32 and trainer.strategy.root_device.type == "cuda":
            torch.set_float32_matmul_precision("high")
            log.info("TF32 matrix products enabled")
        if self.activation_checkpointing:
            names = enable_activation_checkpointing(pl_module, self.activation_checkpointing)
            log.info("activation checkpointing on %d modules: %s", len(names), names)
        if self.compile:
            for name in self.compile_modules:
                try:
                    module = pl_module.get_submodule(name)
                except AttributeError:
                    continue
                module.compile(**self.compile_kwargs)
                log.info("torch.compile(%s, %s)", name, self.compile_kwargs)
