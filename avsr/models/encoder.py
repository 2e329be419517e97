"""Pre-LN Transformer encoder (AV-HuBERT / wav2vec 2.0 layout)."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.attention import MultiHeadAttention, key_padding_attn_mask
from avsr.models.positional import ConvPositionalEncoding, SinusoidalPositionalEncoding
from avsr.models.encoder_stack import EncoderStack
from avsr.models.utils import make_activation

__all__ = [
    "TransformerEncoderLayer", "TransformerEncoder", "add_positions", "make_positional_encoding",
]

POS_ENCODINGS = ("sinusoidal", "conv", "none")


def make_positional_encoding(
    pos_enc: str, d_model: int, pos_conv_kernel: int, pos_conv_groups: int
) -> nn.Module | None:
    """Build the input positional encoding of an encoder (``None`` for ``"none"``)."""
    if pos_enc == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model)
    if pos_enc == "conv":
        return ConvPositionalEncoding(d_model, pos_conv_kernel, pos_conv_groups)
    if pos_enc == "none":
        return None
    raise ValueError(f"unknown pos_enc {pos_enc!r}; expected one of {POS_ENCODINGS}")


class TransformerEncoderLayer(nn.Module):
    """Pre-LN Transformer layer: ``x + MHSA(LN(x))``, then ``x + FFN(LN(x))``.

    Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020.
    Names follow fairseq (``self_attn``, ``self_attn_layer_norm``, ``fc1``, ``fc2``,
    ``final_layer_norm``).

    Args:
        d_model: model dimension D.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout on attention probabilities, FFN hidden units and residual branches.
        activation: FFN activation (``"gelu"``, ``"relu"``, ``"swish"``).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.activation = make_activation(activation)
        self.final_layer_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """Args: x (B, T, D); attn_mask bool (B, 1, 1, T), True at valid keys.

        Returns (B, T, D).
        """
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), attn_mask=attn_mask))
        y = self.dropout(self.activation(self.fc1(self.final_layer_norm(x))))
        return x + self.dropout(self.fc2(y))


class TransformerEncoder(EncoderStack):
    """Stack of pre-LN Transformer layers with input positions and a final LayerNorm.

    Vaswani et al., NeurIPS 2017; pre-LN with a convolutional positional embedding and
    LayerDrop as in AV-HuBERT (Shi et al., ICLR 2022). Attention never looks at padded
    frames and outputs are zero past each length, so a padded batch row equals the item alone
    (in eval mode).

    Args:
        d_model: model dimension D.
        num_layers: layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout (input, attention, FFN, residual branches).
        layer_drop: probability of skipping each layer in training (Fan et al., ICLR 2020).
        pos_enc: ``"sinusoidal"`` (added to the input), ``"conv"`` (AV-HuBERT ``pos_conv``)
            or ``"none"``.
        activation: FFN activation.
        pos_conv_kernel: kernel of the convolutional positional embedding.
        pos_conv_groups: groups of the convolutional positional embedding.
    """

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        layer_drop: float = 0.0,
        pos_enc: str = "sinusoidal",
        activation: str = "gelu",
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
    ) -> None:
        super().__init__()
        self.d_model = self.input_dim = d_model
        self.layer_drop = layer_drop
        self.pos_enc = make_positional_encoding(pos_enc, d_model, pos_conv_kernel, pos_conv_groups)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, ffn_dim, dropout, activation)
            for _ in range(num_layers)
        )
        self.layer_norm = nn.LayerNorm(d_model)

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions and input dropout; the context is the attention mask (B, 1, 1, T)."""
        x = add_positions(x, pad, self.pos_enc, self.dropout)
        return x, key_padding_attn_mask(lengths, x.shape[1])

    def run_layer(self, layer: nn.Module, x: torch.Tensor, context: torch.Tensor
                  ) -> torch.Tensor:
        return layer(x, context)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(x)


def add_positions(
    x: torch.Tensor, pad: torch.Tensor, pos_enc: nn.Module | None, dropout: nn.Module
) -> torch.Tensor:
    """Add an encoder's input positions (``None``: none) to x (B, T, D), then input dropout.

    Shared by the transformer and conformer encoders; pad (B, T) is True at padding (the
    convolutional positions must not see it).
    """
    if isinstance(pos_enc, ConvPositionalEncoding):
        x = pos_enc(x, pad)
    elif pos_enc is not None:
        x = pos_enc(x)
    return dropout(x)
