"""A pass-through encoder, for models whose fusion module already encodes (late fusion)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["IdentityEncoder"]


class IdentityEncoder(nn.Module):
    """Returns its input, zeroed past each length (auto_avsr's audio-visual model encodes each
    modality inside :class:`~avsr.models.fusion.ModalityEncodersFusion`).

    Args:
        d_model: feature size D (read by the decoder and CTC head configs).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, T, D); lengths (B,) or ``None``. Returns x and lengths."""
        check_shape("x", x, 3, "(B, T, D)")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, T, {self.d_model}), got {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return x.masked_fill(make_pad_mask(lengths, x.shape[1]).unsqueeze(-1), 0.0), lengths
