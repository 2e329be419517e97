"""Word-classification stage (LRW): front-end + temporal back-end + classifier.

Pan et al. (ACL 2022) train their visual front-end on LRW word classification before the
sentence-level stages (front-end, temporal convolution back-end, mean pooling, MLP to 500
words; the head is discarded afterwards); auto_avsr offers the same LRW front-end transfer.
This stage trains the encoder side of the injected :class:`~avsr.models.avsr_model.AVSRModel`
(front-ends → fusion → ``encoder`` as the temporal back-end) with a :class:`WordHead`; the
model's decoder and CTC head, if any, are unused (set them to null in the experiment).
``python -m avsr.export_frontend`` then exports the trained front-end for a sentence run.

Options from the LRW literature (Ma et al., "Training Strategies for Improved Lip-Reading",
ICASSP 2022): label smoothing, mixup (inputs and word boundaries mixed with λ ~ Beta(α, α),
loss λ·CE(y_a) + (1 − λ)·CE(y_b)) and the word boundary as an extra input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from avsr.lightning.optim import configure_step_optimizer
from avsr.modalities import MODALITIES
from avsr.models.word_backend import BoundaryEmbedding

__all__ = ["WordClassificationTask"]

_ALL = MODALITIES


def _rows(x: torch.Tensor | None, index: torch.Tensor, use: bool) -> torch.Tensor | None:
    return x.index_select(0, index) if use and x is not None else None


class WordClassificationTask(pl.LightningModule):
    """Trains the encoder side of an injected model as a word classifier.

    Args:
        model: model with ``audio_frontend``, ``video_frontend``, ``fusion`` and ``encoder``
            (an :class:`~avsr.models.avsr_model.AVSRModel`; its encoder is the back-end).
        head: ``((B, T, D), lengths) -> logits (B, num_classes)``
            (:class:`~avsr.models.word_backend.WordHead`).
        optimizer: optimiser factory taking the parameters (``_partial_`` config).
        scheduler: factory taking ``(optimizer, total_steps=...)``, stepped every update, or None.
        modalities: streams trained (and scored) every step, a subset of audio, video,
            audiovisual.
        modality_weights: loss weight of each stream.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: mixup Beta(α, α) parameter; 0 disables.
        use_boundary: add the word boundary (``batch["boundaries"]``) to the fused features
            before the back-end (:class:`~avsr.models.word_backend.BoundaryEmbedding`).
        tokenizer: the :class:`~avsr.data.lrw.WordVocabulary` (class names; unused here).

    Logged: ``train/loss``, ``train/loss_<m>``, ``val/loss_<m>``, ``val/acc_<m>`` (top-1),
    ``val/acc`` (mean over streams, for checkpoint selection), ``test/acc_<m>``.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        head: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        modalities: Sequence[str] = ("video",),
        modality_weights: Mapping[str, float] | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        use_boundary: bool = False,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        bad = [m for m in modalities if m not in _ALL]
        if bad or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {_ALL}, got {modalities}")
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
        self.model = model
        self.head = head
        self.boundary = BoundaryEmbedding(head.d_model) if use_boundary else None
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.modalities = tuple(modalities)
        weights = dict(modality_weights or {})
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.tokenizer = tokenizer
        self._counts: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Any],
                modalities: Sequence[str] | None = None) -> dict[str, tuple[torch.Tensor,
                                                                             torch.Tensor]]:
        """Logits of every stream the batch can run.

        Returns:
            ``{modality: (index (B_m,) rows of the batch, logits (B_m, num_classes))}``.
        """
        modalities = tuple(modalities or self.modalities)
        m = self.model
        audio, video = batch.get("audio"), batch.get("video")
        a_len0, v_len0 = batch["audio_lengths"], batch["video_lengths"]
        want_a = audio is not None and any(x in ("audio", "audiovisual") for x in modalities)
        want_v = video is not None and any(x in ("video", "audiovisual") for x in modalities)
        a, a_len = m.audio_frontend(audio, a_len0) if want_a else (None, None)
        v, v_len = m.video_frontend(video, v_len0) if want_v else (None, None)
        streams = []
        for mod in modalities:
            use_a, use_v = mod in ("audio", "audiovisual"), mod in ("video", "audiovisual")
            if (use_a and a is None) or (use_v and v is None):
                continue
            keep = torch.ones(len(batch["ids"]), dtype=torch.bool, device=self.device)
            keep = keep & (a_len0 > 0) if use_a else keep
            keep = keep & (v_len0 > 0) if use_v else keep
            index = keep.nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            x, lengths = m.fusion(_rows(a, index, use_a), _rows(v, index, use_v),
                                  _rows(a_len, index, use_a), _rows(v_len, index, use_v))
            if self.boundary is not None:
                x = self.boundary(x, batch["boundaries"].index_select(0, index))
            streams.append((mod, index, x, lengths))
        if not streams:
            raise ValueError(f"batch {batch['ids'][:3]}... has no stream for {modalities}")
        frames = max(s[2].shape[1] for s in streams)
        x = torch.cat([nn.functional.pad(s[2], (0, 0, 0, frames - s[2].shape[1]))
                       for s in streams])
        enc, enc_lengths = m.encoder(x, torch.cat([s[3] for s in streams]))
        logits = self.head(enc, enc_lengths)
        out, start = {}, 0
        for mod, index, _, _ in streams:
            out[mod] = (index, logits[start:start + index.numel()])
            start += index.numel()
        return out

    # ------------------------------------------------------------------ training
    def _mixup(self, batch: Mapping[str, Any]) -> tuple[dict[str, Any], torch.Tensor, float]:
        """Mix every item with a random partner; returns (batch, partner rows, λ)."""
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        perm = torch.randperm(len(batch["ids"]), device=self.device)
        mixed = dict(batch)
        for key in ("video", "audio", "boundaries"):
            if batch.get(key) is not None:
                mixed[key] = lam * batch[key] + (1.0 - lam) * batch[key].index_select(0, perm)
        for key in ("video_lengths", "audio_lengths"):
            mixed[key] = torch.maximum(batch[key], batch[key].index_select(0, perm))
        return mixed, perm, lam

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if not batch["ids"]:
            return None
        labels = batch["labels"]
        perm, lam = None, 1.0
        if self.mixup_alpha > 0:
            batch, perm, lam = self._mixup(batch)
        total = torch.zeros((), device=self.device)
        bs = len(batch["ids"])
        for mod, (index, logits) in self.forward(batch).items():
            loss = lam * self._ce(logits, labels.index_select(0, index))
            if perm is not None:
                partner = labels.index_select(0, perm).index_select(0, index)
                loss = loss + (1.0 - lam) * self._ce(logits, partner)
            total = total + self.modality_weights[mod] * loss
            self.log(f"train/loss_{mod}", loss.detach(), batch_size=bs, on_step=True,
                     on_epoch=False)
        self.log("train/loss", total.detach(), batch_size=bs, prog_bar=True, on_step=True)
        return total

    # ------------------------------------------------------------------ evaluation
    def _start(self) -> None:
        self._counts = {m: torch.zeros(2, dtype=torch.float64, device=self.device)
                        for m in self.modalities}

    def _score(self, batch: Mapping[str, Any], prefix: str) -> None:
        if not batch["ids"]:
            return
        for mod, (index, logits) in self.forward(batch).items():
            labels = batch["labels"].index_select(0, index)
            correct = (logits.argmax(-1) == labels).sum()
            self._counts[mod] += torch.stack([correct.double(), labels.new_tensor(
                labels.numel()).double()])
            self.log(f"{prefix}/loss_{mod}", self._ce(logits, labels), batch_size=labels.numel(),
                     on_step=False, on_epoch=True, sync_dist=True)

    def _end(self, prefix: str) -> None:
        accs = []
        for mod, counts in self._counts.items():
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(counts)  # sum correct and total: exact accuracy across ranks
            if counts[1] > 0:
                acc = float(counts[0] / counts[1])
                accs.append(acc)
                self.log(f"{prefix}/acc_{mod}", acc, prog_bar=True, sync_dist=False)
        if accs:
            self.log(f"{prefix}/acc", sum(accs) / len(accs), sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        self._start()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._score(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_start(self) -> None:
        self._start()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._score(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._end("test")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        return configure_step_optimizer(self, self.optimizer_factory, self.scheduler_factory)
