"""Word classification (LRW): front-end → fusion → the model's encoder as the temporal
back-end → pooled classifier.

Pan et al. (ACL 2022) train their visual front-end on LRW word classification before the
sentence-level stages (front-end, temporal convolution back-end, mean pooling, MLP to 500
words; the head is discarded afterwards); auto_avsr offers the same LRW front-end transfer.
The model's decoder and CTC head, if any, are unused (set them to null in the experiment);
``python -m avsr.export_frontend`` exports the trained front-end for a sentence run.

Options from the LRW literature (Ma et al., "Training Strategies for Improved Lip-Reading",
ICASSP 2022): label smoothing, mixup (inputs and word boundaries mixed with λ ~ Beta(α, α),
loss λ·CE(y_a) + (1 − λ)·CE(y_b)) and the word boundary as an extra input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from avsr.models.streams import stack_streams
from avsr.models.word_backend import BoundaryEmbedding
from avsr.objectives.base import Objective, check_modalities, stream_weights

__all__ = ["WordClassificationObjective"]


class WordClassificationObjective(Objective):
    """Cross-entropy of a word classifier over the model's encoder side.

    Args:
        head: ``((B, T, D), lengths) -> logits (B, num_classes)``
            (:class:`~avsr.models.word_backend.WordHead`).
        modalities: streams trained (and scored) every step.
        modality_weights: loss weight of each stream.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: mixup Beta(α, α) parameter; 0 disables.
        use_boundary: add the word boundary (``batch["boundaries"]``) to the fused features
            before the back-end (:class:`~avsr.models.word_backend.BoundaryEmbedding`).

    Logged: ``loss`` and ``loss_<m>``; its outputs feed the accuracy evaluator.
    """

    frozen_parts = ()

    def __init__(
        self,
        *,
        head: nn.Module,
        modalities: Sequence[str] = ("video",),
        modality_weights: Mapping[str, float] | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        use_boundary: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = check_modalities(modalities)
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
        self.head = head
        self.boundary = BoundaryEmbedding(head.d_model) if use_boundary else None
        self.modality_weights = stream_weights(self.modalities, modality_weights)
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha

    # ------------------------------------------------------------------ forward
    def logits(self, model: nn.Module, batch: Mapping[str, Any]
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Logits of every stream the batch can run.

        Returns:
            ``{modality: (index (B_m,) rows of the batch, logits (B_m, num_classes))}``.
        """
        feats = model.embed(batch.get("audio"), batch["audio_lengths"], batch.get("video"),
                            batch["video_lengths"], self.modalities)
        streams = model.fuse_streams(feats, self.modalities)
        if not streams:
            raise ValueError(f"batch {batch['ids'][:3]}... has no stream for {self.modalities}")
        if self.boundary is not None:  # the word's boundary, between fusion and back-end
            streams = [s._replace(x=self.boundary(s.x, batch["boundaries"].index_select(
                0, s.index))) for s in streams]
        fused = stack_streams(streams)
        enc, enc_lengths = model.encode(fused.x, fused.lengths)
        logits = fused.split(self.head(enc, enc_lengths))
        index = fused.split(fused.index)
        return {m: (index[m], logits[m]) for m in fused.modalities}

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def _mixup(self, batch: Mapping[str, Any]) -> tuple[dict[str, Any], torch.Tensor, float]:
        """Mix every item with a random partner; returns (batch, partner rows, λ)."""
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        perm = torch.randperm(len(batch["ids"]), device=batch["labels"].device)
        mixed = dict(batch)
        for key in ("video", "audio", "boundaries"):
            if batch.get(key) is not None:
                mixed[key] = lam * batch[key] + (1.0 - lam) * batch[key].index_select(0, perm)
        for key in ("video_lengths", "audio_lengths"):
            mixed[key] = torch.maximum(batch[key], batch[key].index_select(0, perm))
        return mixed, perm, lam

    # ------------------------------------------------------------------ the protocol
    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        perm, lam = None, 1.0
        if self.mixup_alpha > 0:
            batch, perm, lam = self._mixup(batch)
        total = torch.zeros((), device=labels.device)
        logs: dict[str, torch.Tensor] = {}
        for mod, (index, logits) in self.logits(model, batch).items():
            loss = lam * self._ce(logits, labels.index_select(0, index))
            if perm is not None:
                partner = labels.index_select(0, perm).index_select(0, index)
                loss = loss + (1.0 - lam) * self._ce(logits, partner)
            total = total + self.modality_weights[mod] * loss
            logs[f"loss_{mod}"] = loss.detach()
        return {**logs, "loss": total}

    def evaluate(self, model: nn.Module, batch: Mapping[str, Any],
                 generator: torch.Generator | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Per-stream cross-entropy (no mixup) and the logits, which the accuracy evaluator
        scores."""
        out = self.logits(model, batch)
        logs = {f"loss_{m}": self._ce(logits, batch["labels"].index_select(0, index))
                for m, (index, logits) in out.items()}
        return logs, out
