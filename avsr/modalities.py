"""The three input streams of a unified model, named once for the whole package.

``audio`` (ASR), ``video`` (VSR) and ``audiovisual`` (AVSR): the modality of a training stream,
of an evaluation condition and of a transcription request. This module imports nothing from
the package, so data, models, objectives and the command-line tools may all depend on it.
"""

from __future__ import annotations

__all__ = ["MODALITIES", "uses_audio", "uses_video"]

MODALITIES: tuple[str, ...] = ("audio", "video", "audiovisual")


def uses_audio(modality: str) -> bool:
    """Whether a stream of ``modality`` reads the audio."""
    return modality in ("audio", "audiovisual")


def uses_video(modality: str) -> bool:
    """Whether a stream of ``modality`` reads the video."""
    return modality in ("video", "audiovisual")
