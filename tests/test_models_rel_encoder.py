"""Relative-position encoder (USR transformer / auto_avsr conformer): math, padding, layout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avsr.models.encoder_blocks import DropPath
from avsr.models.positional import RelPositionalEncoding, sinusoidal_table
from avsr.models.rel_attention import RelPositionMultiHeadAttention
from avsr.models.rel_encoder import RelPosEncoder


def test_rel_attention_matches_transformer_xl_formula() -> None:
    """score(i, j) = ((q_i + u)·k_j + (q_i + v)·W_pos PE(i - j)) / √d, by brute force."""
    torch.manual_seed(0)
    d, h, t = 8, 2, 5
    attn = RelPositionMultiHeadAttention(d, h).eval()
    x = torch.randn(1, t, d)
    pos = RelPositionalEncoding(d)(t)
    got = attn(x, pos)
    dk = d // h
    q = attn.linear_q(x[0]).view(t, h, dk)
    k = attn.linear_k(x[0]).view(t, h, dk)
    v = attn.linear_v(x[0]).view(t, h, dk)
    out = torch.zeros(t, h, dk)
    for head in range(h):
        scores = torch.zeros(t, t)
        for i in range(t):
            for j in range(t):
                pe = sinusoidal_table(1, d, offset=i - j)[0]  # PE of the offset i - j
                p = attn.linear_pos(pe).view(h, dk)[head]
                scores[i, j] = ((q[i, head] + attn.pos_bias_u[head]) @ k[j, head]
                                + (q[i, head] + attn.pos_bias_v[head]) @ p) / math.sqrt(dk)
        out[:, head] = torch.softmax(scores, -1) @ v[:, head]
    expected = attn.linear_out(out.reshape(t, d))
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=1e-5)


def test_rel_positional_table_beyond_buffer() -> None:
    enc = RelPositionalEncoding(6, max_len=4)
    torch.testing.assert_close(enc(3), RelPositionalEncoding(6, max_len=10)(3))
    table = enc(6)  # computed on the fly
    assert table.shape == (11, 6)
    torch.testing.assert_close(table[5], sinusoidal_table(1, 6)[0])  # the centre is offset 0


def _encoders() -> list[RelPosEncoder]:
    return [
        RelPosEncoder(16, 2, 4, 32, layer_scale=0.1, drop_path=0.1),  # USR
        RelPosEncoder(16, 2, 4, 32, macaron=True, conv_kernel=7, input_dim=10),  # auto_avsr
    ]


@pytest.mark.parametrize("index", range(2))
def test_padding_invariance(index: int) -> None:
    torch.manual_seed(0)
    encoder = _encoders()[index].eval()
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 12, encoder.input_dim)
    lengths = torch.tensor([12, 7, 1])
    x[1, 7:] = 4.0
    with torch.no_grad():
        out, out_lengths = encoder(x, lengths)
        for b in (1, 2):
            n = int(lengths[b])
            alone, _ = encoder(x[b : b + 1, :n])
            torch.testing.assert_close(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 12, 16) and out_lengths.tolist() == [12, 7, 1]
    assert out[1, 7:].abs().max() == 0


@pytest.mark.parametrize("index", range(2))
def test_shapes_errors_and_training(index: int) -> None:
    encoder = _encoders()[index].train()
    dim = encoder.input_dim
    with pytest.raises(ValueError, match=r"\(2, 5, 3\)"):
        encoder(torch.randn(2, 5, 3))
    out, _ = encoder(torch.randn(2, 5, dim), torch.tensor([5, 0]))  # an empty item stays finite
    assert torch.isfinite(out).all()
    out.sum().backward()


def test_espnet_layouts() -> None:
    usr, conformer = (set(e.state_dict()) for e in _encoders())
    for key in ["encoders.0.self_attn.linear_pos.weight", "encoders.0.self_attn.pos_bias_u",
                "encoders.0.gamma_mha", "encoders.0.gamma_ff", "encoders.1.norm_mha.weight",
                "encoders.1.feed_forward.w_1.weight", "after_norm.weight"]:
        assert key in usr, key
    assert "encoders.0.self_attn.linear_pos.bias" not in usr
    for key in ["embed.weight", "encoders.0.feed_forward_macaron.w_2.weight",
                "encoders.0.norm_ff_macaron.weight",
                "encoders.0.conv_module.pointwise_conv1.weight",
                "encoders.0.conv_module.depthwise_conv.weight",
                "encoders.0.conv_module.norm.running_var", "encoders.0.norm_conv.weight",
                "encoders.0.norm_final.weight"]:
        assert key in conformer, key
    assert not any("gamma" in k for k in conformer)


def test_layer_scale_and_drop_path() -> None:
    torch.manual_seed(0)
    encoder = RelPosEncoder(8, 1, 2, 16, layer_scale=0.1, dropout=0.0, attention_dropout=0.0)
    assert torch.all(encoder.encoders[0].gamma_mha == 0.1)
    drop = DropPath(0.5).train()
    y = drop(torch.ones(1000, 3))
    kept = y[:, 0] > 0
    assert 400 < int(kept.sum()) < 600
    assert torch.all(y[kept] == 2.0) and torch.all(y[~kept] == 0.0)
    assert torch.equal(drop.eval()(torch.ones(4, 3)), torch.ones(4, 3))
    # all branches dropped: each layer is the identity, only the final norm remains
    always = RelPosEncoder(8, 2, 2, 16, layer_scale=0.1, drop_path=0.999, dropout=0.0)
    torch.manual_seed(1)
    x = torch.randn(1, 4, 8)
    out, _ = always.train()(x)
    torch.testing.assert_close(out, always.after_norm(x * math.sqrt(8)), atol=1e-4, rtol=1e-4)
