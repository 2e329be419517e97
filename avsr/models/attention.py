"""Multi-head attention with separate q/k/v projections (fairseq names) on top of SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.utils import make_pad_mask

__all__ = ["MultiHeadAttention", "key_padding_attn_mask", "FEW_QUERIES"]

# Up to this many queries per (batch, head), inference runs a plain matmul-softmax: SDPA's
# fused CPU kernel is tuned for long queries and was ~2× slower for the one-token queries of
# incremental decoding (and the W grouped queries of beam hypotheses sharing one memory).
FEW_QUERIES = 64


def key_padding_attn_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """SDPA boolean mask (B, 1, 1, T), True where a key may be attended.

    An item of length 0 may attend every key, which keeps its (meaningless) outputs finite
    instead of NaN; its length still says it is empty.
    """
    allowed = ~make_pad_mask(lengths, max_len)
    allowed = allowed | (lengths == 0).unsqueeze(1)
    return allowed[:, None, None, :]


def _few_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         attn_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ / √d) v with the softmax in float32; q (B, H, L, d), k/v (B, H, T, d),
    attn_mask bool broadcastable to (B, H, L, T), True where allowed."""
    if q.shape[-2] == 1:
        # one query (a cached decoding step): k q^T is a matrix-vector product per (row,
        # head), ~1.5x faster on CPU than q k^T, which multiplies by a transposed k
        scores = torch.matmul(k, q.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask.transpose(-2, -1), float("-inf"))
        return torch.matmul(scores.softmax(dim=-2).to(v.dtype).transpose(-2, -1), v)
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention (Vaswani et al., NeurIPS 2017).

    Projections are named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` like fairseq's, so
    AV-HuBERT weights load by name. Self-attention runs the three input projections as one
    matrix product.

    Args:
        d_model: model dimension D.
        num_heads: heads H (D divisible by H).
        dropout: attention-probability dropout (training only).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, H, T, D / H)
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention projections of x (B, T, D), each (B, H, T, D / H)."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        q, k, v = F.linear(x, weight, bias).chunk(3, dim=-1)
        return self._heads(q), self._heads(k), self._heads(v)

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        """Query projection of x (B, L, D) as (B, H, L, D / H)."""
        return self._heads(self.q_proj(x))

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value projections of x (B, T, D), each (B, H, T, D / H)."""
        weight = torch.cat([self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.k_proj.bias, self.v_proj.bias])
        k, v = F.linear(x, weight, bias).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Attention over projected heads, then the output projection.

        Args:
            q: (B, H, L, D / H); k, v: (B, H, T, D / H).
            attn_mask: bool, broadcastable to (B, H, L, T), True where attention is allowed.
            is_causal: causal masking (L == T).

        Returns:
            (B, L, D).
        """
        p = self.dropout if self.training else 0.0
        if p == 0.0 and not is_causal and q.shape[-2] <= FEW_QUERIES:
            out = _few_query_attention(q, k, v, attn_mask)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal
            )
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Self-attention (``memory`` None) or attention from ``query`` to ``memory``.

        Args:
            query: (B, L, D).
            memory: (B, T, D) or ``None`` for self-attention.
            attn_mask: bool, broadcastable to (B, H, L, T), True where attention is allowed.
            is_causal: causal self-attention.

        Returns:
            (B, L, D).
        """
        if memory is None:
            q, k, v = self.project_qkv(query)
        else:
            q = self.project_q(query)
            k, v = self.project_kv(memory)
        return self.attend(q, k, v, attn_mask, is_causal)
