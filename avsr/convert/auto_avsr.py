"""auto_avsr checkpoints (Ma et al., "Auto-AVSR", ICASSP 2023; mpc001/auto_avsr v1.0.0).

Layouts read:

- ``model_avg_10.pth``: the ESPnet ``E2E`` state dict, no prefix; a Lightning ``last.ckpt``
  holds the same under ``state_dict`` with the ``model.`` prefix.
- single modality (``e2e_asr_conformer.E2E``): ``encoder.frontend`` (video ResNet if it has
  ``frontend3D``, else the audio ResNet), ``encoder.embed.0`` (Linear 512 -> D),
  ``encoder.encoders.N``, ``encoder.after_norm``, ``decoder``, ``ctc``.
- audio-visual (``e2e_asr_conformer_av.E2E``): ``encoder`` = the video branch,
  ``aux_encoder`` = the audio branch, ``fusion.{fc1, bn1, fc2}`` (the MLP head).

Target models (configs/experiment/reproduce/autoavsr_*): a single-modality checkpoint goes
into ``{video,audio}_frontend`` + ``fusion`` = ``ModalityLinearFusion(streams=[video])`` (its
``linear_v`` is ``encoder.embed.0``) + ``encoder`` = ``RelPosEncoder`` Conformer; the
audio-visual one into ``fusion`` = ``ModalityEncodersFusion`` (a ``RelPosEncoder`` with
``input_dim`` per stream, ``MLPFusion``) + ``encoder`` = ``IdentityEncoder``. Decoder:
``TransformerDecoder(layer_norm_eps=1e-12)``; token ids are the checkpoint's (blank 0,
sos = eos = V - 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from avsr.convert.common import Rule, rename
from avsr.convert.espnet import ctc_rules, decoder_rules, encoder_layer_rules

__all__ = ["convert_auto_avsr", "auto_avsr_kind"]


def _unwrap(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut Lightning's ``model.`` prefix when every key has it."""
    if state and all(k.startswith("model.") for k in state):
        return {k[len("model."):]: v for k, v in state.items()}
    return dict(state)


def auto_avsr_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``"video"``, ``"audio"`` or ``"audiovisual"`` from the keys of a (prefix-free) state."""
    if any(k.startswith("aux_encoder.") for k in state):
        return "audiovisual"
    if any(k.startswith("encoder.frontend.frontend3D.") for k in state):
        return "video"
    return "audio"


def _branch_rules(src: str, frontend: str, encoder: str, embed: str) -> list[Rule]:
    s = src.replace(".", r"\.")
    return [
        Rule(rf"{s}frontend\.(.+)", rf"{frontend}.\1"),
        Rule(rf"{s}embed\.0\.(weight|bias)", rf"{embed}.\1"),
        *encoder_layer_rules(src, encoder),
    ]


def convert_auto_avsr(state: Mapping[str, torch.Tensor], source: str = "auto_avsr"
                      ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename an auto_avsr v1.0.0 state dict to avsr's keys.

    Args:
        state: the checkpoint's state dict (``model.`` prefix allowed).
        source: name for messages.

    Returns:
        (renamed state, dropped keys with reasons).

    Raises:
        CheckpointImportError: keys of no known module.
    """
    state = _unwrap(state)
    kind = auto_avsr_kind(state)
    if kind == "audiovisual":
        rules = [
            *_branch_rules("encoder.", "video_frontend", "fusion.video_encoder.",
                           "fusion.video_encoder.embed"),
            *_branch_rules("aux_encoder.", "audio_frontend", "fusion.audio_encoder.",
                           "fusion.audio_encoder.embed"),
            Rule(r"fusion\.(fc1|bn1|fc2)\.(.+)", r"fusion.fusion.\1.\2"),
        ]
    else:
        stream = "v" if kind == "video" else "a"
        rules = _branch_rules("encoder.", f"{kind}_frontend", "encoder.", f"fusion.linear_{stream}")
    rules += [*decoder_rules("decoder.", "decoder."), *ctc_rules("ctc.")]
    return rename(state, rules, source)
