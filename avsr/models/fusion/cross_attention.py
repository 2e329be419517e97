"""Fusion by cross-modal attention: each stream attends to the other."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsr.models.attention import MultiHeadAttention, key_padding_attn_mask
from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["CrossAttentionFusion"]


class CrossAttentionFusion(Fusion):
    """Bidirectional cross-modal attention, then concatenation and projection.

    Both streams are projected to D; audio queries attend to video keys and video queries to
    audio keys (pre-LN residual blocks, Tsai et al., "Multimodal Transformer for Unaligned
    Multimodal Language Sequences", ACL 2019); the two outputs are concatenated and projected
    to D. Keys past the fused length are masked, so padding never reaches valid frames.

    Args:
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        num_heads: attention heads.
        dropout: attention and residual dropout.
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, num_heads: int = 8,
                 dropout: float = 0.1, **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        self.audio_proj = nn.Linear(audio_dim, output_dim)
        self.video_proj = nn.Linear(video_dim, output_dim)
        self.audio_norm = nn.LayerNorm(output_dim)
        self.video_norm = nn.LayerNorm(output_dim)
        self.audio_to_video = MultiHeadAttention(output_dim, num_heads, dropout)
        self.video_to_audio = MultiHeadAttention(output_dim, num_heads, dropout)
        self.layer_norm = nn.LayerNorm(2 * output_dim)
        self.post_proj = nn.Linear(2 * output_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        a, v = self.audio_proj(s.audio), self.video_proj(s.video)  # (B, T, D)
        mask = key_padding_attn_mask(s.lengths, a.shape[1])
        a_n, v_n = self.audio_norm(a), self.video_norm(v)
        a = a + self.dropout(self.audio_to_video(a_n, v_n, attn_mask=mask))
        v = v + self.dropout(self.video_to_audio(v_n, a_n, attn_mask=mask))
        return self.post_proj(self.layer_norm(torch.cat([a, v], dim=-1)))
