"""Relative-position encoder in ESPnet's layout: USR's transformer and auto_avsr's conformer."""

from __future__ import annotations

import math

import torch
from torch import nn

from avsr.models.attention import key_padding_attn_mask
from avsr.models.encoder_blocks import ConvolutionModule, DropPath, FeedForward
from avsr.models.encoder_stack import EncoderStack
from avsr.models.positional import RelPositionalEncoding
from avsr.models.rel_attention import RelPositionMultiHeadAttention

__all__ = ["RelPosEncoderLayer", "RelPosEncoder"]

_EPS = 1e-12  # ESPnet's LayerNorm epsilon


class RelPosEncoderLayer(nn.Module):
    """Pre-LN encoder layer with relative-position attention; optionally macaron FFN halves
    and a convolution module (a Conformer layer), LayerScale and drop-path.

    Per branch ``x + drop_path(scale · dropout(gamma · f(norm(x))))``:
    [``feed_forward_macaron`` (scale 0.5)], ``self_attn``, [``conv_module``], ``feed_forward``
    (scale 0.5 with macaron), then ``norm_final`` when there is a convolution module.

    - auto_avsr's Conformer (Gulati et al., Interspeech 2020; Ma et al., ICASSP 2023):
      ``macaron=True, conv_kernel=31``.
    - USR's transformer (Haliassos et al., NeurIPS 2024): LayerScale (Touvron et al., "Going
      deeper with image transformers", ICCV 2021) ``layer_scale=0.1`` and drop-path.

    Names follow ESPnet's ``EncoderLayer`` (``norm_ff_macaron``, ``norm_mha``, ``norm_conv``,
    ``norm_ff``, ``norm_final``, ``gamma_*``) so checkpoints map key by key.

    Args:
        d_model: model dimension D.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout on residual branches and FFN hidden units.
        attention_dropout: dropout on attention probabilities.
        macaron: two half-step feed-forward modules around attention.
        conv_kernel: depthwise kernel of a convolution module; ``None`` for none.
        layer_scale: initial LayerScale gain; ``None`` for no LayerScale.
        drop_path: stochastic-depth probability of every branch.
        activation: feed-forward activation.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        macaron: bool = False,
        conv_kernel: int | None = None,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.macaron = macaron
        self.ff_scale = 0.5 if macaron else 1.0
        if macaron:
            self.feed_forward_macaron = FeedForward(d_model, ffn_dim, dropout, activation)
            self.norm_ff_macaron = nn.LayerNorm(d_model, eps=_EPS)
        self.self_attn = RelPositionMultiHeadAttention(d_model, num_heads, attention_dropout)
        self.norm_mha = nn.LayerNorm(d_model, eps=_EPS)
        self.conv_module: ConvolutionModule | None = None
        if conv_kernel is not None:
            self.conv_module = ConvolutionModule(d_model, conv_kernel)
            self.norm_conv = nn.LayerNorm(d_model, eps=_EPS)
            self.norm_final = nn.LayerNorm(d_model, eps=_EPS)
        self.feed_forward = FeedForward(d_model, ffn_dim, dropout, activation)
        self.norm_ff = nn.LayerNorm(d_model, eps=_EPS)
        self.layer_scale = layer_scale is not None
        if layer_scale is not None:
            self.gamma_mha = nn.Parameter(torch.full((d_model,), layer_scale))
            self.gamma_ff = nn.Parameter(torch.full((d_model,), layer_scale))
            if macaron:
                self.gamma_ff_macaron = nn.Parameter(torch.full((d_model,), layer_scale))
            if conv_kernel is not None:
                self.gamma_conv = nn.Parameter(torch.full((d_model,), layer_scale))
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def _branch(self, y: torch.Tensor, gamma: str, scale: float = 1.0) -> torch.Tensor:
        if self.layer_scale:
            y = getattr(self, gamma) * y
        y = self.dropout(y)
        return self.drop_path(y * scale if scale != 1.0 else y)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        attn_mask: torch.Tensor | None,
        valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """Args: x (B, T, D); pos_emb (2T - 1, D); attn_mask bool (B, 1, 1, T), True at valid
        keys; valid (B, 1, T) float, 1 at valid frames. Returns (B, T, D)."""
        if self.macaron:
            y = self.feed_forward_macaron(self.norm_ff_macaron(x))
            x = x + self._branch(y, "gamma_ff_macaron", self.ff_scale)
        x = x + self._branch(self.self_attn(self.norm_mha(x), pos_emb, attn_mask), "gamma_mha")
        if self.conv_module is not None:
            x = x + self._branch(self.conv_module(self.norm_conv(x), valid), "gamma_conv")
        x = x + self._branch(self.feed_forward(self.norm_ff(x)), "gamma_ff", self.ff_scale)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x


class RelPosEncoder(EncoderStack):
    """Stack of :class:`RelPosEncoderLayer` with ESPnet's input scaling and a final LayerNorm.

    ``[embed] -> x · √D -> dropout -> layers -> after_norm``, with the relative sinusoids
    (dropped out like the input, as ESPnet does) shared by all layers. One class, two papers by
    configuration: auto_avsr's Conformer (``macaron``, ``conv_kernel``) and USR's transformer
    (``layer_scale``, ``drop_path``). Padding never reaches valid frames (attention masks it,
    the convolution module zeroes it), outputs are zero past each length.

    Args:
        d_model: model dimension D.
        num_layers: layers.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden size.
        dropout: dropout (input, positions, residual branches, FFN hidden units).
        attention_dropout: dropout on attention probabilities.
        macaron: macaron feed-forward halves (Conformer).
        conv_kernel: convolution module kernel (Conformer: 31); ``None`` for none.
        layer_scale: initial LayerScale gain (USR: 0.1); ``None`` for none.
        drop_path: stochastic-depth probability of every residual branch (USR: 0.1 to 0.3).
        activation: feed-forward activation.
        input_dim: if given, ``embed`` = Linear(input_dim, D) first (auto_avsr's
            ``encoder.embed.0``); otherwise inputs must be (B, T, D).
        scale_input: multiply the input by √D (ESPnet's ``xscale``).
    """

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        macaron: bool = False,
        conv_kernel: int | None = None,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        activation: str = "relu",
        input_dim: int | None = None,
        scale_input: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.input_dim = d_model if input_dim is None else input_dim
        self.embed = nn.Linear(input_dim, d_model) if input_dim is not None else None
        self.xscale = math.sqrt(d_model) if scale_input else 1.0
        self.pos_enc = RelPositionalEncoding(d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoders = nn.ModuleList(
            RelPosEncoderLayer(
                d_model, num_heads, ffn_dim, dropout, attention_dropout, macaron, conv_kernel,
                layer_scale, drop_path, activation,
            )
            for _ in range(num_layers)
        )
        self.after_norm = nn.LayerNorm(d_model, eps=_EPS)

    @property
    def layers(self) -> nn.ModuleList:
        """The block stack under the name every encoder uses (``encoders`` keeps ESPnet's
        state-dict keys, so auto_avsr / USR weights load by name)."""
        return self.encoders

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Embedding, √D scaling, dropout; the context is (relative sinusoids (2T - 1, D),
        attention mask (B, 1, 1, T), valid frames (B, 1, T) float)."""
        frames = x.shape[1]
        if self.embed is not None:
            x = self.embed(x)
        x = self.dropout(x * self.xscale if self.xscale != 1.0 else x)
        pos_emb = self.dropout(self.pos_enc(frames).to(x.dtype))
        attn_mask = key_padding_attn_mask(lengths, frames)
        return x, (pos_emb, attn_mask, (~pad).to(x.dtype).unsqueeze(1))

    def run_layer(self, layer: nn.Module, x: torch.Tensor,
                  context: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return layer(x, *context)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_norm(x)
