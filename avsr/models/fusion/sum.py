"""Fusion by summing the two streams (AV-HuBERT's ``modality_fuse="add"``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["SumFusion"]


class SumFusion(Fusion):
    """Project each stream to D (identity when its size is already D), add, LayerNorm.

    Shi et al., ICLR 2022 (AV-HuBERT, ``modality_fuse="add"``: the front-ends already project
    to D, the sum goes through ``layer_norm``; no ``post_extract_proj`` at equal sizes).

    Args:
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        dropout: dropout after the norm.
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, dropout: float = 0.0,
                 **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        self.audio_proj = (nn.Identity() if audio_dim == output_dim
                           else nn.Linear(audio_dim, output_dim))
        self.video_proj = (nn.Identity() if video_dim == output_dim
                           else nn.Linear(video_dim, output_dim))
        self.layer_norm = nn.LayerNorm(output_dim)
        self.dropout = nn.Dropout(dropout)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        x = self.layer_norm(self.audio_proj(s.audio) + self.video_proj(s.video))
        return self.dropout(x)
