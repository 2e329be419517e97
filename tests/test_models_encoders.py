"""Fusion, Transformer and Conformer encoders: shapes, errors, padding invariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsr.models import ConcatFusion, ConformerEncoder, TransformerEncoder
from avsr.models.fusion import fused_lengths


def _randomize_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("missing", ["zeros", "learned"])
def test_fusion_shapes_lengths_and_missing(missing: str) -> None:
    torch.manual_seed(0)
    fusion = ConcatFusion(6, 4, 8, missing=missing).eval()
    audio, video = torch.randn(3, 10, 6), torch.randn(3, 9, 4)
    a_len, v_len = torch.tensor([10, 7, 0]), torch.tensor([9, 8, 5])
    x, lengths = fusion(audio, video, a_len, v_len)
    assert x.shape == (3, 9, 8)
    assert lengths.tolist() == [9, 7, 5]  # min where both, the present one where one is absent
    assert x[1, 7:].abs().max() == 0
    # item 2 has no audio: identical to fusing its video with the audio stream absent
    x_v, len_v = fusion(None, video[2:], None, v_len[2:])
    torch.testing.assert_close(x[2, :5], x_v[0, :5])
    assert len_v.tolist() == [5]
    x_a, len_a = fusion(audio, None, a_len, None)
    assert x_a.shape == (3, 10, 8) and len_a.tolist() == [10, 7, 0]
    with pytest.raises(ValueError, match=r"\(3, 10\)"):
        fusion(torch.randn(3, 10), video, None, v_len)
    with pytest.raises(ValueError):
        fusion(None, None, None, None)


def test_fusion_learned_missing_differs_from_zeros() -> None:
    fusion = ConcatFusion(4, 4, 8, missing="learned")
    with torch.no_grad():
        fusion.video_missing.fill_(1.0)
    audio = torch.randn(1, 5, 4)
    learned, _ = fusion(audio, None)
    fusion.video_missing.data.zero_()
    zeros, _ = fusion(audio, None)
    assert not torch.allclose(learned, zeros)


def test_fusion_padding_invariance() -> None:
    torch.manual_seed(0)
    fusion = ConcatFusion(6, 4, 8).eval()
    audio, video = torch.randn(2, 10, 6), torch.randn(2, 10, 4)
    lengths = torch.tensor([10, 6])
    x, _ = fusion(audio, video, lengths, lengths)
    alone, _ = fusion(audio[1:, :6], video[1:, :6], lengths[1:], lengths[1:])
    torch.testing.assert_close(x[1, :6], alone[0], atol=1e-5, rtol=1e-5)


def test_fused_lengths() -> None:
    a, v = torch.tensor([5, 0, 4]), torch.tensor([6, 3, 0])
    assert fused_lengths(a, v).tolist() == [5, 3, 4]
    assert fused_lengths(None, v).tolist() == [6, 3, 0]


def _encoders() -> list[nn.Module]:
    return [
        TransformerEncoder(16, 2, 4, 32, dropout=0.1, pos_enc="sinusoidal"),
        TransformerEncoder(16, 2, 4, 32, dropout=0.1, pos_enc="conv", pos_conv_kernel=8,
                           pos_conv_groups=4),
        ConformerEncoder(16, 2, 4, 32, dropout=0.1, kernel_size=7),
        ConformerEncoder(16, 2, 4, 32, dropout=0.1, kernel_size=7, pos_enc="conv",
                         pos_conv_kernel=8, pos_conv_groups=4, convolution_first=True),
    ]


@pytest.mark.parametrize("index", range(4))
def test_encoder_padding_invariance(index: int) -> None:
    torch.manual_seed(0)
    encoder = _encoders()[index].eval()
    _randomize_bn(encoder)
    x = torch.randn(3, 12, 16)
    lengths = torch.tensor([12, 7, 1])
    x[1, 7:] = 4.0
    with torch.no_grad():
        out, out_lengths = encoder(x, lengths)
        for b in (1, 2):
            n = int(lengths[b])
            alone, _ = encoder(x[b : b + 1, :n], lengths[b : b + 1])
            torch.testing.assert_close(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 12, 16) and out_lengths.tolist() == [12, 7, 1]
    assert out[1, 7:].abs().max() == 0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("index", range(4))
def test_encoder_shapes_errors_and_training(index: int) -> None:
    encoder = _encoders()[index].train()
    with pytest.raises(ValueError, match=r"\(2, 16\)"):
        encoder(torch.randn(2, 16))
    with pytest.raises(ValueError, match=r"\(2, 5, 8\)"):
        encoder(torch.randn(2, 5, 8))
    out, _ = encoder(torch.randn(2, 5, 16), torch.tensor([5, 0]))  # an empty item stays finite
    assert torch.isfinite(out).all()
    out.sum().backward()


def test_layer_drop_skips_layers_in_training_only() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(16, 4, 4, 32, dropout=0.0, layer_drop=1.0)
    x = torch.randn(1, 5, 16)
    out, _ = encoder.train()(x)
    torch.testing.assert_close(out, encoder.layer_norm(encoder.pos_enc(x)))
    assert not torch.allclose(encoder.eval()(x)[0], out)
