"""Early fusion by concatenation, LayerNorm and projection (AV-HuBERT)."""

from __future__ import annotations

from typing import Any

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
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        dropout: dropout after the projection.
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, dropout: float = 0.0,
                 **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        self.layer_norm = nn.LayerNorm(audio_dim + video_dim)
        self.post_extract_proj = nn.Linear(audio_dim + video_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        x = self.post_extract_proj(self.layer_norm(torch.cat([s.audio, s.video], dim=-1)))
        return self.dropout(x)
