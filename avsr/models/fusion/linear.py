"""One linear map per stream combination (USR's unified model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from avsr.modalities import MODALITIES
from avsr.models.fusion.base import Fusion, FusionInputs

__all__ = ["ModalityLinearFusion"]


class ModalityLinearFusion(Fusion):
    """``linear_a`` for audio-only items, ``linear_v`` for video-only items, ``linear_av`` on
    the concatenation for audio-visual items.

    Haliassos et al., "Unified Speech Recognition", NeurIPS 2024 (USR's encoder: Linear 512→D
    for V, for A, and ``linear_av`` on the 1024-d concatenation of video then audio). With a
    single front-end this is auto_avsr's ``encoder.embed.0`` (Linear 512→D). An item whose
    both streams are absent gets ``linear_av`` of the fills. ``missing`` only matters for that
    case and for modality dropout, which turns an audio-visual item into a single-stream one.

    Args:
        audio_dim, video_dim, output_dim, missing, p_modality, p_audio,
            modality_dropout_per_item: sizes, absent streams and modality dropout, as
            :class:`~avsr.models.fusion.base.Fusion` takes them.
        video_first: ``linear_av`` sees (video, audio) as in USR, else (audio, video).
        streams: the stream combinations the model serves, a subset of ``("audio", "video",
            "audiovisual")``; only their maps are built (auto_avsr's single-modality models:
            ``["video"]`` or ``["audio"]``, whose checkpoints hold no other map).
    """

    def __init__(self, audio_dim: int, video_dim: int, output_dim: int, video_first: bool = True,
                 streams: Sequence[str] = MODALITIES, **options: Any) -> None:
        super().__init__(audio_dim, video_dim, output_dim, **options)
        unknown = set(streams) - set(MODALITIES)
        if unknown or not streams:
            raise ValueError(f"streams must be a non-empty subset of {MODALITIES}, got {streams}")
        self.video_first = video_first
        self.streams = tuple(streams)
        if "audio" in streams:
            self.linear_a = nn.Linear(audio_dim, output_dim)
        if "video" in streams:
            self.linear_v = nn.Linear(video_dim, output_dim)
        if "audiovisual" in streams:
            self.linear_av = nn.Linear(audio_dim + video_dim, output_dim)

    def _map(self, stream: str) -> nn.Linear:
        if stream not in self.streams:
            raise ValueError(f"an item needs the {stream!r} map, but this fusion serves only "
                             f"{self.streams}")
        return getattr(self, {"audio": "linear_a", "video": "linear_v",
                              "audiovisual": "linear_av"}[stream])

    def combine(self, s: FusionInputs) -> torch.Tensor:
        """(B, T, Da), (B, T, Dv) -> (B, T, D); see the class docstring."""
        only_a = (s.has_audio & ~s.has_video)[:, None, None]
        only_v = (s.has_video & ~s.has_audio)[:, None, None]
        # compute only the maps some item needs (USR's single-stream passes run one)
        x = None
        if bool(only_a.any()):
            x = self._map("audio")(s.audio)
        if bool(only_v.any()):
            y = self._map("video")(s.video)
            x = y if x is None else torch.where(only_v, y, x)
        if x is None or not bool((only_a | only_v).all()):
            pair = [s.video, s.audio] if self.video_first else [s.audio, s.video]
            y = self._map("audiovisual")(torch.cat(pair, dim=-1))
            x = y if x is None else torch.where(only_a | only_v, x, y)
        return x
