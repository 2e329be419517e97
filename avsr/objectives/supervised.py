"""Supervised training of the unified model: the hybrid CTC/attention loss on every stream.

As in USR (Haliassos et al., NeurIPS 2024), every step runs the audio, video and audio-visual
streams through the same encoder and decoder (stacked along the batch) and sums the
per-stream hybrid losses with per-stream weights; there is no random modality sampling.

Under DDP each rank normalises its summed losses by the GLOBAL number of utterances (and
target tokens) of each stream, one all-reduce of a few counts per step, so the averaged
gradient equals that of one process on the union of the ranks' batches even though
frame-budget batches differ in size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from avsr.modalities import MODALITIES
from avsr.objectives.base import (Objective, available_modalities, check_modalities,
                                  stream_weights)
from avsr.objectives.hybrid import HybridCTCAttentionLoss
from avsr.utils.distributed import sum_across_ranks, world_size

__all__ = ["SupervisedObjective"]

Parts = dict[str, dict[str, torch.Tensor]]


class SupervisedObjective(Objective):
    """The hybrid CTC/attention loss of each stream, weighted and summed.

    Args:
        loss: the hybrid loss (its special ids come from the tokenizer: :meth:`bind_tokenizer`).
        modalities: streams trained every step.
        modality_weights: loss weight of each stream (1.0 where unset).

    Logged: ``loss``, and ``loss_ctc_<m>``, ``loss_att_<m>``, ``loss_<m>``... of each stream.
    """

    def __init__(
        self,
        *,
        loss: HybridCTCAttentionLoss,
        modalities: Sequence[str] = MODALITIES,
        modality_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = check_modalities(modalities)
        self.modality_weights = stream_weights(self.modalities, modality_weights)
        self.loss = loss

    def bind_tokenizer(self, tokenizer: Any) -> None:
        """Take blank, sos and eos from the tokenizer (:meth:`HybridCTCAttentionLoss.
        bind_tokenizer`)."""
        self.loss.bind_tokenizer(tokenizer)

    # ------------------------------------------------------------------ per-stream parts
    def stream_losses(self, model: nn.Module, batch: Mapping[str, Any]
                      ) -> tuple[Parts, dict[str, Any]]:
        """Hybrid loss parts of every stream (each normalised by the stream's local size) and
        the model's per-stream outputs.

        Raises:
            ValueError: the batch has no medium any of the streams can run.
        """
        modalities = available_modalities(batch, self.modalities)
        if not modalities:
            raise ValueError(f"batch {batch['ids'][:3]}... has no stream for {self.modalities}")
        dec_in, dec_in_lengths = self.loss.decoder_inputs(batch["tokens"], batch["token_lengths"])
        out = model(batch.get("audio"), batch["audio_lengths"], batch.get("video"),
                    batch["video_lengths"], dec_in, dec_in_lengths, modalities=modalities)
        parts: Parts = {}
        for m, o in out.items():
            tokens = batch["tokens"].index_select(0, o.index)
            token_lengths = batch["token_lengths"].index_select(0, o.index)
            parts[m] = self.loss(o.ctc_log_probs, o.enc_lengths, o.decoder_logits, tokens,
                                 token_lengths)
            parts[m]["_items"] = o.index.new_tensor(o.index.numel(), dtype=torch.float32)
            parts[m]["_tokens"] = (token_lengths + 1).sum().float()  # targets incl. eos
        return parts, out

    def combine(self, parts: Mapping[str, Mapping[str, torch.Tensor]],
                scales: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum over streams; ``scales[m]`` rescales the (CTC, attention) terms.

        Returns:
            The total and the detached parts to log (``loss`` is the total).
        """
        if not parts:
            raise ValueError("no stream to combine")
        total = torch.zeros((), device=next(iter(parts.values()))["loss"].device)
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

    def global_scales(self, parts: Mapping[str, Mapping[str, torch.Tensor]], device: Any
                      ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-stream factors turning local means into shares of the global mean (one
        all-reduce).

        A local term is ``sum_r / n_r``; DDP averages gradients over W ranks, so the factor
        ``n_r · W / Σ n`` makes the average ``Σ_r sum_r / Σ n``: the union batch's mean.
        """
        stats = torch.zeros(2 * len(MODALITIES), device=device)
        for j, m in enumerate(MODALITIES):
            if m in parts:
                stats[2 * j] = parts[m]["_items"]
                stats[2 * j + 1] = parts[m]["_tokens"]
        total = sum_across_ranks(stats)
        ranks = world_size()
        scales = {}
        for j, m in enumerate(MODALITIES):
            if m in parts:
                s_items = stats[2 * j] * ranks / total[2 * j]
                s_tokens = stats[2 * j + 1] * ranks / total[2 * j + 1]
                scales[m] = (s_items, s_tokens if self.loss.normalize_length else s_items)
        return scales

    # ------------------------------------------------------------------ the protocol
    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        parts, _ = self.stream_losses(model, batch)
        loss, logs = self.combine(parts)
        if world_size() > 1:
            loss, _ = self.combine(parts, self.global_scales(parts, loss.device))
        return {**logs, "loss": loss}

    def skip_batch(self, model: nn.Module) -> None:
        # the other ranks all-reduce their counts in forward: take part with zeros
        self.global_scales({}, next(model.parameters()).device)

    def evaluate(self, model: nn.Module, batch: Mapping[str, Any],
                 generator: torch.Generator | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Logs of the local (unscaled) loss and the per-stream model outputs, which the
        CTC-greedy WER evaluator reads."""
        parts, out = self.stream_losses(model, batch)
        return self.combine(parts)[1], out
