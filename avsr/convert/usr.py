"""USR checkpoints (Haliassos et al., "Unified Speech Recognition", NeurIPS 2024;
ahaliassos/usr).

Layouts read (the ESPnet ``E2E`` backbone under some prefix):

- fine-tuned / averaged: ``_orig_mod.`` (``torch.compile``) + backbone keys;
- semi-supervised: ``_orig_mod.model.backbone.`` beside ``_orig_mod.model.target_backbone.``
  (EMA copy) and the pseudo-label heads ``_orig_mod.model.out_layer_unlabelled_*``;
- pre-training: ``model._orig_mod.model.backbone.encoder.`` (encoder only: import it with
  ``keep_init=["decoder.", "ctc."]``);
- a Lightning ``state_dict`` with a further ``model.`` prefix.

Backbone: ``encoder.frontend_v`` / ``frontend_a`` (ResNets), ``encoder.linear_{v,a,av}``,
``encoder.encoders.N`` (relative-position transformer with LayerScale), ``encoder.after_norm``,
``decoder`` with three output layers ``out_layer_{v,a,av}``, and CTC heads ``ctc_{v,a,av}``.
avsr's model has one CTC head and one decoder output layer shared by the three streams, so
``heads`` picks which modality's pair is imported (the paper scores V with the V heads, and so
on: import once per modality); the other two pairs are reported as dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from avsr.convert.common import CheckpointImportError, Rule, rename
from avsr.convert.espnet import decoder_rules, encoder_layer_rules

__all__ = ["convert_usr", "HEADS"]

HEADS = {"v": "v", "video": "v", "a": "a", "audio": "a", "av": "av", "audiovisual": "av"}


def _backbone(state: Mapping[str, torch.Tensor], ema: bool, source: str
              ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keys of the chosen backbone with their prefix cut, and the keys left out."""
    marker = "model.target_backbone." if ema else "model.backbone."
    prefixes = {k[: k.index(marker) + len(marker)] for k in state if marker in k}
    if len(prefixes) > 1:
        raise CheckpointImportError(source, note=f"several backbones: {sorted(prefixes)}")
    if prefixes:
        prefix = prefixes.pop()
        reason = ("outside the imported backbone (EMA teacher, pseudo-label heads or "
                  "pre-training predictor)")
    elif ema:
        raise CheckpointImportError(source, note="ema=true but the checkpoint holds no "
                                    "target_backbone (EMA teacher)")
    else:
        prefix = ""
        for p in ("model._orig_mod.", "_orig_mod.", "model."):
            if state and all(k.startswith(p) for k in state):
                prefix = p
                break
        reason = ""
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    dropped = {k: reason for k in state if not k.startswith(prefix)}
    return kept, dropped


def convert_usr(state: Mapping[str, torch.Tensor], heads: str = "av", ema: bool = False,
                source: str = "usr") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename a USR state dict to avsr's keys.

    Args:
        state: the checkpoint's state dict.
        heads: which modality's CTC head and decoder output layer to import: ``"v"``, ``"a"``
            or ``"av"`` (or ``"video"``, ``"audio"``, ``"audiovisual"``).
        ema: import the EMA teacher (``target_backbone``) of a semi-supervised checkpoint
            instead of the student.
        source: name for messages.

    Returns:
        (renamed state, dropped keys with reasons).
    """
    if heads not in HEADS:
        raise ValueError(f"heads must be one of {sorted(HEADS)}, got {heads!r}")
    h = HEADS[heads]
    backbone, dropped = _backbone(state, ema, source)
    other = f"another modality's head (heads={h})"
    rules = [
        Rule(r"encoder\.frontend_v\.(.+)", r"video_frontend.\1"),
        Rule(r"encoder\.frontend_a\.(.+)", r"audio_frontend.\1"),
        Rule(r"encoder\.linear_(v|a|av)\.(weight|bias)", r"fusion.linear_\1.\2"),
        *encoder_layer_rules("encoder.", "encoder."),
        *decoder_rules("decoder.", "decoder.", output_layer=None),
        Rule(rf"decoder\.out_layer_{h}\.(weight|bias)", r"decoder.output_projection.\1"),
        Rule(r"decoder\.out_layer_(v|a|av)\..+", None, other),
        Rule(rf"ctc_{h}\.ctc_lo\.(weight|bias)", r"ctc.ctc_lo.\1"),
        Rule(r"ctc_(v|a|av)\.ctc_lo\..+", None, other),
    ]
    mapped, more = rename(backbone, rules, source)
    dropped.update(more)
    return mapped, dropped
