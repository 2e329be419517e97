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
- dropped with a reason: ``mask_emb``, ``final_proj``, ``label_embs_concat`` (pre-training;
  :func:`cluster_head_state` loads the last two into avsr's ``ClusterHead``).

Seq2seq fine-tuned models also carry fairseq's decoder (pre-LN, tied input/output embedding,
no embedding scaling, fairseq's sinusoidal positions: ``cat(sin, cos)`` numbered from
``padding_idx + 1`` = 2). ``decoder.*`` keys keep their names (``embed_tokens`` also fills the
tied ``output_projection``); ``embed_positions._float_tensor`` is a placeholder fairseq never
reads. The target decoder must be built with ``scale_embedding: false``, ``positions:
fairseq``, ``first_position: 2`` and ``tie_embeddings: true`` (:func:`check_decoder`), or the
decoder left out with the ``decoder=False`` option (fine-tune a fresh one, ``keep_init``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from avsr.convert.common import CheckpointImportError, Rule, rename
from avsr.convert.unpickler import to_plain

__all__ = ["convert_avhubert", "check_decoder", "cluster_head_state"]

_PRETRAIN = "AV-HuBERT pre-training only (mask embedding, cluster-prediction head)"
_DECODER = "fairseq seq2seq decoder left out (decoder=False)"
_PLACEHOLDER = "fairseq placeholder buffer (only its dtype and device are read)"
#: TransformerDecoder settings under which fairseq's decoder weights compute the same function
DECODER_SETTINGS = {"scale": 1.0, "layout": "fairseq", "first_position": 2}


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


def _decoder_rules() -> list[Rule]:
    return [
        Rule(r"decoder\.embed_positions\._float_tensor", None, _PLACEHOLDER),
        # fairseq's upgrade_state_dict may add a version marker to a decoder's keys
        Rule(r"decoder\.version", None, "fairseq state-dict version marker"),
        Rule(r"decoder\.(embed_tokens\.weight|output_projection\.weight|layer_norm\..+"
             r"|layers\.\d+\..+)", r"decoder.\1"),
    ]


def convert_avhubert(obj: Any, source: str = "avhubert", decoder: bool = True
                     ) -> tuple[tuple[dict[str, torch.Tensor], dict[str, str]], dict[str, Any]]:
    """Rename an AV-HuBERT checkpoint (pre-trained or seq2seq fine-tuned) to avsr's keys.

    Args:
        obj: the loaded fairseq checkpoint (``cfg``, ``model``, ``task_state``) or a bare
            state dict.
        source: name for messages.
        decoder: import a fine-tuned model's decoder (else its keys are reported as dropped).

    Returns:
        ((renamed state, dropped keys with reasons), metadata: ``cfg`` as plain dicts).
    """
    meta: dict[str, Any] = {}
    state = _state(obj, source, meta)
    encoder: dict[str, torch.Tensor] = {}
    dec: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    finetuned = any(k.startswith("encoder.w2v_model.") for k in state)
    for key, value in state.items():
        if finetuned and key.startswith("encoder.w2v_model."):
            encoder[key[len("encoder.w2v_model."):]] = value
        elif finetuned and key.startswith("decoder."):
            if decoder:
                dec[key] = value
            else:
                dropped[key] = _DECODER
        else:
            encoder[key] = value  # unknown keys: rename() reports them
    mapped, more = rename(encoder, _rules(), source)
    dropped.update(more)
    if dec:
        dec_mapped, more = rename(dec, _decoder_rules(), source)
        # fairseq ties the output layer to the embedding and stores it once
        if "decoder.embed_tokens.weight" in dec_mapped:
            dec_mapped.setdefault("decoder.output_projection.weight",
                                  dec_mapped["decoder.embed_tokens.weight"])
        mapped.update(dec_mapped)
        dropped.update(more)
    meta["finetuned"] = finetuned
    return (mapped, dropped), meta


def _state(obj: Any, source: str, meta: dict[str, Any]) -> Mapping[str, torch.Tensor]:
    """The tensor state dict of a fairseq checkpoint or a bare one; ``cfg`` into ``meta``."""
    state = obj
    if isinstance(obj, Mapping) and "model" in obj:
        state = obj["model"]
        if obj.get("cfg") is not None:
            meta["cfg"] = to_plain(obj["cfg"])
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise CheckpointImportError(source, note="no tensor state dict under 'model'")
    return state


def check_decoder(model: nn.Module, mapped: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse fairseq decoder weights for a decoder that would run them differently.

    Raises:
        CheckpointImportError: ``mapped`` fills ``decoder.*`` but ``model.decoder`` scales its
            embedding, uses another position table or unties its output layer.
    """
    if not any(k.startswith("decoder.") for k in mapped):
        return
    target = getattr(model, "decoder", None)
    pos = getattr(target, "embed_positions", None)
    found = {name: getattr(pos, name, None) for name in DECODER_SETTINGS}
    tied = target is not None and target.output_projection.weight is target.embed_tokens.weight
    if found != DECODER_SETTINGS or not tied:
        raise CheckpointImportError(source, note=(
            f"the fairseq decoder needs a TransformerDecoder with scale_embedding=false, "
            f"positions=fairseq, first_position=2, tie_embeddings=true (found {found}, tied "
            f"{tied}); or pass decoder=False and keep_init=[decoder.]"))


def cluster_head_state(obj: Any, source: str = "avhubert") -> dict[str, torch.Tensor]:
    """A pre-trained checkpoint's cluster head as the state dict of avsr's ``ClusterHead``.

    ``final_proj`` (Linear D -> final_dim) becomes ``proj`` and ``label_embs_concat``
    (K, final_dim) ``embeddings``; with one label set the untied projection is that one.
    K counts the k-means dictionary's 4 special symbols (``<s>``, ``<pad>``, ``</s>``,
    ``<unk>``) before the cluster ids: 14 rows for 10 clusters.

    Raises:
        CheckpointImportError: no head in the checkpoint, or several label sets.
    """
    state = _state(obj, source, {})
    names = ("final_proj.weight", "final_proj.bias", "label_embs_concat")
    absent = [k for k in names if k not in state]
    if absent:
        raise CheckpointImportError(source, missing=absent, note="no cluster-prediction head")
    proj_dim = state["label_embs_concat"].shape[1]
    if state["final_proj.weight"].shape[0] != proj_dim:
        raise CheckpointImportError(source, note=(
            f"final_proj has {state['final_proj.weight'].shape[0]} outputs for {proj_dim}-d "
            "label embeddings: several label sets are not supported"))
    return {"proj.weight": state["final_proj.weight"], "proj.bias": state["final_proj.bias"],
            "embeddings": state["label_embs_concat"]}
