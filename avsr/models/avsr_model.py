"""The unified audio / visual / audio-visual CTC-attention model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from avsr.models.ctc import CTCHead
from avsr.models.utils import check_shape

__all__ = ["AVSRModel", "ModalityOutput", "MODALITIES"]

MODALITIES = ("audio", "video", "audiovisual")


class ModalityOutput(NamedTuple):
    """Outputs of one modality stream of :meth:`AVSRModel.forward_unified`.

    Attributes:
        index: (B_m,) long rows of the batch this stream covers (items that have the stream's
            inputs); use it to pick targets: ``tokens[index]``.
        enc: (B_m, T, D) encoder output, zero past ``enc_lengths``.
        enc_lengths: (B_m,).
        ctc_log_probs: (B_m, T, V) or ``None`` without a CTC head.
        decoder_logits: (B_m, L, V) teacher-forced logits, or ``None`` without decoder inputs.
    """

    index: torch.Tensor
    enc: torch.Tensor
    enc_lengths: torch.Tensor
    ctc_log_probs: torch.Tensor | None
    decoder_logits: torch.Tensor | None


def _pad_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad (B, T, D) to (B, frames, D)."""
    if x.shape[1] == frames:
        return x
    return nn.functional.pad(x, (0, 0, 0, frames - x.shape[1]))


def _select(
    x: torch.Tensor | None, index: torch.Tensor, use: bool, batch: int
) -> torch.Tensor | None:
    """Rows ``index`` of x (x itself when index covers the batch); ``None`` if unused."""
    if not use or x is None:
        return None
    return x if index.numel() == batch else x.index_select(0, index)


