"""Fusion of the audio and video streams; every module shares the forward of
docs/CONTRACTS.md: ``(audio | None, video | None, audio_lengths, video_lengths) ->
((B, T, D), lengths)``."""

from avsr.models.fusion.base import MISSING, Fusion, FusionInputs, fused_lengths
from avsr.models.fusion.concat import ConcatFusion
from avsr.models.fusion.cross_attention import CrossAttentionFusion
from avsr.models.fusion.linear import ModalityLinearFusion
from avsr.models.fusion.mlp import MLPFusion
from avsr.models.fusion.modality_dropout import ModalityDropout
from avsr.models.fusion.modality_encoders import ModalityEncodersFusion
from avsr.models.fusion.sum import SumFusion
from avsr.models.fusion.transformer import TransformerFusion

__all__ = [
    "Fusion", "FusionInputs", "fused_lengths", "MISSING", "ModalityDropout",
    "ConcatFusion", "SumFusion", "MLPFusion", "ModalityLinearFusion", "CrossAttentionFusion",
    "TransformerFusion", "ModalityEncodersFusion",
]
