"""Positional encodings: fixed sinusoids and the wav2vec 2.0 / AV-HuBERT convolution."""

from __future__ import annotations

import math

import torch
from torch import nn

from avsr.models.utils import check_shape

__all__ = [
    "sinusoidal_table", "SinusoidalPositionalEncoding", "ConvPositionalEncoding",
    "RelPositionalEncoding", "SINUSOID_LAYOUTS",
]

SINUSOID_LAYOUTS = ("interleaved", "fairseq")


def sinusoidal_table(length: int, dim: int, offset: int = 0, layout: str = "interleaved"
                     ) -> torch.Tensor:
    """Sinusoid table of Vaswani et al., "Attention Is All You Need", NeurIPS 2017.

    Args:
        length: number of positions.
        dim: model dimension (even).
        offset: first position.
        layout: ``"interleaved"`` (ESPnet, avsr): ``sin`` in even and ``cos`` in odd
            channels, frequencies ``10000^(-2i / dim)``; ``"fairseq"`` (fairseq's
            ``SinusoidalPositionalEmbedding``, AV-HuBERT's decoder): ``sin`` in the first and
            ``cos`` in the second half, frequencies ``10000^(-i / (dim / 2 - 1))``.

    Returns:
        (length, dim) float32.
    """
    if layout not in SINUSOID_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {SINUSOID_LAYOUTS}")
    position = torch.arange(offset, offset + length, dtype=torch.float32).unsqueeze(1)
    if layout == "fairseq":
        half = dim // 2
        freq = torch.exp(torch.arange(half, dtype=torch.float32)
                         * -(math.log(10000.0) / (half - 1)))
        return torch.cat([torch.sin(position * freq), torch.cos(position * freq)], dim=1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoids: ``x * scale + PE[first + offset : first + offset + T]``.

    The first ``max_len`` rows are a non-persistent buffer (nothing enters the state dict);
    longer inputs get a table computed on the fly (the buffer never changes shape).

    Args:
        d_model: model dimension D.
        scale: multiplier of the input (√D for token embeddings, 1 for features).
        max_len: rows kept in the buffer (2048 frames = 82 s at 25 Hz).
        layout: channel layout of the table (:func:`sinusoidal_table`).
        first_position: position of the first step (fairseq numbers token positions from
            ``padding_idx + 1``: 2 with its default dictionary).
    """

    def __init__(self, d_model: int, scale: float = 1.0, max_len: int = 2048,
                 layout: str = "interleaved", first_position: int = 0) -> None:
        super().__init__()
        self.d_model = d_model
        self.scale = scale
        self.layout = layout
        self.first_position = first_position
        self.register_buffer("pe", sinusoidal_table(max_len, d_model, first_position, layout),
                             persistent=False)

    def table(self, end: int) -> torch.Tensor:
        """The first ``end`` rows (end, D) of the table."""
        if end > self.pe.shape[0]:
            return sinusoidal_table(end, self.d_model, self.first_position,
                                    self.layout).to(self.pe.device)
        return self.pe[:end]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Args: x (B, T, D); offset: index of the first step. Returns (B, T, D)."""
        check_shape("x", x, 3, "(B, T, D)")
        pe = self.table(offset + x.shape[1])[offset:].to(x.dtype)
        return (x * self.scale if self.scale != 1.0 else x) + pe


class _SamePad(nn.Module):
    """Drops the extra trailing step an even kernel with padding k // 2 produces."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.remove] if self.remove else x


class ConvPositionalEncoding(nn.Module):
    """Relative positions from a grouped convolution, ``x + GELU(conv(x))``.

    Baevski et al., "wav2vec 2.0", NeurIPS 2020; used by AV-HuBERT (Shi et al., ICLR 2022),
    whose checkpoints name it ``pos_conv.0`` (weight-normalised over dim 2). Padded positions
    are zeroed before the convolution so they act like its own zero padding.

    Args:
        d_model: model dimension D (divisible by ``groups``).
        kernel_size: convolution width (128 in AV-HuBERT).
        groups: convolution groups (16 in AV-HuBERT).
    """

    def __init__(self, d_model: int, kernel_size: int = 128, groups: int = 16) -> None:
        super().__init__()
        conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups)
        std = math.sqrt(4.0 / (kernel_size * d_model))
        nn.init.normal_(conv.weight, mean=0.0, std=std)
        nn.init.zeros_(conv.bias)
        conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, _SamePad(kernel_size), nn.GELU())

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, T, D); pad_mask (B, T) True at padding. Returns (B, T, D)."""
        check_shape("x", x, 3, "(B, T, D)")
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        return x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


class RelPositionalEncoding(nn.Module):
    """Sinusoids of relative positions for relative-position attention.

    Dai et al., "Transformer-XL", ACL 2019, Sec. 3.3; ESPnet's ``RelPositionalEncoding``
    ("latest" layout, used by auto_avsr and USR). Row ``c`` of the table for T frames holds the
    sinusoid of the relative position ``T - 1 - c`` (query minus key), so rows run from
    ``T - 1`` down to ``-(T - 1)``. Nothing enters the state dict.

    Args:
        d_model: model dimension D (even).
        max_len: frames kept precomputed; longer inputs get a table computed on the fly.
    """

    def __init__(self, d_model: int, max_len: int = 2048) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.register_buffer("pe", self._table(max_len), persistent=False)

    def _table(self, frames: int) -> torch.Tensor:
        # positions -(T - 1) .. T - 1, flipped so the first row is the largest offset
        return sinusoidal_table(2 * frames - 1, self.d_model, offset=-(frames - 1)).flip(0)

    def forward(self, frames: int) -> torch.Tensor:
        """Returns the (2T - 1, D) table for T = ``frames``."""
        if frames > self.max_len:
            return self._table(frames).to(self.pe.device)
        centre = self.max_len - 1
        return self.pe[centre - frames + 1 : centre + frames]
