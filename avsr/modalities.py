"""Names and rates shared by data and models (a leaf module: it imports nothing of avsr, so
``avsr.data`` and ``avsr.models`` both import it without depending on each other)."""

from __future__ import annotations

__all__ = ["MODALITIES", "STREAMS", "SAMPLE_RATE", "FPS", "SAMPLES_PER_FRAME",
           "check_modality"]

# what a model is asked to recognise from: one stream, the other, or both fused (USR's A/V/AV)
MODALITIES = ("audio", "video", "audiovisual")
# the input streams an item may carry
STREAMS = ("audio", "video")

SAMPLE_RATE = 16000  # Hz, every corpus is resampled to it
FPS = 25  # video frames per second, the encoders' frame rate
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: one video frame of audio


def check_modality(modality: str) -> str:
    """``modality`` if it is one of :data:`MODALITIES`, else a ValueError naming them."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return modality
