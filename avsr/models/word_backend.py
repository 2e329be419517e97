"""Word-classification back-end parts: a multi-scale temporal convolution encoder, the
word-boundary input and the pooled classifier head (LRW-style word lip reading).

The temporal encoder follows the (lite) MS-TCN of Martinez et al., "Lipreading using Temporal
Convolutional Networks", ICASSP 2020: every block runs parallel dilated convolutions with
several kernel sizes, concatenates them and adds a residual; dilation doubles block after
block. It keeps the encoder contract ``((B, T, D), lengths) -> ((B, T, D), lengths)`` so it is
also ``model/encoder=tcn`` (a back-end of the word stage, or a sentence encoder).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["TemporalConvEncoder", "BoundaryEmbedding", "WordHead"]


class _MultiScaleBlock(nn.Module):
    """One MS-TCN block: per kernel size a branch (conv, BN, PReLU, dropout) twice, concatenated,
    plus a residual."""

    def __init__(self, d_model: int, kernel_sizes: Sequence[int], dilation: int,
                 dropout: float) -> None:
        super().__init__()
        if d_model % len(kernel_sizes):
            raise ValueError(f"d_model {d_model} must divide into {len(kernel_sizes)} branches")
        width = d_model // len(kernel_sizes)

        def conv(c_in: int, k: int) -> list[nn.Module]:
            # symmetric ("non-causal") padding: the whole clip is seen at once
            return [nn.Conv1d(c_in, width, k, padding=dilation * (k - 1) // 2, dilation=dilation),
                    nn.BatchNorm1d(width), nn.PReLU(width), nn.Dropout(dropout)]

        self.first = nn.ModuleList(nn.Sequential(*conv(d_model, k)) for k in kernel_sizes)
        self.second = nn.ModuleList(nn.Sequential(*conv(d_model, k)) for k in kernel_sizes)
        self.out_act = nn.PReLU(d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: (B, D, T) zero past the lengths; keep: (B, 1, T) float. Returns (B, D, T)."""
        h = torch.cat([branch(x) for branch in self.first], dim=1) * keep
        h = torch.cat([branch(h) for branch in self.second], dim=1)
        return self.out_act(h + x) * keep


class TemporalConvEncoder(nn.Module):
    """Multi-scale dilated temporal convolutions (MS-TCN, Martinez et al., ICASSP 2020).

    Frames past an item's length are zeroed before every convolution, so a padded batch row
    equals the item alone (in eval mode; training-mode batch norm sees the padding, as in
    the video front-end).

    Args:
        d_model: channels (input and output), divisible by ``len(kernel_sizes)``.
        num_layers: blocks; block ``i`` has dilation ``2 ** i``.
        kernel_sizes: kernel size of each parallel branch (MS-TCN: 3, 5, 7).
        dropout: dropout after every convolution.

    Shapes: ((B, T, D), lengths (B,)) -> ((B, T, D), lengths).
    """

    def __init__(self, d_model: int, num_layers: int = 4, kernel_sizes: Sequence[int] = (3, 5, 7),
                 dropout: float = 0.2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.d_model = d_model
        self.layers = nn.ModuleList(
            _MultiScaleBlock(d_model, tuple(kernel_sizes), 2 ** i, dropout)
            for i in range(num_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        check_shape("x", x, 3, "(B, T, D)")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected (B, T, {self.d_model}), got {tuple(x.shape)}")
        batch, frames, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=x.device)
        keep = (~make_pad_mask(lengths, frames)).to(x.dtype).unsqueeze(1)  # (B, 1, T)
        h = x.transpose(1, 2) * keep
        for layer in self.layers:
            h = layer(h, keep)
        return h.transpose(1, 2), lengths


class BoundaryEmbedding(nn.Module):
    """Word-boundary input: adds a learned vector to the frames inside the word.

    Ma et al. ("Training Strategies for Improved Lip-Reading", ICASSP 2022) concatenate the
    0/1 boundary indicator to the front-end features before the back-end; concatenation
    followed by the back-end's first linear map equals adding ``boundary × w`` for a learned
    ``w``, which keeps the feature size (and the back-end) unchanged.

    Args:
        d_model: feature size D.

    Shapes: x (B, T, D), boundary (B, T) -> (B, T, D).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, 3, "(B, T, D)")
        if boundary.shape[0] != x.shape[0]:
            raise ValueError(f"boundary {tuple(boundary.shape)} does not match x {tuple(x.shape)}")
        b = boundary[:, : x.shape[1]].to(x.dtype)
        if b.shape[1] < x.shape[1]:
            b = nn.functional.pad(b, (0, x.shape[1] - b.shape[1]))
        return x + b.unsqueeze(-1) * self.weight


class WordHead(nn.Module):
    """Mean over the valid frames, then an MLP to the word classes (Pan et al., ACL 2022:
    temporal back-end, mean pooling, MLP to the 500 LRW words).

    Args:
        d_model: input size D.
        num_classes: words.
        hidden_dim: MLP hidden size; None: a single linear layer.
        dropout: dropout before the output layer.

    Shapes: ((B, T, D), lengths (B,)) -> logits (B, num_classes).
    """

    def __init__(self, d_model: int, num_classes: int, hidden_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        if hidden_dim:
            layers += [nn.Linear(d_model, hidden_dim), nn.ReLU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden_dim or d_model, num_classes)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        check_shape("x", x, 3, "(B, T, D)")
        if lengths is None:
            pooled = x.mean(dim=1)
        else:
            keep = (~make_pad_mask(lengths, x.shape[1])).to(x.dtype).unsqueeze(-1)
            pooled = (x * keep).sum(dim=1) / lengths.clamp(min=1).to(x.dtype).unsqueeze(-1)
        return self.mlp(pooled)
