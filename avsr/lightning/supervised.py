"""Supervised stage: one unified model trained on audio, video and audio-visual input at once.

As in USR (Haliassos et al., NeurIPS 2024), every step runs all three modality streams through
the same encoder and decoder (stacked along the batch) and sums the per-modality hybrid
CTC/attention losses with per-modality weights; there is no random modality sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from avsr.decoding.greedy import ctc_greedy
from avsr.metrics.wer import ErrorCounter
from avsr.objectives.hybrid import HybridCTCAttentionLoss

__all__ = ["SupervisedTask"]

_ALL = ("audio", "video", "audiovisual")


class SupervisedTask(pl.LightningModule):
    """Trains an injected :class:`~avsr.models.avsr_model.AVSRModel` with the hybrid loss.

    Args:
        model: the unified model (built by Hydra from ``model/``).
        loss: hybrid CTC/attention loss.
        optimizer: optimiser factory taking the parameters (``_partial_`` config).
        scheduler: factory taking ``(optimizer, total_steps=...)``, stepped every update, or None.
        modalities: streams trained every step.
        modality_weights: loss weight of each stream.
        tokenizer: turns token ids into text for validation WER.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        loss: HybridCTCAttentionLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        modalities: Sequence[str] = _ALL,
        modality_weights: Mapping[str, float] | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        bad = [m for m in modalities if m not in _ALL]
        if bad or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {_ALL}, got {modalities}")
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.modalities = tuple(modalities)
        weights = dict(modality_weights or {})
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.tokenizer = tokenizer
        self._val_counters: dict[str, ErrorCounter] = {}

    # ------------------------------------------------------------------ forward and loss
    def _available(self, batch: Mapping[str, Any]) -> tuple[str, ...]:
        has_a, has_v = batch.get("audio") is not None, batch.get("video") is not None
        ok = {"audio": has_a, "video": has_v, "audiovisual": has_a and has_v}
        return tuple(m for m in self.modalities if ok[m])

    def _losses(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                         dict[str, Any]]:
        modalities = self._available(batch)
        if not modalities:
            raise ValueError(f"batch {batch['ids'][:3]}... has no stream for {self.modalities}")
        dec_in, dec_in_lengths = self.loss.decoder_inputs(batch["tokens"], batch["token_lengths"])
        out = self.model.forward_unified(
            batch.get("audio"), batch["audio_lengths"], batch.get("video"),
            batch["video_lengths"], dec_in, dec_in_lengths, modalities=modalities,
        )
        total = torch.zeros((), device=batch["tokens"].device)
        logs: dict[str, torch.Tensor] = {}
        for m, o in out.items():
            tokens = batch["tokens"].index_select(0, o.index)
            token_lengths = batch["token_lengths"].index_select(0, o.index)
            parts = self.loss(o.ctc_log_probs, o.enc_lengths, o.decoder_logits, tokens,
                              token_lengths)
            total = total + self.modality_weights[m] * parts["loss"]
            for k, v in parts.items():
                logs[f"{k}_{m}"] = v.detach()
        logs["loss"] = total.detach()
        return total, logs, out

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch["ids"]:
            return None  # every item was an unreadable file: counted by the dataset, skip step
        loss, logs, _ = self._losses(batch)
        bs = len(batch["ids"])
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "loss"}, batch_size=bs,
                      prog_bar=False, on_step=True, on_epoch=False)
        self.log("train/loss", logs["loss"], batch_size=bs, prog_bar=True, on_step=True)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if opt is not None:
            self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_counters = {m: ErrorCounter() for m in self.modalities}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        if not batch["ids"]:
            return
        _, logs, out = self._losses(batch)
        bs = len(batch["ids"])
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, batch_size=bs,
                      on_step=False, on_epoch=True, sync_dist=True)
        if self.tokenizer is None:
            return
        # Greedy CTC WER is cheap and tracks the final beam/attention WER closely enough to
        # select checkpoints; the full decoding matrix is avsr.evaluate's job.
        for m, o in out.items():
            hyps = ctc_greedy(o.ctc_log_probs, o.enc_lengths, self.tokenizer.blank_id)
            idx = o.index.tolist()
            self._val_counters[m].update([batch["texts"][i] for i in idx],
                                         [self.tokenizer.decode(h) for h in hyps],
                                         [batch["ids"][i] for i in idx])

    def on_validation_epoch_end(self) -> None:
        if not self._val_counters:
            return
        wers = []
        for m, c in self._val_counters.items():
            counts = torch.tensor([c.edits, c.words], dtype=torch.float64, device=self.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(counts)  # sum edits and words: exact corpus WER across ranks
            if counts[1] > 0:
                w = float(counts[0] / counts[1])
                wers.append(w)
                self.log(f"val/wer_{m}", w, prog_bar=True, sync_dist=False)
        if wers:
            self.log("val/wer", sum(wers) / len(wers), prog_bar=True, sync_dist=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=max(1, total))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
