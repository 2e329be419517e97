"""Importers of public checkpoints: auto_avsr, USR, AV-HuBERT and wav2vec 2.0 / HuBERT.

``python -m avsr.convert --from FORMAT IN OUT [model overrides]`` writes a checkpoint that
``python -m avsr.evaluate ckpt=OUT`` decodes; ``init: [{format: FORMAT, path: IN}]`` in a
training config loads one before training (:func:`import_checkpoint`). Every importer maps the
checkpoint's keys to avsr's with explicit rules and loads all or nothing: unknown or missing
keys raise :class:`CheckpointImportError` with the full lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsr.convert.common import (
    CheckpointImportError, ImportReport, load_mapped, read_checkpoint, state_dict_of,
)

__all__ = ["FORMATS", "CheckpointImportError", "ImportReport", "convert_state_dict",
           "import_checkpoint", "read_checkpoint"]

Converter = Callable[..., tuple[dict[str, torch.Tensor], dict[str, str]]]


def _auto_avsr(obj: Any, source: str, **options: Any):
    from avsr.convert.auto_avsr import convert_auto_avsr

    return convert_auto_avsr(state_dict_of(obj, source), source=source, **options), {}


def _usr(obj: Any, source: str, **options: Any):
    from avsr.convert.usr import convert_usr

    return convert_usr(state_dict_of(obj, source), source=source, **options), {}


def _avhubert(obj: Any, source: str, **options: Any):
    from avsr.convert.avhubert import convert_avhubert

    return convert_avhubert(obj, source=source, **options)


def _wav2vec2(obj: Any, source: str, **options: Any):
    from avsr.convert.wav2vec2 import convert_wav2vec2

    return convert_wav2vec2(obj, source=source, **options)


#: format name -> function(loaded checkpoint, source, **options) -> ((state, dropped), meta)
FORMATS: dict[str, Callable[..., Any]] = {
    "auto_avsr": _auto_avsr,
    "usr": _usr,
    "avhubert": _avhubert,
    "wav2vec2": _wav2vec2,
}


def convert_state_dict(format: str, checkpoint: Any, source: str = "checkpoint",
                       **options: Any) -> tuple[dict[str, torch.Tensor], dict[str, str],
                                                dict[str, Any]]:
    """Rename a loaded checkpoint (``read_checkpoint``'s result or a state dict).

    Returns:
        (state under avsr's keys, dropped checkpoint keys with reasons, metadata).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; expected one of "
                         f"{sorted(FORMATS)}")
    (mapped, dropped), meta = FORMATS[format](checkpoint, source, **options)
    return mapped, dropped, meta


def import_checkpoint(model: nn.Module, format: str, path: str | Path | Mapping[str, Any],
                      keep_init: Sequence[str] = (), **options: Any) -> ImportReport:
    """Load a public checkpoint into an avsr model built from the matching config.

    Args:
        model: the target model (``AVSRModel``, or a front-end for ``wav2vec2``).
        format: ``"auto_avsr"``, ``"usr"``, ``"avhubert"`` or ``"wav2vec2"``.
        path: checkpoint file, or an already loaded checkpoint / state dict.
        keep_init: prefixes of model keys allowed to stay at their initialisation.
        **options: format options (USR: ``heads``, ``ema``; AV-HuBERT: ``decoder``;
            wav2vec2: ``flavour``, ``prefix``, ``config``; with no ``keep_init`` it keeps
            everything outside the wav2vec 2.0 body at its initialisation).

    Returns:
        The :class:`ImportReport`.

    Raises:
        CheckpointImportError: unknown, missing or mis-shaped keys (nothing is loaded).
    """
    if isinstance(path, (str, Path)) and format == "wav2vec2":
        from avsr.convert.wav2vec2 import load_source

        checkpoint, source = load_source(path)
    elif isinstance(path, (str, Path)):
        source, checkpoint = str(path), read_checkpoint(path)
    else:
        source, checkpoint = f"{format} checkpoint", path
    if format == "wav2vec2" and not keep_init:
        # a front-end checkpoint: everything outside the wav2vec 2.0 body stays (reported)
        from avsr.convert.wav2vec2 import default_keep_init

        keep_init = default_keep_init(list(model.state_dict()),
                                      options.get("prefix", "audio_frontend."))
    mapped, dropped, meta = convert_state_dict(format, checkpoint, source, **options)
    if format == "avhubert":
        from avsr.convert.avhubert import check_decoder

        check_decoder(model, mapped, source)
    report = load_mapped(model, mapped, source, dropped, keep_init)
    report.meta = meta
    return report
