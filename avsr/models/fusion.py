"""Early fusion of audio and video features by concatenation (AV-HuBERT)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["ConcatFusion", "fused_lengths"]

MISSING = ("zeros", "learned")


def fused_lengths(
    audio_lengths: torch.Tensor | None, video_lengths: torch.Tensor | None
) -> torch.Tensor:
    """Per-item length of the fused stream.

    min(audio, video) where an item has both (25 Hz frames are aligned, the longer stream is
    truncated); the present stream's length where an item has only one (length 0 = absent).

    Args:
        audio_lengths: (B,) or ``None`` (no audio in the batch).
        video_lengths: (B,) or ``None`` (no video in the batch).

    Returns:
        (B,) long.
    """
    if audio_lengths is None and video_lengths is None:
        raise ValueError("at least one of audio_lengths and video_lengths is needed")
    if audio_lengths is None:
        assert video_lengths is not None
        return video_lengths
    if video_lengths is None:
        return audio_lengths
    both = (audio_lengths > 0) & (video_lengths > 0)
    return torch.where(both, torch.minimum(audio_lengths, video_lengths),
                       torch.maximum(audio_lengths, video_lengths))


class ConcatFusion(nn.Module):
    """Concatenate audio and video features, LayerNorm, project: AV-HuBERT's
    ``modality_fuse="concat"`` (Shi et al., "Learning Audio-Visual Speech Representation by
    Masked Multimodal Cluster Prediction", ICLR 2022): ``layer_norm`` over (Da + Dv), then
    ``post_extract_proj`` to D.

    An absent stream (``None``, or an item whose length is 0) is replaced by zeros (AV-HuBERT's
    modality dropout) or by a learned vector broadcast over time (``audio_missing`` /
    ``video_missing``). Output rows are zero past their length.

    Args:
        audio_dim: audio feature size Da.
        video_dim: video feature size Dv.
        output_dim: fused size D (the encoder's d_model).
        missing: ``"zeros"`` or ``"learned"``.
        dropout: dropout after the projection.
    """

    def __init__(
        self,
        audio_dim: int,
        video_dim: int,
        output_dim: int,
        missing: str = "zeros",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if missing not in MISSING:
            raise ValueError(f"unknown missing {missing!r}; expected one of {MISSING}")
        self.audio_dim = audio_dim
        self.video_dim = video_dim
        self.output_dim = output_dim
        self.missing = missing
        if missing == "learned":
            self.audio_missing = nn.Parameter(torch.randn(audio_dim) * 0.02)
            self.video_missing = nn.Parameter(torch.randn(video_dim) * 0.02)
        self.layer_norm = nn.LayerNorm(audio_dim + video_dim)
        self.post_extract_proj = nn.Linear(audio_dim + video_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def _fill(
        self,
        x: torch.Tensor | None,
        lengths: torch.Tensor | None,
        dim: int,
        name: str,
        like: torch.Tensor,
        frames: int,
    ) -> torch.Tensor:
        """The stream cut to ``frames`` frames, absent items replaced by the missing vector."""
        batch = like.shape[0]
        missing = getattr(self, f"{name}_missing", None)
        if x is None:
            if missing is None:
                return like.new_zeros(batch, frames, dim)
            return missing.to(like.dtype).expand(batch, frames, dim)
        check_shape(name, x, 3, f"(B, T, {dim})")
        if x.shape[-1] != dim or x.shape[0] != batch:
            raise ValueError(f"{name} must be ({batch}, T, {dim}), got {tuple(x.shape)}")
        x = x[:, :frames]
        if lengths is not None:
            absent = (lengths == 0)[:, None, None]
            fill = 0.0 if missing is None else missing.to(x.dtype)
            x = torch.where(absent, fill, x)
        return x

    def forward(
        self,
        audio: torch.Tensor | None,
        video: torch.Tensor | None,
        audio_lengths: torch.Tensor | None = None,
        video_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse.

        Args:
            audio: (B, Ta, Da) or ``None`` (absent).
            video: (B, Tv, Dv) or ``None`` (absent).
            audio_lengths: (B,) valid audio frames (0: item without audio); ``None`` = all Ta.
            video_lengths: (B,) valid video frames (0: item without video); ``None`` = all Tv.

        Returns:
            fused (B, T, D) with T = min(Ta, Tv) (or the present stream's T), zero past each
            length, and lengths (B,) from :func:`fused_lengths`.
        """
        if audio is None and video is None:
            raise ValueError("ConcatFusion needs at least one of audio and video")
        ref = audio if audio is not None else video
        assert ref is not None
        check_shape("audio" if audio is not None else "video", ref, 3, "(B, T, D)")
        batch = ref.shape[0]
        if audio is not None and audio_lengths is None:
            audio_lengths = torch.full((batch,), audio.shape[1], device=ref.device)
        if video is not None and video_lengths is None:
            video_lengths = torch.full((batch,), video.shape[1], device=ref.device)
        frames = min(x.shape[1] for x in (audio, video) if x is not None)
        a = self._fill(audio, audio_lengths, self.audio_dim, "audio", ref, frames)
        v = self._fill(video, video_lengths, self.video_dim, "video", ref, frames)
        lengths = fused_lengths(
            audio_lengths if audio is not None else None,
            video_lengths if video is not None else None,
        ).clamp(max=frames)
        x = self.post_extract_proj(self.layer_norm(torch.cat([a, v], dim=-1)))
        x = self.dropout(x).masked_fill(make_pad_mask(lengths, frames).unsqueeze(-1), 0.0)
        return x, lengths
