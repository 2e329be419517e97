"""Early fusion by concatenation, LayerNorm and projection (AV-HuBERT)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["ConcatFusion"]


class ConcatFusion(Fusion):
    """Concatenate audio and video features, LayerNorm, project: AV-HuBERT's
    ``modality_fuse="concat"`` (Shi et al., "Learning Audio-Visual Speech Representation by
    Masked Multimodal Cluster Prediction", ICLR 2022): ``layer_norm`` over (Da + Dv), then
    ``post_extract_proj`` to D, then dropout.

    Absent and dropped streams: see :class:`~avsr.models.fusion.base.Fusion`.

    Args:
        audio_dim: audio feature size Da.
        video_dim: video feature size Dv.
        output_dim: fused size D (the encoder's d_model).
        missing: ``"zeros"`` or ``"learned"``.
        dropout: dropout after the projection.
        p_modality: modality-dropout probability (AV-HuBERT ``modality_dropout``).
        p_audio: probability that a dropped stream is the audio (``audio_dropout``).
        modality_dropout_per_item: draw modality dropout per item instead of per batch.
    """

    def __init__(
        self,
        audio_dim: int,
        video_dim: int,
        output_dim: int,
        missing: str = "zeros",
        dropout: float = 0.0,
        p_modality: float = 0.0,
        p_audio: float = 0.5,
        modality_dropout_per_item: bool = False,
    ) -> None:
        super().__init__(audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
                         modality_dropout_per_item)
        self.layer_norm = nn.LayerNorm(audio_dim + video_dim)
        self.post_extract_proj = nn.Linear(audio_dim + video_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        x = self.post_extract_proj(self.layer_norm(torch.cat([s.audio, s.video], dim=-1)))
        return self.dropout(x)
