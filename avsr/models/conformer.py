"""Conformer encoder composed from ``torchaudio.models.conformer.ConformerLayer``.

torchaudio's ``Conformer.forward`` lets padded frames leak into valid ones through the
depthwise convolution (it never masks them), and it has no positional encoding. We keep its
layers (parameters and names: ``ffn1``, ``self_attn``, ``conv_module``, ``ffn2``,
``final_layer_norm``) and run them with a forward that zeroes padded frames right before the
depthwise convolution, so a padded batch row equals the item alone (in eval mode).
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models.conformer import ConformerLayer

from avsr.models.encoder import add_positions, make_positional_encoding
from avsr.models.encoder_stack import EncoderStack

__all__ = ["ConformerEncoder"]


def _check_layer_layout(layer: ConformerLayer) -> None:
    """Fail loudly if torchaudio changes the conv module we index into."""
    seq = layer.conv_module.sequential
    kinds = [type(m) for m in seq]
    expected = [nn.Conv1d, nn.GLU, nn.Conv1d]
    if kinds[:3] != expected or seq[2].groups == 1:
        raise RuntimeError(f"unexpected torchaudio Conformer conv module layout: {kinds}")


class ConformerEncoder(EncoderStack):
    """Conformer encoder (Gulati et al., "Conformer: Convolution-augmented Transformer for
    Speech Recognition", Interspeech 2020), as used by auto_avsr (Ma et al., ICASSP 2023).

    Macaron FFN halves, MHSA, convolution module (pointwise, GLU, depthwise, BatchNorm, SiLU,
    pointwise), final LayerNorm per layer. Absolute positions are added at the input
    (auto_avsr uses relative-position attention instead).

    Args:
        d_model: model dimension D.
        num_layers: Conformer layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout.
        kernel_size: depthwise convolution kernel (odd; 31 in auto_avsr).
        pos_enc: ``"sinusoidal"``, ``"conv"`` or ``"none"``.
        use_group_norm: GroupNorm instead of BatchNorm in the convolution module.
        convolution_first: convolution module before self-attention.
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
        kernel_size: int = 31,
        pos_enc: str = "sinusoidal",
        use_group_norm: bool = False,
        convolution_first: bool = False,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
    ) -> None:
        super().__init__()
        self.d_model = self.input_dim = d_model
        self.pos_enc = make_positional_encoding(pos_enc, d_model, pos_conv_kernel, pos_conv_groups)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(
                d_model,
                ffn_dim,
                num_heads,
                kernel_size,
                dropout=dropout,
                use_group_norm=use_group_norm,
                convolution_first=convolution_first,
            )
            for _ in range(num_layers)
        )
        for layer in self.layers:
            _check_layer_layout(layer)

    @staticmethod
    def _conv(layer: ConformerLayer, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x (B, T, D); valid (B, 1, T) float. Mask after the GLU: LayerNorm and the pointwise
        # convolution turn zero padding into nonzero values the depthwise conv would mix in.
        module = layer.conv_module
        y = module.layer_norm(x).transpose(1, 2)  # (B, D, T)
        y = module.sequential[1](module.sequential[0](y)) * valid
        for m in module.sequential[2:]:
            y = m(y)
        return x + y.transpose(1, 2)

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Positions and input dropout; the context is (key padding mask (B, T), valid frames
        (B, 1, T) float)."""
        x = add_positions(x, pad, self.pos_enc, self.dropout)
        # an empty item attends everything (finite garbage) instead of producing NaN
        key_padding_mask = pad & (lengths > 0).unsqueeze(1)
        return x, (key_padding_mask, (~pad).to(x.dtype).unsqueeze(1))

    def run_layer(self, layer: nn.Module, x: torch.Tensor,
                  context: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # ConformerLayer.forward with masking before the depthwise conv; batch-first.
        key_padding_mask, valid = context
        x = x + 0.5 * layer.ffn1(x)
        if layer.convolution_first:
            x = self._conv(layer, x, valid)
        y = layer.self_attn_layer_norm(x).transpose(0, 1)  # (T, B, D): MHA is sequence-first
        y, _ = layer.self_attn(y, y, y, key_padding_mask=key_padding_mask, need_weights=False)
        x = x + layer.self_attn_dropout(y.transpose(0, 1))
        if not layer.convolution_first:
            x = self._conv(layer, x, valid)
        x = x + 0.5 * layer.ffn2(x)
        return layer.final_layer_norm(x)
