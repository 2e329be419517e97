"""What every fusion module shares: aligning the streams, absent streams, modality dropout."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from avsr.models.fusion.modality_dropout import ModalityDropout
from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["Fusion", "FusionInputs", "fused_lengths", "MISSING"]

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


class FusionInputs(NamedTuple):
    """Streams aligned on T frames, absent or dropped items already filled.

    Attributes:
        audio: (B, T, Da).
        video: (B, T, Dv).
        lengths: (B,) fused lengths (:func:`fused_lengths`, at most T).
        pad: (B, T) bool, True at padding.
        has_audio: (B,) bool, the item's audio is used (present and not dropped).
        has_video: (B,) bool.
    """

    audio: torch.Tensor
    video: torch.Tensor
    lengths: torch.Tensor
    pad: torch.Tensor
    has_audio: torch.Tensor
    has_video: torch.Tensor


class Fusion(nn.Module):
    """Base of the fusion modules: ``forward(audio | None, video | None, audio_lengths,
    video_lengths) -> ((B, T, D), lengths)`` (docs/CONTRACTS.md).

    :meth:`prepare` checks shapes, cuts both streams to the shorter T, and replaces an absent
    stream (``None``, or an item whose length is 0) and a stream removed by modality dropout
    with zeros (AV-HuBERT) or a learned vector broadcast over time (``audio_missing`` /
    ``video_missing``). :meth:`finish` zeroes outputs past each length.

    Args:
        audio_dim: audio feature size Da.
        video_dim: video feature size Dv.
        output_dim: fused size D (the encoder's d_model).
        missing: ``"zeros"`` or ``"learned"``.
        p_modality: modality-dropout probability (:class:`ModalityDropout`).
        p_audio: probability that a dropped stream is the audio.
        modality_dropout_per_item: draw modality dropout per item instead of per batch.
    """

    def __init__(
        self,
        audio_dim: int,
        video_dim: int,
        output_dim: int,
        missing: str = "zeros",
        p_modality: float = 0.0,
        p_audio: float = 0.5,
        modality_dropout_per_item: bool = False,
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
        self.modality_dropout = ModalityDropout(p_modality, p_audio, modality_dropout_per_item)

    def _fill(
        self,
        x: torch.Tensor | None,
        absent: torch.Tensor,
        dim: int,
        name: str,
        like: torch.Tensor,
        frames: int,
    ) -> torch.Tensor:
        """The stream cut to ``frames`` frames, ``absent`` items replaced by the fill."""
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
        fill = 0.0 if missing is None else missing.to(x.dtype)
        return torch.where(absent[:, None, None], fill, x)

    def forward(
        self,
        audio: torch.Tensor | None,
        video: torch.Tensor | None,
        audio_lengths: torch.Tensor | None = None,
        video_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse: :meth:`prepare`, the subclass's :meth:`combine`, :meth:`finish`.

        Args:
            audio: (B, Ta, Da) or ``None`` (absent).
            video: (B, Tv, Dv) or ``None`` (absent).
            audio_lengths: (B,) valid audio frames (0: item without audio); ``None`` = all Ta.
            video_lengths: (B,) valid video frames (0: item without video); ``None`` = all Tv.

        Returns:
            fused (B, T, D) with T = min(Ta, Tv) (or the present stream's T), zero past each
            length, and lengths (B,) from :func:`fused_lengths`.
        """
        s = self.prepare(audio, video, audio_lengths, video_lengths)
        return self.finish(self.combine(s), s)

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """The fusion proper: aligned, filled streams ``s`` (B, T, Da) / (B, T, Dv) ->
        (B, T, D). Subclasses implement it."""
        raise NotImplementedError

    def prepare(
        self,
        audio: torch.Tensor | None,
        video: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
    ) -> FusionInputs:
        """Align, fill and drop; see the class docstring.

        Args:
            audio: (B, Ta, Da) or ``None``; video: (B, Tv, Dv) or ``None``.
            audio_lengths, video_lengths: (B,) (0: item without the stream); ``None`` = all T.
        """
        if audio is None and video is None:
            raise ValueError(f"{type(self).__name__} needs at least one of audio and video")
        ref = audio if audio is not None else video
        assert ref is not None
        check_shape("audio" if audio is not None else "video", ref, 3, "(B, T, D)")
        batch = ref.shape[0]
        if audio is not None and audio_lengths is None:
            audio_lengths = torch.full((batch,), audio.shape[1], device=ref.device)
        if video is not None and video_lengths is None:
            video_lengths = torch.full((batch,), video.shape[1], device=ref.device)
        frames = min(x.shape[1] for x in (audio, video) if x is not None)
        no = torch.zeros(batch, dtype=torch.bool, device=ref.device)
        has_a = audio_lengths > 0 if audio is not None and audio_lengths is not None else no
        has_v = video_lengths > 0 if video is not None and video_lengths is not None else no
        drop_a, drop_v = self.modality_dropout(has_a & has_v)
        has_a, has_v = has_a & ~drop_a, has_v & ~drop_v
        a = self._fill(audio, ~has_a, self.audio_dim, "audio", ref, frames)
        v = self._fill(video, ~has_v, self.video_dim, "video", ref, frames)
        lengths = fused_lengths(
            audio_lengths if audio is not None else None,
            video_lengths if video is not None else None,
        ).clamp(max=frames)
        return FusionInputs(a, v, lengths, make_pad_mask(lengths, frames), has_a, has_v)

    @staticmethod
    def finish(x: torch.Tensor, inputs: FusionInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (B, T, D) past each length; returns it with the lengths."""
        return x.masked_fill(inputs.pad.unsqueeze(-1), 0.0), inputs.lengths
