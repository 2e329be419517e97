"""The built-in synthetic audio-visual speech corpus (espeak-ng speech + rendered lips).

Quick use::

    from avsr.data.synthetic import generate_corpus
    summary = generate_corpus("data/synthetic", seed=0, num_train=1600, num_val=200,
                              num_test=200)

or ``python -m avsr.data.synthetic --out data/synthetic``. The corpus is written in LRS3's
layout (``trainval/``, ``test/``, ``val_ids.txt``) with ``corpus.json`` describing it.

Names are imported lazily, so ``--help`` and the light modules (text, visemes) do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GENERATOR_VERSION": "generate",
    "PlannedUtterance": "generate",
    "SyntheticUtterance": "generate",
    "format_transcript": "generate",
    "generate_corpus": "generate",
    "plan_corpus": "generate",
    "synthesize_utterance": "generate",
    "Speaker": "speakers",
    "sample_speakers": "speakers",
    "DOMAINS": "text",
    "Sentence": "text",
    "sample_sentence": "text",
    "PHONEME_TO_VISEMES": "visemes",
    "VISEMES": "visemes",
    "phoneme_visemes": "visemes",
    "trajectory": "visemes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
