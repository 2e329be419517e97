"""AV-HuBERT masked multimodal cluster prediction (Shi et al., "Learning Audio-Visual Speech
Representation by Masked Multimodal Cluster Prediction", ICLR 2022; REFERENCE.md §1.4, §2.3),
with Zhang et al. 2022's contextual fusion masking as an option.

Masking ``level``:

- ``"input"`` (AV-HuBERT's final iteration): audio spans (p 0.8, 10 frames) of the audio
  front-end's output are replaced by a learned ``audio_mask_emb``; video spans (p 0.3, 5
  frames) are filled with frames of another segment of the same clip (``same_seq``), of another
  clip (``same_other_seq``), a learned ``video_mask_emb`` on the video features
  (``learned``) or zeros (``zeros``). The loss mask is the union of both.
- ``"feature"`` (iterations 1–4): one span mask (p 0.8, 10) after fusion, filled with a learned
  embedding of the encoder's width.

Modality dropout is the fusion module's (``model.fusion.p_modality`` / ``p_audio``). With
``p_mask_audio_stream`` / ``p_mask_video_stream`` > 0, some items have a whole stream masked
(Zhang et al.'s flexible masking), at either level: at ``"input"`` the stream's front-end
output is filled on every frame (audio: ``audio_mask_emb``; video: ``video_mask_emb``, zeros
with ``video_fill="zeros"``); at ``"feature"`` the stream is made absent for the item (length
0), so the fusion fills it as it fills a modality missing at inference (``model.fusion.missing``:
zeros or learned), and the span mask follows after fusion. Their loss covers every frame: the
other stream and the context must predict the lost one (one pre-trained model for A, V, AV).

Head: encoder output → Linear(D, ``proj_dim``) → cosine similarity against learned cluster
embeddings / ``temperature`` (0.1) → cross-entropy with the k-means labels; masked frames weigh
1 and unmasked frames ``unmasked_weight`` (AV-HuBERT's ``pred_nomask_weight``: 0 for Base).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsr.objectives.base import Objective
from avsr.objectives.masking import (
    fill_embedding, span_mask, stream_mask, substitute_frames, valid_mask,
)
from avsr.ssl.labels import IGNORE, ClusterLabels

__all__ = ["AVHuBERTObjective", "ClusterHead"]

VIDEO_FILLS = ("same_seq", "same_other_seq", "learned", "zeros")


class ClusterHead(nn.Module):
    """Cosine-similarity logits against cluster embeddings (AV-HuBERT's ``final_proj`` and
    ``label_embs_concat``).

    Args:
        d_model: encoder width D.
        num_clusters: K.
        proj_dim: projection and embedding size (AV-HuBERT: 256).
        temperature: logits = cos / temperature (AV-HuBERT: 0.1).
    """

    def __init__(self, d_model: int, num_clusters: int, proj_dim: int = 256,
                 temperature: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, proj_dim)
        self.embeddings = nn.Parameter(torch.empty(num_clusters, proj_dim))
        nn.init.uniform_(self.embeddings)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, K) logits."""
        z = F.normalize(self.proj(x).float(), dim=-1)
        e = F.normalize(self.embeddings.float(), dim=-1)
        return z @ e.t() / self.temperature


