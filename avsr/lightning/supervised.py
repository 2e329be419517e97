"""Supervised stage: one unified model trained on audio, video and audio-visual input at once.

As in USR (Haliassos et al., NeurIPS 2024), every step runs all three modality streams through
the same encoder and decoder (stacked along the batch) and sums the per-modality hybrid
CTC/attention losses with per-modality weights; there is no random modality sampling.

Under DDP each rank normalises its summed losses by the GLOBAL number of utterances of each
stream (one all-reduce of a few counts per step), so the averaged gradient equals that of one
process on the union of the ranks' batches even though frame-budget batches differ in size.
A step whose loss is NaN or infinite on any rank skips the update on every rank
(:class:`~avsr.lightning.guards.NonFiniteLossGuard`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from avsr.decoding.greedy import ctc_greedy
from avsr.lightning.guards import (GuardedCheckpoint, NonFiniteLossGuard, skipped_step,
                                   sum_across_ranks, world_size, zero_gradient_loss)
from avsr.lightning.optim import configure_step_optimizer
from avsr.metrics.wer import ErrorCounter
from avsr.modalities import MODALITIES
from avsr.objectives.hybrid import HybridCTCAttentionLoss

__all__ = ["SupervisedTask"]

_ALL = MODALITIES


class SupervisedTask(GuardedCheckpoint, pl.LightningModule):
    """Trains an injected :class:`~avsr.models.avsr_model.AVSRModel` with the hybrid loss.

    Args:
        model: the unified model (built by Hydra from ``model/``).
        loss: hybrid CTC/attention loss.
        optimizer: optimiser factory taking the parameters (``_partial_`` config).
        scheduler: factory taking ``(optimizer, total_steps=...)``, stepped every update, or None.
        modalities: streams trained every step.
        modality_weights: loss weight of each stream.
        tokenizer: turns token ids into text for validation WER.
        max_nonfinite_steps: consecutive NaN/inf-loss steps (updates skipped) that stop the
            run; 0 never stops.
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
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__()
        bad = [m for m in modalities if m not in _ALL]
        if bad or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {_ALL}, got {modalities}")
        self.model = model
        if tokenizer is not None:
            loss.bind_tokenizer(tokenizer)
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.modalities = tuple(modalities)
        weights = dict(modality_weights or {})
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.tokenizer = tokenizer
        self._val_counters: dict[str, ErrorCounter] = {}
        self.nonfinite_guard = NonFiniteLossGuard(max_nonfinite_steps)

    # ------------------------------------------------------------------ forward and loss
    def _available(self, batch: Mapping[str, Any]) -> tuple[str, ...]:
        has_a, has_v = batch.get("audio") is not None, batch.get("video") is not None
        ok = {"audio": has_a, "video": has_v, "audiovisual": has_a and has_v}
        return tuple(m for m in self.modalities if ok[m])

    def _losses(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                         dict[str, Any]]:
        parts, out = self._stream_losses(batch)
        total, logs = self._combine(parts)
        return total, logs, out

    def _stream_losses(self, batch: Mapping[str, Any]) -> tuple[dict[str, dict[str, torch.Tensor]],
                                                                dict[str, Any]]:
        """Hybrid loss parts of every stream (each normalised by the stream's local size)."""
        modalities = self._available(batch)
        if not modalities:
            raise ValueError(f"batch {batch['ids'][:3]}... has no stream for {self.modalities}")
        dec_in, dec_in_lengths = self.loss.decoder_inputs(batch["tokens"], batch["token_lengths"])
        out = self.model.forward_unified(
            batch.get("audio"), batch["audio_lengths"], batch.get("video"),
            batch["video_lengths"], dec_in, dec_in_lengths, modalities=modalities,
        )
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for m, o in out.items():
            tokens = batch["tokens"].index_select(0, o.index)
            token_lengths = batch["token_lengths"].index_select(0, o.index)
            parts[m] = self.loss(o.ctc_log_probs, o.enc_lengths, o.decoder_logits, tokens,
                                 token_lengths)
            parts[m]["_items"] = o.index.new_tensor(o.index.numel(), dtype=torch.float32)
            parts[m]["_tokens"] = (token_lengths + 1).sum().float()  # targets incl. eos
        return parts, out

    def _combine(self, parts: Mapping[str, Mapping[str, torch.Tensor]],
                 scales: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum over streams; ``scales[m]`` rescales the (CTC, attention) terms."""
        total = torch.zeros((), device=self.device)
        logs: dict[str, torch.Tensor] = {}
        w = self.loss.ctc_weight
        for m, p in parts.items():
            loss = p["loss"]
            if scales is not None:
                s_ctc, s_att = scales[m]
                loss = w * p["loss_ctc"] * s_ctc + (1.0 - w) * p["loss_att"] * s_att
            total = total + self.modality_weights[m] * loss
            for k, v in p.items():
                if not k.startswith("_"):
                    logs[f"{k}_{m}"] = v.detach()
        logs["loss"] = total.detach()
        return total, logs

    def _global_scales(self, parts: Mapping[str, Mapping[str, torch.Tensor]], nonfinite: bool
                       ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], bool]:
        """Per-stream factors turning local means into shares of the global mean, and whether
        any rank's loss is non-finite (one all-reduce).

        A local term is ``sum_r / n_r``; DDP averages gradients over W ranks, so the factor
        ``n_r · W / Σ n`` makes the average ``Σ_r sum_r / Σ n``: the union batch's mean.
        """
        stats = torch.zeros(2 * len(_ALL) + 1, device=self.device)
        for j, m in enumerate(_ALL):
            if m in parts:
                stats[2 * j] = parts[m]["_items"]
                stats[2 * j + 1] = parts[m]["_tokens"]
        stats[-1] = float(nonfinite)
        total = sum_across_ranks(stats)
        ranks = world_size()
        scales = {}
        for j, m in enumerate(_ALL):
            if m in parts:
                s_items = stats[2 * j] * ranks / total[2 * j]
                s_tokens = stats[2 * j + 1] * ranks / total[2 * j + 1]
                scales[m] = (s_items, s_tokens if self.loss.normalize_length else s_items)
        return scales, bool(total[-1] > 0)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        distributed = world_size() > 1
        if not batch["ids"]:
            # every item was an unreadable file (counted by the dataset). Alone: skip the step.
            # Under DDP the other ranks wait for this one's gradients and counts: contribute
            # zero gradients and zero counts, so their global normalisation stays exact.
            if not distributed:
                return None
            _, skip = self._global_scales({}, False)
            self.nonfinite_guard.update(skip, self.global_step)
            return zero_gradient_loss(self)  # skipped or not, DDP needs this rank's part
        parts, _ = self._stream_losses(batch)
        loss, logs = self._combine(parts)
        nonfinite = not bool(torch.isfinite(loss))
        if distributed:
            scales, nonfinite = self._global_scales(parts, nonfinite)
            loss, _ = self._combine(parts, scales)
        skip = self.nonfinite_guard.update(nonfinite, self.global_step)
        self.log("train/nonfinite_skipped", float(self.nonfinite_guard.total), on_step=True,
                 on_epoch=False)
        if skip:
            return skipped_step(self)  # every rank skips together: the flag is global
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
        return configure_step_optimizer(self, self.optimizer_factory, self.scheduler_factory)
