"""Predictor of masked-prediction self-distillation (RAVEn / BRAVEn, Haliassos et al., ICLR 2023
/ ICASSP 2024; USR pre-training uses a shared 2-block Transformer predictor with a mask token).
"""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.encoder import TransformerEncoder
from avsr.models.utils import check_shape

__all__ = ["MaskedPredictor"]


class MaskedPredictor(nn.Module):
    """Student features with masked frames replaced by a learned mask token → small
    Transformer → linear map to the target dimension.

    Replacing (not adding to) the masked frames makes the predictor infer them from the
    context only, as MAE's decoder does; the student encoder learns through the context frames
    the predictor attends to.

    Args:
        input_dim: student feature size D.
        d_model: predictor width.
        num_layers: Transformer blocks (USR: 2).
        num_heads: attention heads.
        ffn_dim: feed-forward size.
        output_dim: target size (the teacher's D).
        dropout: dropout inside the predictor.
    """

    def __init__(self, input_dim: int, d_model: int, num_layers: int = 2, num_heads: int = 4,
                 ffn_dim: int | None = None, output_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.proj_in = nn.Linear(input_dim, d_model) if input_dim != d_model else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.mask_token, std=0.02)
        self.encoder = TransformerEncoder(d_model, num_layers, num_heads, ffn_dim or 4 * d_model,
                                          dropout=dropout, pos_enc="sinusoidal")
        self.proj_out = nn.Linear(d_model, output_dim or input_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict.

        Args:
            x: (B, T, D) student features.
            lengths: (B,) valid frames.
            mask: (B, T) bool, True where the input was masked.

        Returns:
            (B, T, output_dim) predictions (zero past each length) and lengths (B,).
        """
        check_shape("x", x, 3, "(B, T, D)")
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match x {tuple(x.shape)}")
        h = self.proj_in(x)
        h = torch.where(mask.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        h, lengths = self.encoder(h, lengths)
        return self.proj_out(h).masked_fill(~_valid(lengths, h.shape[1]).unsqueeze(-1), 0.0), \
            lengths


def _valid(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