class AVHuBERTObjective(Objective):
    """Masked cluster prediction; :meth:`bind` sizes its parameters for the model.

    Args:
        label_dir: per-utterance label files (``python -m avsr.ssl.kmeans``).
        label_rate: labels per second (None: from ``kmeans.json``).
        num_clusters: K (None: from ``kmeans.json``).
        level: ``"input"`` or ``"feature"`` (see the module docstring).
        audio_mask_prob, audio_mask_span: audio spans (input level), AV-HuBERT 0.8 / 10.
        video_mask_prob, video_mask_span: video spans (input level), AV-HuBERT 0.3 / 5.
        video_fill: ``same_seq``, ``same_other_seq``, ``learned`` or ``zeros``.
        feature_mask_prob, feature_mask_span: feature-level spans, AV-HuBERT 0.8 / 10.
        p_mask_audio_stream, p_mask_video_stream: Zhang et al.'s whole-stream masking.
        unmasked_weight: loss weight of unmasked frames.
        proj_dim, temperature: :class:`ClusterHead`.
        modality: what the model sees (``audiovisual``; ``audio`` or ``video`` for unimodal
            pre-training of one front-end, Pan et al.).
    """

    # the encoder side only: the decoder and CTC head stay as they are
    frozen_parts = ("decoder", "ctc")

    def __init__(
        self,
        label_dir: str,
        label_rate: float | None = None,
        num_clusters: int | None = None,
        level: str = "input",
        audio_mask_prob: float = 0.8,
        audio_mask_span: int = 10,
        video_mask_prob: float = 0.3,
        video_mask_span: int = 5,
        video_fill: str = "same_seq",
        feature_mask_prob: float = 0.8,
        feature_mask_span: int = 10,
        p_mask_audio_stream: float = 0.0,
        p_mask_video_stream: float = 0.0,
        unmasked_weight: float = 0.0,
        proj_dim: int = 256,
        temperature: float = 0.1,
        modality: str = "audiovisual",
    ) -> None:
        super().__init__()
        if level not in ("input", "feature"):
            raise ValueError(f"level must be 'input' or 'feature', got {level!r}")
        if video_fill not in VIDEO_FILLS:
            raise ValueError(f"video_fill must be one of {VIDEO_FILLS}, got {video_fill!r}")
        self.label_dir, self.label_rate, self.num_clusters = label_dir, label_rate, num_clusters
        self.labels: ClusterLabels | None = None
        self.modalities = (modality,)
        self.level = level
        self.audio_mask = (audio_mask_prob, audio_mask_span)
        self.video_mask = (video_mask_prob, video_mask_span)
        self.video_fill = video_fill
        self.feature_mask = (feature_mask_prob, feature_mask_span)
        self.p_stream = (p_mask_audio_stream, p_mask_video_stream)
        self.unmasked_weight = unmasked_weight
        self.head_cfg = (proj_dim, temperature)
        self.modality = modality
        self.head: ClusterHead | None = None

    def bind(self, model: nn.Module) -> None:
        """Create the head and the mask embeddings for ``model``'s sizes."""
        self.labels = ClusterLabels(self.label_dir, self.label_rate, self.num_clusters)
        proj_dim, temperature = self.head_cfg
        self.head = ClusterHead(model.encoder.d_model, self.labels.num_clusters, proj_dim,
                                temperature)
        fusion = model.fusion
        self.audio_mask_emb = nn.Parameter(torch.empty(fusion.audio_dim).uniform_())
        self.video_mask_emb = nn.Parameter(torch.empty(fusion.video_dim).uniform_())
        self.feature_mask_emb = nn.Parameter(torch.empty(model.encoder.d_model).uniform_())

    @staticmethod
    def _drop_whole_streams(feats: Any, whole_a: torch.Tensor, whole_v: torch.Tensor
                            ) -> tuple[Any, torch.Tensor]:
        """The chosen items' audio or video made absent (length 0), so that the fusion fills
        it exactly as it fills a modality missing at inference; returns the features and the
        (B,) items that lost a stream."""
        lost = torch.zeros_like(whole_a)
        if feats.audio is not None:
            whole_a = whole_a.to(feats.audio_lengths.device)
            feats = feats._replace(audio_lengths=feats.audio_lengths.masked_fill(whole_a, 0))
            lost = lost | whole_a.to(lost.device)
        if feats.video is not None:
            whole_v = whole_v.to(feats.video_lengths.device)
            feats = feats._replace(video_lengths=feats.video_lengths.masked_fill(whole_v, 0))
            lost = lost | whole_v.to(lost.device)
        return feats, lost

    def update_teacher(self, model: nn.Module, step: int, total_steps: int) -> None:
        """No teacher: targets are fixed k-means labels."""
        return None

    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss of one batch: ``loss``, ``loss_masked``, ``loss_unmasked``, ``acc_masked``."""
        assert self.head is not None and self.labels is not None, "call bind(model) first"
        use_a = self.modality in ("audio", "audiovisual")
        use_v = self.modality in ("video", "audiovisual")
        audio = batch.get("audio") if use_a else None
        video = batch.get("video") if use_v else None
        a_len = batch["audio_lengths"] if use_a else None
        v_len = batch["video_lengths"] if use_v else None
        if audio is None and video is None:
            raise ValueError(f"batch has no input for modality {self.modality!r}")
        if video is not None and self.level == "input" and self.video_fill in (
                "same_seq", "same_other_seq"):
            v_mask = span_mask(v_len, video.shape[1], *self.video_mask, generator=generator)
            video = substitute_frames(video, v_len, v_mask, self.video_fill, generator)
        else:
            v_mask = None
        feats = model.embed(audio, a_len, video, v_len, (self.modality,))
        a, a_len, v, v_len = feats.audio, feats.audio_lengths, feats.video, feats.video_lengths
        ref = a if a is not None else v
        batch_size, frames = ref.shape[0], min(x.shape[1] for x in (a, v) if x is not None)
        lengths = torch.stack([x.clamp(max=frames) for x in (a_len, v_len) if x is not None]
                              ).min(0).values
        loss_mask = torch.zeros(batch_size, frames, dtype=torch.bool, device=ref.device)
        if self.level == "input":
            whole_a, whole_v = stream_mask(batch_size, *self.p_stream, generator, ref.device)
            full = valid_mask(lengths, frames)
            if a is not None:
                am = span_mask(a_len, a.shape[1], *self.audio_mask, generator=generator)
                am = am.to(ref.device)
                am[:, :frames] |= whole_a.unsqueeze(1) & full
                a = fill_embedding(a, am, self.audio_mask_emb)
                loss_mask |= am[:, :frames]
            if v is not None:
                if v_mask is None:
                    v_mask = span_mask(v_len, v.shape[1], *self.video_mask, generator=generator)
                    v_mask = v_mask.to(ref.device)
                    if self.video_fill == "learned":
                        fill = self.video_mask_emb
                    else:
                        fill = torch.zeros_like(self.video_mask_emb)
                    v_full = v_mask.clone()
                    v_full[:, :frames] |= whole_v.unsqueeze(1) & full
                    v = fill_embedding(v, v_full, fill)
                    v_mask = v_full
                else:
                    v_mask = v_mask.to(ref.device)
                    # whole-stream masking of substituted video: the learned embedding
                    v_whole = torch.zeros_like(v_mask)
                    v_whole[:, :frames] = whole_v.unsqueeze(1) & full
                    v = fill_embedding(v, v_whole, self.video_mask_emb)
                    v_mask = v_mask | v_whole
                loss_mask |= v_mask[:, :frames]
        feats = feats._replace(audio=a, video=v)  # the masked features, if any
        whole = None
        if self.level == "feature" and any(self.p_stream):
            # whole-stream masking at feature level: the lost stream is absent for the fusion,
            # as at inference with one modality (the draw only when asked for, so that
            # AV-HuBERT's own feature masking keeps its random sequence)
            whole_a, whole_v = stream_mask(batch_size, *self.p_stream, generator, ref.device)
            feats, whole = self._drop_whole_streams(feats, whole_a, whole_v)
        fused = model.fuse(feats, (self.modality,), keep_all=True)
        x, lengths = fused.x, fused.lengths
        if self.level == "feature":
            fm = span_mask(lengths, x.shape[1], *self.feature_mask, generator=generator)
            fm = fm.to(x.device)
            x = fill_embedding(x, fm, self.feature_mask_emb)
            loss_mask = fm
            if whole is not None:  # an item without one stream is predicted on every frame
                loss_mask = fm | (whole.unsqueeze(1) & valid_mask(lengths, x.shape[1]))
        enc, lengths = model.encode(x, lengths)
        frames = enc.shape[1]
        loss_mask = loss_mask[:, :frames] & valid_mask(lengths, frames)
        targets = self.labels.batch(batch["ids"], frames, lengths).to(enc.device)
        logits = self.head(enc)  # (B, T, K)
        ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE,
                             reduction="none")  # (B, T)
        has = targets != IGNORE
        masked, unmasked = loss_mask & has, ~loss_mask & has
        loss_m = (ce * masked).sum() / masked.sum().clamp(min=1)
        loss_u = (ce * unmasked).sum() / unmasked.sum().clamp(min=1)
        loss = loss_m + self.unmasked_weight * loss_u if self.unmasked_weight else loss_m
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets) & masked
            acc = correct.sum() / masked.sum().clamp(min=1)
        return {"loss": loss, "loss_masked": loss_m.detach(), "loss_unmasked": loss_u.detach(),
                "acc_masked": acc.float(),
                "mask_fraction": (masked.sum() / has.sum().clamp(min=1)).float()}
