"""Fusion by an MLP over the concatenated streams (auto_avsr's audio-visual model)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["MLPFusion"]


class MLPFusion(Fusion):
    """``fc1 -> bn1 (BatchNorm) -> ReLU -> fc2`` over the concatenated streams.

    Ma et al., "Auto-AVSR", ICASSP 2023 (v1.0.0 ``MLPHead``: concat of the video and audio
    Conformer outputs, 1536 → ``fusion_hdim`` 8192 → 768; keys ``fc1``, ``bn1``, ``fc2``).
    Unlike auto_avsr, batch-norm statistics in training come from valid frames only, so a
    padded row equals the item alone in training mode too.

    Args:
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        hidden_dim: hidden size of the MLP.
        video_first: concatenate (video, audio) as auto_avsr does, else (audio, video).
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, hidden_dim: int = 8192,
                 video_first: bool = True, **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        self.video_first = video_first
        self.fc1 = nn.Linear(audio_dim + video_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        pair = [s.video, s.audio] if self.video_first else [s.audio, s.video]
        h = self.fc1(torch.cat(pair, dim=-1))  # (B, T, H)
        valid = ~s.pad
        # batch norm over valid frames only: (N_valid, H)
        h = h.masked_scatter(valid.unsqueeze(-1), self.bn1(h[valid]))
        return self.fc2(self.relu(h))
