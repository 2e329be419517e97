"""What every layered encoder shares: input checks, the layer loop, hidden states, masking."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["EncoderStack", "check_encoder_input"]


def check_encoder_input(
    x: torch.Tensor, lengths: torch.Tensor | None, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check an encoder input (B, T, dim) and complete its lengths.

    Args:
        x: (B, T, dim) features; lengths: (B,) valid frames or ``None`` (all T).
        dim: the feature size the encoder takes.

    Returns:
        lengths (B,) and the padding mask (B, T), True at padding.
    """
    check_shape("x", x, 3, "(B, T, D)")
    if x.shape[-1] != dim:
        raise ValueError(f"x must be (B, T, {dim}), got {tuple(x.shape)}")
    batch, frames = x.shape[:2]
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long, device=x.device)
    return lengths, make_pad_mask(lengths, frames)


class EncoderStack(nn.Module):
    """Base of the layered encoders: ``forward`` checks the input, runs :meth:`prepare`, every
    layer through :meth:`run_layer` (skipping layers by LayerDrop in training), :meth:`finish`,
    and zeroes the output past each length. A padded batch row equals the item alone (eval).

    Subclasses set ``d_model``, ``input_dim`` (the size ``forward`` takes), ``layer_drop`` and
    the block list ``layers`` and implement the three hooks.
    """

    # ``forward(..., return_hidden=True)`` works (read by ``AVSRModel.encode``)
    returns_hidden = True
    d_model: int
    input_dim: int
    layer_drop: float = 0.0

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor
                ) -> tuple[torch.Tensor, Any]:
        """Input embedding of x (B, T, input_dim) -> ((B, T, D), context of every layer)."""
        raise NotImplementedError

    def run_layer(self, layer: nn.Module, x: torch.Tensor, context: Any) -> torch.Tensor:
        """One layer: (B, T, D) -> (B, T, D)."""
        raise NotImplementedError

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """After the last layer (a final norm, or nothing)."""
        return x

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, return_hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor,
                                                    list[torch.Tensor]]:
        """Encode.

        Args:
            x: (B, T, input_dim) features.
            lengths: valid frames (B,); ``None`` means all T.
            return_hidden: also return the output of every layer that ran, (B, T, D) each,
                before :meth:`finish` (not zeroed past the lengths).

        Returns:
            (B, T, D) outputs, zero past each length, lengths (B,) [, hidden states].
        """
        lengths, pad = check_encoder_input(x, lengths, self.input_dim)
        x, context = self.prepare(x, lengths, pad)
        hidden: list[torch.Tensor] = []
        for layer in self.layers:
            if self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop:
                continue
            x = self.run_layer(layer, x, context)
            if return_hidden:
                hidden.append(x)
        x = self.finish(x).masked_fill(pad.unsqueeze(-1), 0.0)
        return (x, lengths, hidden) if return_hidden else (x, lengths)
