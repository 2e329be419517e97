"""Multi-head self-attention with relative positions (Transformer-XL; ESPnet layout)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.utils import check_shape

__all__ = ["RelPositionMultiHeadAttention"]


class RelPositionMultiHeadAttention(nn.Module):
    """Self-attention scored by content and by relative position.

    Dai et al., "Transformer-XL", ACL 2019, Sec. 3.3: ``score(i, j) = (q_i + u)·k_j +
    (q_i + v)·W p_{i-j}``, divided by √(D / H). This is ESPnet's
    ``RelPositionMultiHeadedAttention`` as the conformer of auto_avsr (Ma et al., ICASSP 2023)
    and the transformer of USR (Haliassos et al., NeurIPS 2024) use it; parameters keep ESPnet's
    names (``linear_q``, ``linear_k``, ``linear_v``, ``linear_out``, ``linear_pos`` without
    bias, ``pos_bias_u``, ``pos_bias_v`` of shape (H, D / H)), so checkpoints map key by key.
    The positional term is gathered per (i, j) instead of ESPnet's pad-and-reshape shift (same
    values) and enters SDPA as an additive mask.

    Args:
        d_model: model dimension D (divisible by H).
        num_heads: heads H.
        dropout: dropout on attention probabilities (training only).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(num_heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self, x: torch.Tensor, pos_emb: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, T, D).
            pos_emb: (2T - 1, D) relative sinusoids, row c = offset T - 1 - c
                (:class:`avsr.models.positional.RelPositionalEncoding`).
            attn_mask: bool, broadcastable to (B, H, T, T), True where attention is allowed.

        Returns:
            (B, T, D).
        """
        check_shape("x", x, 3, "(B, T, D)")
        batch, frames, _ = x.shape
        if pos_emb.shape[0] != 2 * frames - 1:
            raise ValueError(f"pos_emb must be ({2 * frames - 1}, D), got {tuple(pos_emb.shape)}")
        heads = (self.num_heads, self.head_dim)
        q = self.linear_q(x).unflatten(-1, heads)  # (B, T, H, Dh)
        k = self.linear_k(x).unflatten(-1, heads).transpose(1, 2)  # (B, H, T, Dh)
        v = self.linear_v(x).unflatten(-1, heads).transpose(1, 2)
        p = self.linear_pos(pos_emb).unflatten(-1, heads).transpose(0, 1)  # (H, 2T - 1, Dh)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, Dh)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        bd = torch.matmul(q_v, p.transpose(-2, -1))  # (B, H, T, 2T - 1)
        steps = torch.arange(frames, device=x.device)
        column = steps.unsqueeze(0) - steps.unsqueeze(1) + frames - 1  # [i, j] -> offset i - j
        bd = bd.gather(-1, column.expand(batch, self.num_heads, frames, frames))
        bias = bd / math.sqrt(self.head_dim)
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float("-inf"))
        p_drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q_u, k, v, attn_mask=bias, dropout_p=p_drop)
        return self.linear_out(out.transpose(1, 2).flatten(2))
