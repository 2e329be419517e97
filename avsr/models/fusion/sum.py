"""Fusion by summing the two streams (AV-HuBERT's ``modality_fuse="add"``)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["SumFusion"]


class SumFusion(Fusion):
    """Project each stream to D (identity when its size is already D), add, LayerNorm.

    Shi et al., ICLR 2022 (AV-HuBERT, ``modality_fuse="add"``: the front-ends already project
    to D, the sum goes through ``layer_norm``; no ``post_extract_proj`` at equal sizes).

    Args:
        audio_dim: audio feature size Da.
        video_dim: video feature size Dv.
        output_dim: fused size D.
        missing: ``"zeros"`` or ``"learned"``.
        dropout: dropout after the norm.
        p_modality: modality-dropout probability.
        p_audio: probability that a dropped stream is the audio.
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