class AVSRModel(nn.Module):
    """Front-ends → fusion → one shared encoder → CTC head + attention decoder.

    One set of weights serves audio-only, video-only and audio-visual inputs: the absent
    stream goes through the fusion module's missing-modality handling (Haliassos et al.,
    "Unified Speech Recognition", NeurIPS 2024; Shi et al., ICLR 2022). Every part is an
    injected module (Hydra builds them).

    Args:
        audio_frontend: ``(audio (B, S), lengths) -> ((B, Ta, Da), lengths)`` or ``None``.
        video_frontend: ``(video (B, T, 1, H, W), lengths) -> ((B, Tv, Dv), lengths)`` or
            ``None``.
        fusion: ``(audio|None, video|None, audio_lengths, video_lengths) -> ((B, T, D),
            lengths)``; projects to the encoder dimension.
        encoder: ``((B, T, D), lengths) -> ((B, T, D), lengths)``.
        decoder: attention decoder (``TransformerDecoder``) or ``None`` (CTC-only).
        ctc: CTC head or ``None`` (attention-only).
    """

    def __init__(
        self,
        audio_frontend: nn.Module | None,
        video_frontend: nn.Module | None,
        fusion: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module | None = None,
        ctc: CTCHead | None = None,
    ) -> None:
        super().__init__()
        if audio_frontend is None and video_frontend is None:
            raise ValueError("AVSRModel needs at least one front-end")
        self.audio_frontend = audio_frontend
        self.video_frontend = video_frontend
        self.fusion = fusion
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc

    # ------------------------------------------------------------------ front-ends
    def _frontends(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        a = v = None
        if audio is not None:
            if self.audio_frontend is None:
                raise ValueError("audio given but the model has no audio front-end")
            check_shape("audio", audio, 2, "(B, S)")
            a, audio_lengths = self.audio_frontend(audio, audio_lengths)
        if video is not None:
            if self.video_frontend is None:
                raise ValueError("video given but the model has no video front-end")
            check_shape("video", video, 5, "(B, T, 1, H, W)")
            v, video_lengths = self.video_frontend(video, video_lengths)
        return a, audio_lengths, v, video_lengths

    def encode(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
        modality: str = "audiovisual",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode one modality.

        Args:
            audio: (B, S) or ``None``; audio_lengths: (B,) samples (0: item without audio).
            video: (B, T, 1, H, W) or ``None``; video_lengths: (B,) frames.
            modality: ``"audio"``, ``"video"`` or ``"audiovisual"``. The streams the modality
                does not use are not computed; a missing stream of ``"audiovisual"`` (``None``
                or length 0) is handled by the fusion module.

        Returns:
            enc (B, T, D), zero past each length, and enc_lengths (B,).
        """
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if modality == "video":
            audio = audio_lengths = None
        if modality == "audio":
            video = video_lengths = None
        if audio is None and video is None:
            raise ValueError(f"modality {modality!r} needs inputs that were not given")
        a, a_len, v, v_len = self._frontends(audio, audio_lengths, video, video_lengths)
        x, lengths = self.fusion(a, v, a_len, v_len)
        return self.encoder(x, lengths)

    # ------------------------------------------------------------------ unified training pass
    def forward_unified(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
        decoder_tokens: torch.Tensor | None = None,
        decoder_token_lengths: torch.Tensor | None = None,
        modalities: Sequence[str] = MODALITIES,
    ) -> dict[str, ModalityOutput]:
        """Audio, video and audio-visual streams of one batch through one encoder pass.

        As USR trains: each front-end runs ONCE on the batch; the fused A, V and AV inputs are
        stacked along the batch axis ((3B, T, D) when all are present) and go through the
        encoder, the CTC head and the decoder in one pass each.

        A stream runs only for items that have its inputs (``audio`` requires audio, ``video``
        requires video, ``audiovisual`` requires both); a stream no item can run is left out of
        the result (e.g. only ``"audio"`` for an audio-only batch).

        Args:
            audio: (B, S) or ``None``; audio_lengths: (B,) samples, 0 for an item without audio.
            video: (B, T, 1, H, W) or ``None``; video_lengths: (B,) frames, 0 for none.
            decoder_tokens: (B, L) decoder inputs starting with sos (see
                ``avsr.objectives.hybrid.add_sos_eos``), or ``None`` to skip the decoder.
            decoder_token_lengths: (B,).
            modalities: streams to run, a subset of ``("audio", "video", "audiovisual")``.

        Returns:
            ``{modality: ModalityOutput}`` for the streams that ran.
        """
        for m in modalities:
            if m not in MODALITIES:
                raise ValueError(f"unknown modality {m!r}; expected one of {MODALITIES}")
        ref = audio if audio is not None else video
        if ref is None:
            raise ValueError("forward_unified needs audio or video")
        batch = ref.shape[0]
        if audio is not None and audio_lengths is None:
            audio_lengths = torch.full((batch,), audio.shape[1], device=ref.device)
        if video is not None and video_lengths is None:
            video_lengths = torch.full((batch,), video.shape[1], device=ref.device)
        has_a = audio_lengths > 0 if audio is not None else None
        has_v = video_lengths > 0 if video is not None else None
        a, a_len, v, v_len = self._frontends(audio, audio_lengths, video, video_lengths)

        streams: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for m in modalities:
            use_a = m in ("audio", "audiovisual")
            use_v = m in ("video", "audiovisual")
            if (use_a and a is None) or (use_v and v is None):
                continue
            keep = torch.ones(batch, dtype=torch.bool, device=ref.device)
            if use_a:
                keep = keep & has_a
            if use_v:
                keep = keep & has_v
            index = keep.nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            x, lengths = self.fusion(
                _select(a, index, use_a, batch),
                _select(v, index, use_v, batch),
                _select(a_len, index, use_a, batch),
                _select(v_len, index, use_v, batch),
            )
            streams.append((m, index, x, lengths))
        if not streams:
            return {}

        # stack the streams along the batch: (B_a + B_v + B_av, T, D), one encoder pass
        frames = max(x.shape[1] for _, _, x, _ in streams)
        x = torch.cat([_pad_time(s[2], frames) for s in streams])
        lengths = torch.cat([s[3] for s in streams])
        index = torch.cat([s[1] for s in streams])
        enc, enc_lengths = self.encoder(x, lengths)
        ctc = self.ctc(enc) if self.ctc is not None else None
        logits = None
        if self.decoder is not None and decoder_tokens is not None:
            check_shape("decoder_tokens", decoder_tokens, 2, "(B, L)")
            tok_len = decoder_token_lengths
            logits = self.decoder(
                decoder_tokens.index_select(0, index),
                tok_len.index_select(0, index) if tok_len is not None else None,
                enc,
                enc_lengths,
            )

        out: dict[str, ModalityOutput] = {}
        start = 0
        for m, idx, _, _ in streams:
            sl = slice(start, start + idx.numel())
            start = sl.stop
            out[m] = ModalityOutput(
                index=idx,
                enc=enc[sl],
                enc_lengths=enc_lengths[sl],
                ctc_log_probs=ctc[sl] if ctc is not None else None,
                decoder_logits=logits[sl] if logits is not None else None,
            )
        return out

    # calling the module (hooks, DDP, torch.compile) runs the unified pass
    forward = forward_unified
