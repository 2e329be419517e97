"""wav2vec 2.0 / HuBERT checkpoints into :class:`~avsr.models.frontends.wav2vec2.Wav2Vec2Frontend`
through torchaudio's importers.

- fairseq (``wav2vec_small.pt``, ``wav2vec_vox_new.pt``, ``hubert_base_ls960.pt``, fine-tuned
  ``w2v_encoder.w2v_model.*``): the pickle is read without fairseq (restricted unpickler) and
  every key goes through the mapping of ``torchaudio.models.wav2vec2.utils.import_fairseq``
  (the one its ``import_fairseq_model`` applies; the architecture comes from the avsr config,
  so a mismatch shows as shape errors rather than being guessed).
- Hugging Face (a folder with ``config.json`` and ``pytorch_model.bin`` / a state dict):
  ``torchaudio.models.wav2vec2.utils.import_huggingface_model`` runs on a shell object that
  exposes the checkpoint's sub-state-dicts and config the way a ``transformers`` model does,
  so ``transformers`` need not be installed.
- torchaudio: a ``Wav2Vec2Model`` state dict (``feature_extractor.*``, ``encoder.*``).

Only ``feature_extractor.*`` and ``encoder.*`` of the front-end are filled; its 50 -> 25 Hz
``downsample`` and step counter stay at their initialisation (reported as ``kept_init``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from avsr.convert.common import CheckpointImportError, read_checkpoint, state_dict_of

__all__ = ["convert_wav2vec2", "default_keep_init", "load_source", "FLAVOURS"]

FLAVOURS = ("auto", "fairseq", "huggingface", "torchaudio")
_DROP = "pre-training / CTC head of wav2vec 2.0 (quantizer, project_q, final_proj, mask_emb, aux)"


def _weight_norm_names(key: str) -> str:
    # torchaudio's importers name the positional convolution's weight norm weight_g / weight_v;
    # its modules now use torch.nn.utils.parametrizations (original0 = g, original1 = v)
    return re.sub(r"\.weight_g$", ".parametrizations.weight.original0",
                  re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key))


def _from_fairseq(state: Mapping[str, torch.Tensor], source: str
                  ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

    out, dropped, unknown = {}, {}, []
    for key, value in state.items():
        k = key[len("w2v_encoder."):] if key.startswith("w2v_encoder.") else key
        try:
            new = _map_key(k)
        except ValueError:
            unknown.append(key)
            continue
        if new is None or new.startswith("aux.") or new == "label_embs_concat":
            dropped[key] = _DROP
        else:
            out[_weight_norm_names(new)] = value
    if unknown:
        raise CheckpointImportError(source, unknown=unknown)
    return out, dropped


class _StateModule:
    """What torchaudio's Hugging Face importer reads from a submodule: its ``state_dict()``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:  # noqa: D102
        return dict(self._state)


def _from_huggingface(state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                      source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from torchaudio.models.wav2vec2.utils.import_huggingface import import_huggingface_model

    body = {k[len("wav2vec2."):] if k.startswith("wav2vec2.") else k: v for k, v in state.items()}
    parts = {"feature_extractor.": {}, "feature_projection.": {}, "encoder.": {}}
    dropped, unknown = {}, []
    for key, value in body.items():
        for prefix, part in parts.items():
            if key.startswith(prefix):
                part[_hf_weight_norm(key[len(prefix):])] = value
                break
        else:
            if key.startswith(("lm_head.", "masked_spec_embed", "quantizer.", "project_")):
                dropped[key] = _DROP
            else:
                unknown.append(key)
    if unknown:
        raise CheckpointImportError(source, unknown=unknown)
    # a shell with the attributes import_huggingface_model reads (class name, config, parts)
    shell_cls = type("Wav2Vec2Model", (), {})
    shell = shell_cls()
    shell.config = SimpleNamespace(**config)
    shell.feature_extractor = _StateModule(parts["feature_extractor."])
    shell.feature_projection = _StateModule(parts["feature_projection."])
    shell.encoder = _StateModule(parts["encoder."])
    imported = import_huggingface_model(shell)  # type: ignore[arg-type]
    return {k: v for k, v in imported.state_dict().items() if not k.startswith("aux.")}, dropped


def _hf_weight_norm(key: str) -> str:
    # older transformers checkpoints: weight_g / weight_v; torchaudio's modules: parametrizations
    return _weight_norm_names(key)


def _flavour(obj: Any, state: Mapping[str, torch.Tensor]) -> str:
    if isinstance(obj, Mapping) and ("cfg" in obj or "args" in obj):
        return "fairseq"
    if any(k.startswith(("wav2vec2.", "feature_projection.")) for k in state):
        return "huggingface"
    if any(k.startswith("encoder.transformer.") for k in state):
        return "torchaudio"
    return "fairseq"


def convert_wav2vec2(obj: Any, source: str = "wav2vec2", flavour: str = "auto",
                     prefix: str = "audio_frontend.", config: Mapping[str, Any] | str | None = None
                     ) -> tuple[tuple[dict[str, torch.Tensor], dict[str, str]], dict[str, Any]]:
    """Rename a wav2vec 2.0 / HuBERT checkpoint to a ``Wav2Vec2Frontend`` under ``prefix``.

    Args:
        obj: loaded checkpoint (fairseq dict, HF or torchaudio state dict).
        source: checkpoint path (a Hugging Face ``config.json`` is looked up beside it).
        flavour: ``"fairseq"``, ``"huggingface"``, ``"torchaudio"`` or ``"auto"``.
        prefix: the front-end's prefix in the target model (``""`` for a bare front-end).
        config: Hugging Face config (dict or path to ``config.json``) if not beside ``source``.

    Returns:
        ((renamed state, dropped keys), metadata with the flavour).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    state = state_dict_of(obj, source)
    flavour = _flavour(obj, state) if flavour == "auto" else flavour
    if flavour == "fairseq":
        body, dropped = _from_fairseq(state, source)
    elif flavour == "huggingface":
        if config is None:
            config = Path(source).parent / "config.json"
        if not isinstance(config, Mapping):
            if not Path(config).is_file():
                raise CheckpointImportError(source, note=f"Hugging Face checkpoint needs its "
                                            f"config.json (looked at {config})")
            config = json.loads(Path(config).read_text())
        body, dropped = _from_huggingface(state, config, source)
    else:
        keep = ("feature_extractor.", "encoder.")
        body = {k: v for k, v in state.items() if k.startswith(keep)}
        dropped = {k: _DROP for k in state if not k.startswith(keep)}
    return ({prefix + k: v for k, v in body.items()}, dropped), {"flavour": flavour,
                                                                "prefix": prefix}


def default_keep_init(model_keys: list[str], prefix: str) -> list[str]:
    """Model keys outside the wav2vec 2.0 body (``downsample``, counters, the rest of a model)."""
    body = (prefix + "feature_extractor.", prefix + "encoder.")
    return sorted({k for k in model_keys if not k.startswith(body)})


def load_source(path: str | Path) -> tuple[Any, str]:
    """(checkpoint, its file name) of a checkpoint file or a Hugging Face folder."""
    path = Path(path)
    if path.is_dir():
        for name in ("pytorch_model.bin", "model.pt"):
            if (path / name).is_file():
                return read_checkpoint(path / name), str(path / name)
        raise FileNotFoundError(f"{path}: no pytorch_model.bin in this Hugging Face folder")
    return read_checkpoint(path), str(path)
