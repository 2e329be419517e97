"""Renaming rules for the ESPnet modules that auto_avsr and USR vendor.

ESPnet's relative-position encoder layers already carry avsr's names
(:class:`avsr.models.rel_encoder.RelPosEncoderLayer` follows them), except the convolution
module's misspelt ``pointwise_cov``. The ESPnet decoder (``decoders.N.{self_attn, src_attn,
feed_forward, norm1-3}``, ``after_norm``, ``output_layer``) maps onto
:class:`avsr.models.decoder.TransformerDecoder` (fairseq names). Both use LayerNorm eps 1e-12:
build the target with ``layer_norm_eps: 1e-12`` (the encoder uses it already).
"""

from __future__ import annotations

from avsr.convert.common import Rule

__all__ = ["encoder_layer_rules", "decoder_rules", "ctc_rules"]

_N = r"(\d+)"


def encoder_layer_rules(src: str, dst: str) -> list[Rule]:
    """``{src}encoders.N.*`` and ``{src}after_norm.*`` -> the same under ``dst``.

    Args:
        src: source prefix (e.g. ``"encoder."``), regex-escaped by the caller if needed.
        dst: target prefix (e.g. ``"encoder."``).
    """
    s = src.replace(".", r"\.")
    return [
        Rule(rf"{s}encoders\.{_N}\.conv_module\.pointwise_cov(\d)\.(.+)",
             rf"{dst}encoders.\1.conv_module.pointwise_conv\2.\3"),
        Rule(rf"{s}encoders\.(.+)", rf"{dst}encoders.\1"),
        Rule(rf"{s}after_norm\.(.+)", rf"{dst}after_norm.\1"),
    ]


_ATTN = {"linear_q": "q_proj", "linear_k": "k_proj", "linear_v": "v_proj",
         "linear_out": "out_proj"}
_NORM = {"norm1": "self_attn_layer_norm", "norm2": "encoder_attn_layer_norm",
         "norm3": "final_layer_norm"}


def decoder_rules(src: str, dst: str, output_layer: str | None = "output_layer") -> list[Rule]:
    """ESPnet ``Decoder`` under ``src`` -> avsr ``TransformerDecoder`` under ``dst``.

    Args:
        src: source prefix (``"decoder."``).
        dst: target prefix (``"decoder."``).
        output_layer: source name of the output projection (``None``: none is mapped; USR's
            per-modality ``out_layer_*`` are mapped by its importer).
    """
    s = src.replace(".", r"\.")
    rules = [Rule(rf"{s}embed\.0\.weight", f"{dst}embed_tokens.weight")]
    for attn_src, attn_dst in (("self_attn", "self_attn"), ("src_attn", "encoder_attn")):
        for lin_src, lin_dst in _ATTN.items():
            rules.append(Rule(rf"{s}decoders\.{_N}\.{attn_src}\.{lin_src}\.(weight|bias)",
                              rf"{dst}layers.\1.{attn_dst}.{lin_dst}.\2"))
    for norm_src, norm_dst in _NORM.items():
        rules.append(Rule(rf"{s}decoders\.{_N}\.{norm_src}\.(weight|bias)",
                          rf"{dst}layers.\1.{norm_dst}.\2"))
    rules += [
        Rule(rf"{s}decoders\.{_N}\.feed_forward\.w_1\.(weight|bias)", rf"{dst}layers.\1.fc1.\2"),
        Rule(rf"{s}decoders\.{_N}\.feed_forward\.w_2\.(weight|bias)", rf"{dst}layers.\1.fc2.\2"),
        Rule(rf"{s}after_norm\.(weight|bias)", rf"{dst}layer_norm.\1"),
    ]
    if output_layer is not None:
        rules.append(Rule(rf"{s}{output_layer}\.(weight|bias)", rf"{dst}output_projection.\1"))
    return rules


def ctc_rules(src: str, dst: str = "ctc.") -> list[Rule]:
    """ESPnet ``CTC`` (``ctc_lo``) under ``src`` -> avsr ``CTCHead`` under ``dst``."""
    s = src.replace(".", r"\.")
    return [Rule(rf"{s}ctc_lo\.(weight|bias)", rf"{dst}ctc_lo.\1")]
