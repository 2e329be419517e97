"""Data pipeline: corpus readers, media I/O, transforms, noise, tokenizer, sampler, datasets.

Names are imported lazily so ``import avsr.data.io`` (or the synthetic corpus generator) does
not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Utterance": "corpora",
    "LRS3": "corpora",
    "LRS2": "corpora",
    "normalize_text": "corpora",
    "VoxCeleb2": "voxceleb2",
    "AVHuBERTManifest": "manifests",
    "AutoAVSRManifest": "manifests",
    "UtteranceTable": "table",
    "TrainPart": "parts",
    "VideoTransform": "transforms",
    "AudioTransform": "transforms",
    "WhiteNoise": "noise",
    "BabbleNoise": "noise",
    "NoiseAugment": "noise",
    "FixedNoiseMixer": "noise",
    "mix_at_snr": "noise",
    "Tokenizer": "tokenizer",
    "train_tokenizer": "tokenizer",
    "FrameBudgetBatchSampler": "sampler",
    "AVDataset": "dataset",
    "SkipReport": "dataset",
    "TooManyBadItemsError": "dataset",
    "collate_fn": "dataset",
    "AVDataModule": "datamodule",
    "AVDataLoader": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
