"""Modality dropout: train on one stream of an audio-visual item now and then (AV-HuBERT)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ModalityDropout"]


class ModalityDropout(nn.Module):
    """Draws which stream of audio-visual items to drop in training.

    Shi et al., "Learning Audio-Visual Speech Representation by Masked Multimodal Cluster
    Prediction", ICLR 2022 (AV-HuBERT, ``modality_dropout`` / ``audio_dropout``): with
    probability ``p_modality`` one stream is dropped; given a drop, it is the audio with
    probability ``p_audio``, else the video. AV-HuBERT draws once per batch (every item of the
    batch loses the same stream); ``per_item=True`` draws for each item. AV-HuBERT's recipes use
    0.5 / 0.5 (REFERENCE.md §2.3). A dropped stream is then treated exactly like an absent one
    (zeros, as in AV-HuBERT, or the fusion's learned embedding); lengths are kept.

    Args:
        p_modality: probability of dropping a stream.
        p_audio: probability that the dropped stream is the audio.
        per_item: one draw per item instead of one per batch.
    """

    def __init__(self, p_modality: float = 0.0, p_audio: float = 0.5,
                 per_item: bool = False) -> None:
        super().__init__()
        for name, p in (("p_modality", p_modality), ("p_audio", p_audio)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.p_modality = p_modality
        self.p_audio = p_audio
        self.per_item = per_item

    def forward(self, both: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the drops.

        Args:
            both: (B,) bool, items that have both streams (only those can lose one).

        Returns:
            drop_audio (B,) bool and drop_video (B,) bool; all False in eval mode.
        """
        none = torch.zeros_like(both)
        if not self.training or self.p_modality == 0.0:
            return none, none
        draws = both.shape[0] if self.per_item else 1
        drop = torch.rand(draws, device=both.device) < self.p_modality
        audio = torch.rand(draws, device=both.device) < self.p_audio
        drop_audio = (drop & audio).expand_as(both) & both
        drop_video = (drop & ~audio).expand_as(both) & both
        return drop_audio, drop_video
