"""Training objectives."""

from avsr.objectives.hybrid import HybridCTCAttentionLoss, add_sos_eos, label_smoothing_kl

__all__ = ["HybridCTCAttentionLoss", "add_sos_eos", "label_smoothing_kl"]
