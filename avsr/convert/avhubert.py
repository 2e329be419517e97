"""AV-HuBERT checkpoints (Shi et al., "Learning Audio-Visual Speech Representation by Masked
Multimodal Cluster Prediction", ICLR 2022; facebookresearch/av_hubert).

fairseq pickles holding ``cfg`` (omegaconf), ``model`` (the state dict) and ``task_state``
(fairseq ``Dictionary`` objects) are read without fairseq by the restricted unpickler
(:mod:`avsr.convert.unpickler`); ``cfg`` comes back as plain dicts in the report's metadata.

Keys: pre-trained models keep the encoder at the top level; seq2seq fine-tuned models put it
under ``encoder.w2v_model.``. Target (configs/experiment/reproduce/avhubert_*):

- ``feature_extractor_audio.proj`` -> ``audio_frontend.proj`` (``FilterbankFrontend``);
- ``feature_extractor_video.resnet.{frontend3D, trunk}`` -> ``video_frontend`` (PReLU
  ``VideoResNet``), ``feature_extractor_video.proj`` -> ``fusion.video_proj``
  (``ModalityEncodersFusion`` with ``video_input_dim`` 512 and an identity video encoder);
- ``layer_norm``, ``post_extract_proj`` -> ``fusion.fusion.*`` (``ConcatFusion``);
- ``encoder.pos_conv.0.{weight_g, weight_v, bias}``, ``encoder.layers.N``,
  ``encoder.layer_norm`` -> ``encoder.*`` (``TransformerEncoder``, ``pos_enc: conv``);
- dropped with a reason: ``mask_emb``, ``final_proj``, ``label_embs_concat`` (pre-training).

The seq2seq decoder is NOT imported: fairseq's sinusoidal position table (``cat(sin, cos)``,
positions from ``padding_idx + 1``) is not the one of avsr's ``TransformerDecoder``, so its
weights would run with the wrong positions. Its keys are reported as dropped and the target
decoder must be named in ``keep_init`` (fine-tune it), otherwise the import fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from avsr.convert.common import CheckpointImportError, Rule, rename
from avsr.convert.unpickler import to_plain

__all__ = ["convert_avhubert"]

_PRETRAIN = "AV-HuBERT pre-training only (mask embedding, cluster-prediction head)"
_DECODER = ("fairseq seq2seq decoder: its sinusoidal position layout differs from avsr's "
            "TransformerDecoder, so it is not imported (keep_init=[decoder.])")


def _rules() -> list[Rule]:
    g = r"(weight|bias)"
    return [
        Rule(rf"feature_extractor_audio\.proj\.{g}", r"audio_frontend.proj.\1"),
        Rule(r"feature_extractor_video\.resnet\.(frontend3D|trunk)\.(.+)",
             r"video_frontend.\1.\2"),
        Rule(rf"feature_extractor_video\.proj\.{g}", r"fusion.video_proj.\1"),
        Rule(rf"layer_norm\.{g}", r"fusion.fusion.layer_norm.\1"),
        Rule(rf"post_extract_proj\.{g}", r"fusion.fusion.post_extract_proj.\1"),
        Rule(r"encoder\.pos_conv\.0\.weight_g",
             "encoder.pos_enc.pos_conv.0.parametrizations.weight.original0"),
        Rule(r"encoder\.pos_conv\.0\.weight_v",
             "encoder.pos_enc.pos_conv.0.parametrizations.weight.original1"),
        Rule(r"encoder\.pos_conv\.0\.bias", "encoder.pos_enc.pos_conv.0.bias"),
        Rule(r"encoder\.layers\.(\d+)\.(.+)", r"encoder.layers.\1.\2"),
        Rule(rf"encoder\.layer_norm\.{g}", r"encoder.layer_norm.\1"),
        Rule(r"(mask_emb|label_embs_concat|final_proj\..+)", None, _PRETRAIN),
    ]


def convert_avhubert(obj: Any, source: str = "avhubert"
                     ) -> tuple[tuple[dict[str, torch.Tensor], dict[str, str]], dict[str, Any]]:
    """Rename an AV-HuBERT checkpoint (pre-trained or seq2seq fine-tuned) to avsr's keys.

    Args:
        obj: the loaded fairseq checkpoint (``cfg``, ``model``, ``task_state``) or a bare
            state dict.
        source: name for messages.

    Returns:
        ((renamed state, dropped keys with reasons), metadata: ``cfg`` as plain dicts).
    """
    meta: dict[str, Any] = {}
    state = obj
    if isinstance(obj, Mapping) and "model" in obj:
        state = obj["model"]
        if obj.get("cfg") is not None:
            meta["cfg"] = to_plain(obj["cfg"])
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise CheckpointImportError(source, note="no tensor state dict under 'model'")
    encoder: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    finetuned = any(k.startswith("encoder.w2v_model.") for k in state)
    for key, value in state.items():
        if finetuned and key.startswith("encoder.w2v_model."):
            encoder[key[len("encoder.w2v_model."):]] = value
        elif finetuned and key.startswith("decoder."):
            dropped[key] = _DECODER
        elif finetuned:
            encoder[key] = value  # unknown outside the encoder: rename() reports it
        else:
            encoder[key] = value
    mapped, more = rename(encoder, _rules(), source)
    dropped.update(more)
    meta["finetuned"] = finetuned
    return (mapped, dropped), meta
