"""BRAVEn / USR self-distillation pre-training (Haliassos et al., "BRAVEn: Improving
Self-Supervised Pre-training for Visual and Auditory Speech Recognition", ICASSP 2024;
"Unified Speech Recognition", NeurIPS 2024, §pre-training; REFERENCE.md §2.1 (a)).

One span mask (p 0.4, 3 frames) zeroes video frames and the matching audio samples; the
student runs A, V and AV on the masked input through the shared encoder; an EMA teacher of
the encoder side (front-ends, fusion, encoder) sees the unmasked audio-visual input; its
targets are the instance-normalised mean of all encoder block outputs; a shared predictor
with a mask token maps each student stream to the targets; the loss is the negative cosine
similarity on masked frames, weighted per modality (V 0.3, A 0.7, AV 0.7).

Every step also logs ``teacher_rank``, the effective rank (RankMe) of the teacher's block mean
on the valid frames before its normalisation: the teacher runs without dropout and follows the
student, so a rank falling towards 1 shows a collapsing encoder whatever the loss says. (The
normalised targets and the student's dropout-noised states are no such gauge: normalising
every channel to unit variance, and noise, both raise the rank.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avsr.modalities import MODALITIES, SAMPLES_PER_FRAME
from avsr.metrics.rank import rankme
from avsr.models.ema import EMATeacher, cosine_momentum
from avsr.models.predictor import MaskedPredictor
from avsr.objectives.base import Objective
from avsr.objectives.masking import span_mask, valid_mask, zero_frames

__all__ = ["BRAVEnObjective", "instance_norm", "negative_cosine"]



def instance_norm(x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise (B, T, D) over time per item and channel, using valid frames only.

    Returns zeros past each length.
    """
    valid = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    count = valid.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * valid).sum(1, keepdim=True) / count
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * valid


def negative_cosine(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
    """Mean of −cos(pred_t, target_t) over frames where ``mask`` (B, T) is True."""
    cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)  # (B, T)
    n = mask.sum()
    if n == 0:
        return (pred.sum() * 0.0).float()
    return -(cos * mask).sum() / n


class BRAVEnObjective(Objective):
    """Self-distillation objective; :meth:`bind` attaches it to the model it trains.

    Args:
        mask_prob: fraction of frames masked (USR: 0.4).
        mask_span: frames per span (USR: 3).
        modalities: student streams.
        modality_weights: loss weight of each stream (USR: V 0.3, A 0.7, AV 0.7).
        teacher_modality: what the teacher sees (USR: ``audiovisual``; ``audio`` / ``video``
            for Pan et al.-style unimodal pre-training).
        predictor_layers, predictor_heads, predictor_dim: the shared predictor.
        momentum_start, momentum_end: EMA momentum cosine schedule (0.999 → 1).
        normalise_blocks: instance-normalise every block output before the mean as well as
            the mean (data2vec's targets, Baevski et al., ICML 2022), so that no block's scale
            dominates the average; ``False``: the mean only (USR).
    """

    # the encoder side only: the decoder and CTC head stay as they are
    frozen_parts = ("decoder", "ctc")

    def __init__(
        self,
        mask_prob: float = 0.4,
        mask_span: int = 3,
        modalities: Sequence[str] = MODALITIES,
        modality_weights: Mapping[str, float] | None = None,
        teacher_modality: str = "audiovisual",
        predictor_layers: int = 2,
        predictor_heads: int = 4,
        predictor_dim: int | None = None,
        momentum_start: float = 0.999,
        momentum_end: float = 1.0,
        normalise_blocks: bool = False,
    ) -> None:
        super().__init__()
        self.mask_prob = mask_prob
        self.mask_span = mask_span
        self.modalities = tuple(modalities)
        weights = dict(modality_weights or {"audio": 0.7, "video": 0.3, "audiovisual": 0.7})
        self.modality_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}
        self.teacher_modality = teacher_modality
        self.predictor_cfg = (predictor_layers, predictor_heads, predictor_dim)
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end
        self.normalise_blocks = normalise_blocks
        self.teacher: EMATeacher | None = None
        self.predictor: MaskedPredictor | None = None

    def bind(self, model: nn.Module) -> None:
        """Build the EMA teacher (encoder side only) and the predictor for ``model``."""
        d = model.encoder.d_model
        layers, heads, width = self.predictor_cfg
        self.predictor = MaskedPredictor(d, width or d, layers, heads, output_dim=d)
        self.teacher = EMATeacher(model, exclude=("decoder", "ctc"))

    def momentum(self, step: int, total_steps: int) -> float:
        return cosine_momentum(step, total_steps, self.momentum_start, self.momentum_end)

    def update_teacher(self, model: nn.Module, step: int, total_steps: int) -> float:
        m = self.momentum(step, total_steps)
        assert self.teacher is not None, "call bind(model) first"
        self.teacher.update(model, m)
        return m

    @torch.no_grad()
    def targets(self, audio, audio_lengths, video, video_lengths
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Instance-normalised mean of the teacher's block outputs (each normalised first with
        ``normalise_blocks``) on unmasked input."""
        mean, lengths = self.teacher_states(audio, audio_lengths, video, video_lengths)
        return instance_norm(mean, lengths), lengths

    @torch.no_grad()
    def teacher_states(self, audio, audio_lengths, video, video_lengths
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean of the teacher's block outputs (B, T, D) before the targets' last
        normalisation, and the lengths (B,)."""
        assert self.teacher is not None, "call bind(model) first"
        teacher = self.teacher.model
        _, lengths, blocks = teacher.encode_modality(audio, audio_lengths, video, video_lengths,
                                                     self.teacher_modality, return_hidden=True)
        if not blocks:
            raise ValueError(f"no block outputs collected from {type(teacher.encoder).__name__}")
        if self.normalise_blocks:
            blocks = [instance_norm(b, lengths) for b in blocks]
        return torch.stack(blocks).mean(0), lengths

    def forward(self, model: nn.Module, batch: Mapping[str, Any],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss of one batch: ``loss`` and ``loss_<modality>``, plus ``mask_fraction``."""
        assert self.predictor is not None, "call bind(model) first"
        audio, video = batch.get("audio"), batch.get("video")
        a_len, v_len = batch["audio_lengths"], batch["video_lengths"]
        states, t_len = self.teacher_states(audio, a_len, video, v_len)
        target = instance_norm(states, t_len)
        frames = target.shape[1]
        mask = span_mask(t_len, frames, self.mask_prob, self.mask_span, generator)
        mask = mask.to(target.device) & valid_mask(t_len, frames)
        m_video, m_audio = zero_frames(video, audio, mask, SAMPLES_PER_FRAME)
        out = model.forward_unified(m_audio, a_len, m_video, v_len, modalities=self.modalities)
        total = target.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for m, o in out.items():
            t = min(o.enc.shape[1], frames)
            idx = o.index
            pred, _ = self.predictor(o.enc[:, :t], o.enc_lengths, mask.index_select(0, idx)[:, :t])
            loss = negative_cosine(pred, target.index_select(0, idx)[:, :t],
                                   mask.index_select(0, idx)[:, :t]
                                   & valid_mask(o.enc_lengths, t))
            total = total + self.modality_weights[m] * loss
            logs[f"loss_{m}"] = loss.detach()
        logs["loss"] = total
        logs["teacher_rank"] = rankme(states[valid_mask(t_len, frames)])
        logs["mask_fraction"] = (mask.sum() / t_len.sum().clamp(min=1)).float().detach()
        return logs
