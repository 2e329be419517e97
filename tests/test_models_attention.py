"""Multi-head attention: the matmul path for few queries equals PyTorch's SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsr.models.attention import MultiHeadAttention, key_padding_attn_mask


@pytest.mark.parametrize("queries", [1, 5])
@pytest.mark.parametrize("masked", [False, True])
def test_few_query_attention_equals_sdpa(queries: int, masked: bool) -> None:
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4).eval()
    q = torch.randn(3, 4, queries, 4)
    k, v = torch.randn(3, 4, 7, 4), torch.randn(3, 4, 7, 4)
    mask = key_padding_attn_mask(torch.tensor([7, 3, 5]), 7) if masked else None
    with torch.no_grad():
        ours = attn.attend(q, k, v, mask)  # few queries in eval: matmul softmax
        ref = attn.out_proj(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                            .transpose(1, 2).flatten(2))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert ours.shape == (3, queries, 16)
