"""Per-modality encoders before fusion (Pan et al.; auto_avsr's audio-visual model)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import check_shape

__all__ = ["ModalityEncodersFusion"]


class ModalityEncodersFusion(nn.Module):
    """Runs each stream through its own encoder, then an inner fusion module.

    Pan et al., "Leveraging Unimodal Self-Supervised Learning for Multimodal Audio-Visual
    Speech Recognition", ACL 2022 (per-modality 6-layer transformers, concatenation, a fusion
    transformer = the shared encoder); Ma et al., ICASSP 2023 (auto_avsr v1.0.0: a Conformer
    per modality, ``MLPFusion``, then no shared encoder: use ``IdentityEncoder``).

    Absent streams and modality dropout are the inner fusion's business (after the
    per-modality encoders). The fusion forward signature of docs/CONTRACTS.md is kept.

    Args:
        fusion: inner fusion, taking the encoders' output sizes.
        audio_encoder: ``((B, T, Da), lengths) -> ((B, T, Da'), lengths)`` or ``None``.
        video_encoder: same for video, or ``None``.
        audio_input_dim: if given, ``audio_proj`` = Linear(audio_input_dim, the audio encoder's
            ``d_model``) runs first (Pan et al.: 1024-d wav2vec 2.0 features to 512).
        video_input_dim: same for video (Pan et al.: 2048-d ResNet-50 features to 512).
    """

    def __init__(
        self,
        fusion: nn.Module,
        audio_encoder: nn.Module | None = None,
        video_encoder: nn.Module | None = None,
        audio_input_dim: int | None = None,
        video_input_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.audio_proj = self._proj(audio_input_dim, audio_encoder)
        self.video_proj = self._proj(video_input_dim, video_encoder)
        self.audio_encoder = audio_encoder
        self.video_encoder = video_encoder
        self.fusion = fusion

    @staticmethod
    def _proj(input_dim: int | None, encoder: nn.Module | None) -> nn.Module | None:
        if input_dim is None:
            return None
        d_model = getattr(encoder, "d_model", None)
        if not isinstance(d_model, int):
            raise ValueError("an input projection needs an encoder with an int d_model")
        return nn.Linear(input_dim, d_model)

    @staticmethod
    def _encode(name: str, proj: nn.Module | None, encoder: nn.Module | None,
                x: torch.Tensor | None, lengths: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if x is None:
            return x, lengths
        check_shape(name, x, 3, "(B, T, D)")
        if proj is not None:
            x = proj(x)
        if encoder is None:
            return x, lengths
        return encoder(x, lengths)

    def forward(
        self,
        audio: torch.Tensor | None,
        video: torch.Tensor | None,
        audio_lengths: torch.Tensor | None = None,
        video_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse; same shapes as :class:`~avsr.models.fusion.concat.ConcatFusion`."""
        audio, audio_lengths = self._encode("audio", self.audio_proj, self.audio_encoder, audio,
                                            audio_lengths)
        video, video_lengths = self._encode("video", self.video_proj, self.video_encoder, video,
                                            video_lengths)
        return self.fusion(audio, video, audio_lengths, video_lengths)
