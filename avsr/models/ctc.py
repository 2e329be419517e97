"""CTC output layer (Graves et al., "Connectionist Temporal Classification", ICML 2006)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import check_shape

__all__ = ["CTCHead"]


class CTCHead(nn.Module):
    """Linear projection to the vocabulary (blank included) and log-softmax.

    Named ``ctc_lo`` as in ESPnet, so auto_avsr / USR CTC weights load by name.

    Args:
        d_model: encoder dimension D.
        vocab_size: vocabulary V, blank included.
        dropout: dropout on the encoder output before the projection.
    """

    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.ctc_lo = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D). Returns log-probabilities (B, T, V) (float32 for reduced inputs)."""
        check_shape("x", x, 3, "(B, T, D)")
        logits = self.ctc_lo(self.dropout(x))
        return torch.log_softmax(logits.float(), dim=-1)
