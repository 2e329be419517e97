"""Small helpers shared by every model part: the padding mask, shape checks, activations."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["make_pad_mask", "check_shape", "make_activation", "ACTIVATIONS"]

ACTIVATIONS = ("relu", "prelu", "swish", "gelu")


def make_pad_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean padding mask, True at padded positions; the one mask builder of the project.

    Args:
        lengths: valid lengths, shape (B,), integer.
        max_len: width of the mask; defaults to ``lengths.max()`` (0 for an empty batch).

    Returns:
        Bool tensor (B, max_len): ``mask[b, t] = t >= lengths[b]``.

    Raises:
        ValueError: if ``lengths`` is not 1-D.
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be (B,), got shape {tuple(lengths.shape)}")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() > 0 else 0
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def check_shape(name: str, x: torch.Tensor, dims: int, desc: str) -> None:
    """Raise ``ValueError`` naming the tensor and its shape unless ``x.dim() == dims``.

    Args:
        name: argument name for the message.
        x: the tensor.
        dims: required rank.
        desc: expected layout, e.g. ``"(B, T, D)"``.
    """
    if x.dim() != dims:
        raise ValueError(f"{name} must be {desc}, got shape {tuple(x.shape)}")


def make_activation(name: str, channels: int | None = None) -> nn.Module:
    """Build an activation module by name.

    Args:
        name: one of ``"relu"``, ``"prelu"`` (one slope per channel), ``"swish"`` (SiLU),
            ``"gelu"``.
        channels: number of channels (needed by ``"prelu"``).

    Returns:
        The module.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        if channels is None:
            raise ValueError("prelu needs the number of channels")
        return nn.PReLU(num_parameters=channels)
    if name == "swish":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
