"""What passes between the typed steps of :class:`~avsr.models.avsr_model.AVSRModel`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["Embedded", "FusedStream", "Fused", "ModalityOutput", "stack_streams"]


class Embedded(NamedTuple):
    """Front-end features of one batch (output of ``AVSRModel.embed``).

    Attributes:
        audio: (B, Ta, Da) or ``None`` (no audio, or its front-end was not run).
        audio_lengths: (B,) frames, or ``None`` with ``audio``.
        video: (B, Tv, Dv) or ``None``.
        video_lengths: (B,) frames, or ``None``.
        has_audio: (B,) bool, items whose input audio is present (input length > 0), or
            ``None`` without audio.
        has_video: (B,) bool, or ``None``.
    """

    audio: torch.Tensor | None
    audio_lengths: torch.Tensor | None
    video: torch.Tensor | None
    video_lengths: torch.Tensor | None
    has_audio: torch.Tensor | None
    has_video: torch.Tensor | None


class FusedStream(NamedTuple):
    """One modality's fused input (a part of ``AVSRModel.fuse_streams``).

    Attributes:
        modality: ``"audio"``, ``"video"`` or ``"audiovisual"``.
        index: (B_m,) long rows of the batch the stream covers.
        x: (B_m, T_m, D) fused features, zero past ``lengths``.
        lengths: (B_m,).
    """

    modality: str
    index: torch.Tensor
    x: torch.Tensor
    lengths: torch.Tensor


class Fused(NamedTuple):
    """The streams stacked along the batch axis: one encoder pass serves them all (USR).

    Attributes:
        x: (N, T, D) with N = Σ B_m, each stream zero-padded to the longest T.
        lengths: (N,).
        index: (N,) long, the batch row of every stacked row.
        modalities: the stream of each block of rows, in stacking order.
        sizes: rows B_m of each stream.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor
    modalities: tuple[str, ...]
    sizes: tuple[int, ...]

    def split(self, t: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """``{modality: its rows of t}`` for any (N, ...) tensor stacked like ``x``."""
        out: dict[str, torch.Tensor | None] = {}
        start = 0
        for m, n in zip(self.modalities, self.sizes):
            out[m] = None if t is None else t[start:start + n]
            start += n
        return out


def stack_streams(streams: list[FusedStream]) -> Fused:
    """Stack fused streams along the batch axis, zero-padding time to the longest stream."""
    if not streams:
        raise ValueError("no stream to stack")
    frames = max(s.x.shape[1] for s in streams)
    x = torch.cat([nn.functional.pad(s.x, (0, 0, 0, frames - s.x.shape[1]))
                   if s.x.shape[1] != frames else s.x for s in streams])
    return Fused(x, torch.cat([s.lengths for s in streams]),
                 torch.cat([s.index for s in streams]),
                 tuple(s.modality for s in streams), tuple(s.index.numel() for s in streams))


class ModalityOutput(NamedTuple):
    """Outputs of one modality stream of :meth:`AVSRModel.forward_unified`.

    Attributes:
        index: (B_m,) long rows of the batch this stream covers (items that have the stream's
            inputs); use it to pick targets: ``tokens[index]``.
        enc: (B_m, T, D) encoder output, zero past ``enc_lengths``.
        enc_lengths: (B_m,).
        ctc_log_probs: (B_m, T, V) or ``None`` without a CTC head.
        decoder_logits: (B_m, L, V) teacher-forced logits, or ``None`` without decoder inputs.
        decoder_states: (B_m, L, D) the decoder's final-norm outputs (the inputs of its output
            layer), when asked for with ``return_decoder_states``; else ``None``.
    """

    index: torch.Tensor
    enc: torch.Tensor
    enc_lengths: torch.Tensor
    ctc_log_probs: torch.Tensor | None
    decoder_logits: torch.Tensor | None
    decoder_states: torch.Tensor | None = None
