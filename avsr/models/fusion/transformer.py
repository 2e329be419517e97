"""Fusion by a transformer over the tokens of both streams (Zhang et al., 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsr.models.attention import key_padding_attn_mask
from avsr.models.encoder import TransformerEncoderLayer
from avsr.models.fusion.base import Fusion, FusionInputs
from avsr.models.positional import SinusoidalPositionalEncoding

__all__ = ["TransformerFusion"]


class TransformerFusion(Fusion):
    """A transformer fusion module attending jointly over the audio and the video frames.

    Zhang et al., "Learning Contextually Fused Audio-visual Representations for Audio-visual
    Speech Recognition", 2022: both streams are projected to D, given sinusoidal positions and
    a learned modality embedding, concatenated along time (2T tokens) and run through pre-LN
    transformer layers; the audio and video outputs of each frame are summed and normalised.
    A stream that is absent (or masked out, as their flexible masking does) enters as its fill
    (zeros or learned), so one model serves A, V and AV.

    Args:
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        num_layers: transformer layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout.
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, num_layers: int = 2,
                 num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.1,
                 **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        self.audio_proj = nn.Linear(audio_dim, output_dim)
        self.video_proj = nn.Linear(video_dim, output_dim)
        self.modality_embed = nn.Parameter(torch.randn(2, output_dim) * 0.02)
        self.pos_enc = SinusoidalPositionalEncoding(output_dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(output_dim, num_heads, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        self.layer_norm = nn.LayerNorm(output_dim)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        frames = s.audio.shape[1]
        a = self.pos_enc(self.audio_proj(s.audio)) + self.modality_embed[0]
        v = self.pos_enc(self.video_proj(s.video)) + self.modality_embed[1]
        x = self.dropout(torch.cat([a, v], dim=1))  # (B, 2T, D): audio frames, video frames
        mask = key_padding_attn_mask(s.lengths, frames)
        mask = torch.cat([mask, mask], dim=-1)  # (B, 1, 1, 2T)
        for layer in self.layers:
            x = layer(x, mask)
        return self.layer_norm(x[:, :frames] + x[:, frames:])
