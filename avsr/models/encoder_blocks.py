"""Sub-blocks of the ESPnet-layout encoder layers: feed-forward, convolution module, drop-path."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import make_activation

__all__ = ["FeedForward", "ConvolutionModule", "DropPath"]


class FeedForward(nn.Module):
    """Position-wise feed-forward ``w_2(dropout(act(w_1(x))))`` (Vaswani et al., 2017).

    ESPnet's ``PositionwiseFeedForward`` names (``w_1``, ``w_2``).

    Args:
        d_model: model dimension D.
        ffn_dim: hidden size.
        dropout: dropout on the hidden units.
        activation: ``"relu"`` (ESPnet's default, auto_avsr and USR), ``"swish"``, ``"gelu"``.
    """

    def __init__(self, d_model: int, ffn_dim: int, dropout: float = 0.1,
                 activation: str = "relu") -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, ffn_dim)
        self.w_2 = nn.Linear(ffn_dim, d_model)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        return self.w_2(self.dropout(self.activation(self.w_1(x))))


class ConvolutionModule(nn.Module):
    """Conformer convolution module: pointwise conv to 2D, GLU, depthwise conv, BatchNorm,
    Swish, pointwise conv (Gulati et al., "Conformer", Interspeech 2020).

    Layout of ESPnet's module in auto_avsr (``pointwise_cov1``, ``depthwise_conv``, ``norm``,
    ``pointwise_cov2``; we spell ``conv``). Padded frames are zeroed right before the
    depthwise convolution, so they act like its own zero padding and a padded batch row equals
    the item alone (in eval mode; in training, BatchNorm statistics include padding, as in
    auto_avsr).

    Args:
        d_model: channels D.
        kernel_size: depthwise kernel (odd; 31 in auto_avsr).
        activation: activation after the norm (``"swish"``).
    """

    def __init__(self, d_model: int, kernel_size: int = 31, activation: str = "swish") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise_conv = nn.Conv1d(
            d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2, groups=d_model
        )
        self.norm = nn.BatchNorm1d(d_model)
        self.activation = make_activation(activation)
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, 1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, T, D); valid (B, 1, T) float, 1 at valid frames. Returns (B, T, D)."""
        y = nn.functional.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)  # (B, D, T)
        if valid is not None:
            y = y * valid
        y = self.activation(self.norm(self.depthwise_conv(y)))
        return self.pointwise_conv2(y).transpose(1, 2)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples (Huang et al., ECCV 2016),
    scaling kept samples by 1 / (1 - p) in training.

    Args:
        p: probability of dropping the branch of a sample.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, ...). Returns x with some samples zeroed (training only)."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)
