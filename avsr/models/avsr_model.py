"""The unified audio / visual / audio-visual CTC-attention model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from avsr.modalities import MODALITIES, check_modality
from avsr.models.ctc import CTCHead
from avsr.models.streams import Embedded, Fused, FusedStream, ModalityOutput, stack_streams
from avsr.models.utils import check_shape

__all__ = ["AVSRModel", "ModalityOutput", "MODALITIES", "Embedded", "Fused", "FusedStream"]

# the input streams each modality reads
_USES = {"audio": (True, False), "video": (False, True), "audiovisual": (True, True)}


def _select(x: torch.Tensor | None, index: torch.Tensor, use: bool, batch: int
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

    The forward pass is the composition of typed steps that objectives may call one by one,
    putting masking, boundaries or distillation targets in between:
    :meth:`embed` (front-ends) → :meth:`fuse` (per-modality fusion, stacked along the batch)
    → :meth:`encode` (the encoder, optionally every layer's output) → :meth:`decode`.

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

    # ------------------------------------------------------------------ steps
    def embed(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
        modalities: Sequence[str] = MODALITIES,
    ) -> Embedded:
        """Run the front-ends on the given streams that ``modalities`` read.

        Args:
            audio: (B, S) or ``None``; audio_lengths: (B,) samples (0: item without audio),
                ``None`` = all S.
            video: (B, T, 1, H, W) or ``None``; video_lengths: (B,) frames, ``None`` = all T.
            modalities: the modalities the features are for; a stream none of them reads is
                not computed.

        Returns:
            :class:`Embedded`: (B, Ta, Da) / (B, Tv, Dv) features with their frame lengths and
            the items that have each stream.
        """
        wants = [_USES[check_modality(m)] for m in modalities]
        a = v = has_a = has_v = None
        if audio is not None and any(use_a for use_a, _ in wants):
            if self.audio_frontend is None:
                raise ValueError("audio given but the model has no audio front-end")
            check_shape("audio", audio, 2, "(B, S)")
            has_a = self._present(audio_lengths, audio)
            a, audio_lengths = self.audio_frontend(audio, audio_lengths)
        if video is not None and any(use_v for _, use_v in wants):
            if self.video_frontend is None:
                raise ValueError("video given but the model has no video front-end")
            check_shape("video", video, 5, "(B, T, 1, H, W)")
            has_v = self._present(video_lengths, video)
            v, video_lengths = self.video_frontend(video, video_lengths)
        return Embedded(a, audio_lengths if a is not None else None, v,
                        video_lengths if v is not None else None, has_a, has_v)

    @staticmethod
    def _present(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        if lengths is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return lengths > 0

    def fuse_streams(
        self, feats: Embedded, modalities: Sequence[str] = MODALITIES, keep_all: bool = False
    ) -> list[FusedStream]:
        """Fuse the features once per modality.

        Args:
            feats: output of :meth:`embed`.
            modalities: streams to fuse, in stacking order.
            keep_all: every item in every stream, an absent input left to the fusion module's
                missing-modality handling (inference on one modality). Otherwise a stream
                covers only the items that have its inputs (training), and a stream no item
                can run is left out.

        Returns:
            The fused streams (:class:`FusedStream`), each (B_m, T, D).
        """
        ref = next((x for x in (feats.audio, feats.video) if x is not None), None)
        if ref is None:
            raise ValueError("fuse needs audio or video features")
        batch = ref.shape[0]
        streams: list[FusedStream] = []
        for m in modalities:
            use_a, use_v = _USES[check_modality(m)]
            if keep_all:
                index = torch.arange(batch, device=ref.device)
            else:
                if (use_a and feats.audio is None) or (use_v and feats.video is None):
                    continue
                keep = torch.ones(batch, dtype=torch.bool, device=ref.device)
                if use_a:
                    keep = keep & feats.has_audio
                if use_v:
                    keep = keep & feats.has_video
                index = keep.nonzero().squeeze(1)
                if index.numel() == 0:
                    continue
            x, lengths = self.fusion(
                _select(feats.audio, index, use_a, batch),
                _select(feats.video, index, use_v, batch),
                _select(feats.audio_lengths, index, use_a, batch),
                _select(feats.video_lengths, index, use_v, batch),
            )
            streams.append(FusedStream(m, index, x, lengths))
        return streams

    def fuse(
        self, feats: Embedded, modalities: Sequence[str] = MODALITIES, keep_all: bool = False
    ) -> Fused | None:
        """:meth:`fuse_streams` stacked along the batch axis ((3B, T, D) for A, V and AV of B
        items); ``None`` when no stream can run."""
        streams = self.fuse_streams(feats, modalities, keep_all)
        return stack_streams(streams) if streams else None

    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, return_hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor,
                                                    list[torch.Tensor]]:
        """Run the shared encoder.

        Args:
            x: (N, T, D) fused features; lengths: (N,) or ``None`` (all T).
            return_hidden: also return every encoder layer's output, (N, T, D) each, before
                the encoder's final norm (the layers that LayerDrop skipped are left out).

        Returns:
            enc (N, T, D), zero past each length, enc_lengths (N,) [, hidden states].
        """
        if not return_hidden:
            return self.encoder(x, lengths)
        if not getattr(self.encoder, "returns_hidden", False):
            raise ValueError(f"{type(self.encoder).__name__} cannot return hidden states")
        return self.encoder(x, lengths, return_hidden=True)

    def decode(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor | None,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor | None,
        return_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoder.

        Args:
            tokens: (N, L) decoder inputs starting with sos; token_lengths: (N,) or ``None``.
            enc: (N, T, D) encoder output; enc_lengths: (N,) or ``None``.
            return_states: also return the decoder states (N, L, D): its final-norm outputs,
                the inputs of its output layer.

        Returns:
            logits (N, L, V) [, states (N, L, D)].
        """
        if self.decoder is None:
            raise ValueError("this model has no decoder")
        check_shape("decoder_tokens", tokens, 2, "(B, L)")
        if return_states:
            return self.decoder(tokens, token_lengths, enc, enc_lengths, return_states=True)
        return self.decoder(tokens, token_lengths, enc, enc_lengths)

    # ------------------------------------------------------------------ compositions
    def encode_modality(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
        modality: str = "audiovisual",
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor,
                                                    list[torch.Tensor]]:
        """Encode one modality: :meth:`embed`, :meth:`fuse` (``keep_all``), :meth:`encode`.

        Args:
            audio: (B, S) or ``None``; audio_lengths: (B,) samples (0: item without audio).
            video: (B, T, 1, H, W) or ``None``; video_lengths: (B,) frames.
            modality: ``"audio"``, ``"video"`` or ``"audiovisual"``. The streams the modality
                does not use are not computed; a missing stream of ``"audiovisual"`` (``None``
                or length 0) is handled by the fusion module.
            return_hidden: see :meth:`encode`.

        Returns:
            enc (B, T, D), zero past each length, and enc_lengths (B,) [, hidden states].
        """
        use_a, use_v = _USES[check_modality(modality)]
        if not use_v:
            video = video_lengths = None
        if not use_a:
            audio = audio_lengths = None
        if audio is None and video is None:
            raise ValueError(f"modality {modality!r} needs inputs that were not given")
        fused = self.fuse(self.embed(audio, audio_lengths, video, video_lengths, (modality,)),
                          (modality,), keep_all=True)
        assert fused is not None
        return self.encode(fused.x, fused.lengths, return_hidden)

    def forward_unified(
        self,
        audio: torch.Tensor | None,
        audio_lengths: torch.Tensor | None,
        video: torch.Tensor | None,
        video_lengths: torch.Tensor | None,
        decoder_tokens: torch.Tensor | None = None,
        decoder_token_lengths: torch.Tensor | None = None,
        modalities: Sequence[str] = MODALITIES,
        return_decoder_states: bool = False,
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
            modalities: streams to run, a subset of :data:`~avsr.modalities.MODALITIES`.
            return_decoder_states: fill ``ModalityOutput.decoder_states``.

        Returns:
            ``{modality: ModalityOutput}`` for the streams that ran.
        """
        for m in modalities:
            check_modality(m)
        ref = audio if audio is not None else video
        if ref is None:
            raise ValueError("forward_unified needs audio or video")
        batch = ref.shape[0]
        if audio is not None and audio_lengths is None:
            audio_lengths = torch.full((batch,), audio.shape[1], device=ref.device)
        if video is not None and video_lengths is None:
            video_lengths = torch.full((batch,), video.shape[1], device=ref.device)
        # every given stream's front-end runs (its batch-norm statistics see every batch)
        fused = self.fuse(self.embed(audio, audio_lengths, video, video_lengths), modalities)
        if fused is None:
            return {}
        enc, enc_lengths = self.encode(fused.x, fused.lengths)
        ctc = self.ctc(enc) if self.ctc is not None else None
        logits = states = None
        if self.decoder is not None and decoder_tokens is not None:
            check_shape("decoder_tokens", decoder_tokens, 2, "(B, L)")
            tok_len = decoder_token_lengths
            logits = self.decode(
                decoder_tokens.index_select(0, fused.index),
                tok_len.index_select(0, fused.index) if tok_len is not None else None,
                enc, enc_lengths, return_states=return_decoder_states,
            )
            if return_decoder_states:
                logits, states = logits
        parts = [fused.split(t) for t in (fused.index, enc, enc_lengths, ctc, logits, states)]
        return {m: ModalityOutput(*(p[m] for p in parts)) for m in fused.modalities}

    # calling the module (hooks, DDP, torch.compile) runs the unified pass
    forward = forward_unified
