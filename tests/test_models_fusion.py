"""Fusion modules: shared contract (shapes, lengths, padding, absent streams), modality dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsr.models import TransformerEncoder
from avsr.models.encoder_identity import IdentityEncoder
from avsr.models.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    MLPFusion,
    ModalityDropout,
    ModalityEncodersFusion,
    ModalityLinearFusion,
    SumFusion,
    TransformerFusion,
)

DA, DV, D = 6, 4, 8


def _make(name: str, **kw) -> nn.Module:
    if name == "concat":
        return ConcatFusion(DA, DV, D, **kw)
    if name == "sum":
        return SumFusion(DA, DV, D, **kw)
    if name == "mlp":
        return MLPFusion(DA, DV, D, hidden_dim=16, **kw)
    if name == "linear":
        return ModalityLinearFusion(DA, DV, D, **kw)
    if name == "cross_attention":
        return CrossAttentionFusion(DA, DV, D, num_heads=2, **kw)
    if name == "transformer":
        return TransformerFusion(DA, DV, D, num_layers=2, num_heads=2, ffn_dim=16, **kw)
    if name == "modality_encoders":
        return ModalityEncodersFusion(
            ConcatFusion(D, D, D, **kw),
            audio_encoder=TransformerEncoder(D, 1, 2, 16), video_encoder=TransformerEncoder(
                D, 1, 2, 16), audio_input_dim=DA, video_input_dim=DV)
    raise KeyError(name)


NAMES = ["concat", "sum", "mlp", "linear", "cross_attention", "transformer", "modality_encoders"]


def _randomize(module: nn.Module) -> None:
    """Non-trivial fills and batch-norm statistics, so every path shows."""
    g = torch.Generator().manual_seed(3)
    for name, p in module.named_parameters():
        if name.endswith("_missing"):
            p.data.copy_(torch.randn(p.shape, generator=g))
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("missing", ["zeros", "learned"])
@pytest.mark.parametrize("name", NAMES)
def test_fusion_contract(name: str, missing: str) -> None:
    torch.manual_seed(0)
    fusion = _make(name, missing=missing).eval()
    _randomize(fusion)
    audio, video = torch.randn(3, 10, DA), torch.randn(3, 9, DV)
    audio[1, 7:], video[1, 7:] = 9.0, -9.0  # padding garbage
    a_len, v_len = torch.tensor([10, 7, 0]), torch.tensor([9, 7, 5])
    with torch.no_grad():
        x, lengths = fusion(audio, video, a_len, v_len)
        # padding invariance: item 1 alone
        alone, _ = fusion(audio[1:2, :7], video[1:2, :7], a_len[1:2], v_len[1:2])
        # item 2 has no audio: the same as the audio stream absent altogether
        video_only, len_v = fusion(None, video[2:], None, v_len[2:])
        audio_only, len_a = fusion(audio, None, a_len, None)
    assert x.shape == (3, 9, D) and lengths.tolist() == [9, 7, 5]
    assert x[1, 7:].abs().max() == 0 and x[2, 5:].abs().max() == 0
    torch.testing.assert_close(x[1, :7], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x[2, :5], video_only[0, :5], atol=1e-5, rtol=1e-5)
    assert len_v.tolist() == [5] and len_a.tolist() == [10, 7, 0]
    assert audio_only.shape == (3, 10, D) and torch.isfinite(audio_only).all()
    with pytest.raises(ValueError, match=r"\(3, 10\)"):
        fusion(torch.randn(3, 10), video, None, v_len)
    with pytest.raises(ValueError):
        fusion(None, None, None, None)
    fusion.train()
    out, _ = fusion(audio, video, a_len, v_len)
    out.sum().backward()


@pytest.mark.parametrize("name", ["concat", "sum", "mlp", "cross_attention", "transformer"])
def test_learned_missing_embedding_is_used(name: str) -> None:
    torch.manual_seed(0)
    fusion = _make(name, missing="learned").eval()
    audio = torch.randn(1, 5, DA)
    with torch.no_grad():
        learned, _ = fusion(audio, None)
        fusion.video_missing.zero_()
        zeros, _ = fusion(audio, None)
        reference = _make(name, missing="zeros").eval()
        reference.load_state_dict(fusion.state_dict(), strict=False)
        expected, _ = reference(audio, None)
    assert not torch.allclose(learned, zeros)
    torch.testing.assert_close(zeros, expected)  # a zero embedding = the "zeros" option


def test_modality_linear_fusion_picks_one_map_per_item() -> None:
    torch.manual_seed(0)
    fusion = ModalityLinearFusion(DA, DV, D).eval()
    audio, video = torch.randn(3, 5, DA), torch.randn(3, 5, DV)
    x, _ = fusion(audio, video, torch.tensor([5, 5, 0]), torch.tensor([5, 0, 5]))
    torch.testing.assert_close(x[0], fusion.linear_av(torch.cat([video[0], audio[0]], -1)))
    torch.testing.assert_close(x[1], fusion.linear_a(audio[1]))
    torch.testing.assert_close(x[2], fusion.linear_v(video[2]))


def test_mlp_fusion_batch_norm_ignores_padding_in_training() -> None:
    torch.manual_seed(0)
    fusion = MLPFusion(DA, DV, D, hidden_dim=16).train()
    audio, video = torch.randn(2, 6, DA), torch.randn(2, 6, DV)
    lengths = torch.tensor([6, 4])
    x, _ = fusion(audio, video, lengths, lengths)
    audio2, video2 = audio.clone(), video.clone()
    audio2[1, 4:], video2[1, 4:] = 50.0, 50.0
    y, _ = fusion(audio2, video2, lengths, lengths)
    torch.testing.assert_close(x, y)


@pytest.mark.parametrize("name", ["concat", "transformer"])
@pytest.mark.parametrize(("p_audio", "dropped"), [(1.0, "audio"), (0.0, "video")])
def test_modality_dropout_is_an_absent_stream(name: str, p_audio: float, dropped: str) -> None:
    torch.manual_seed(0)
    fusion = _make(name, missing="learned", p_modality=1.0, p_audio=p_audio, dropout=0.0)
    audio, video = torch.randn(2, 5, DA), torch.randn(2, 5, DV)
    lengths = torch.tensor([5, 3])
    reference = _make(name, missing="learned", dropout=0.0)
    reference.load_state_dict(fusion.state_dict())
    fusion.train()
    reference.eval()
    for layer in fusion.modules():  # dropout off, dropout of modalities on
        if isinstance(layer, nn.Dropout):
            layer.p = 0.0
    x, x_len = fusion(audio, video, lengths, lengths)
    kept = (None, video) if dropped == "audio" else (audio, None)
    expected, _ = reference(*kept, lengths if kept[0] is not None else None,
                            lengths if kept[1] is not None else None)
    assert x_len.tolist() == [5, 3]
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(fusion.eval()(audio, video, lengths, lengths)[0],
                          reference(audio, video, lengths, lengths)[0], atol=1e-5)


def test_modality_dropout_probabilities() -> None:
    """AV-HuBERT: P(drop) = p_modality; P(audio | drop) = p_audio; one draw per batch."""
    torch.manual_seed(0)
    both = torch.tensor([True, True, False])
    per_batch = ModalityDropout(0.5, 0.25).train()
    counts = torch.zeros(3)
    for _ in range(4000):
        a, v = per_batch(both)
        assert not (a & v).any() and not a[2] and not v[2]
        assert a[0] == a[1] and v[0] == v[1]  # the whole batch loses the same stream
        counts += torch.stack([a[0], v[0], ~(a[0] | v[0])]).float()
    torch.testing.assert_close(counts / 4000, torch.tensor([0.125, 0.375, 0.5]), atol=0.03,
                               rtol=0.0)
    per_item = ModalityDropout(1.0, 0.5, per_item=True).train()
    a, v = per_item(torch.ones(4000, dtype=torch.bool))
    assert 0.45 < a.float().mean() < 0.55 and bool((a ^ v).all())
    a, v = per_item.eval()(both)
    assert not a.any() and not v.any()
    with pytest.raises(ValueError, match="p_audio"):
        ModalityDropout(0.5, 1.5)


def test_identity_encoder() -> None:
    x = torch.randn(2, 4, 8)
    y, lengths = IdentityEncoder(8)(x, torch.tensor([4, 2]))
    assert lengths.tolist() == [4, 2] and y[1, 2:].abs().max() == 0
    torch.testing.assert_close(y[0], x[0])
    with pytest.raises(ValueError, match=r"\(2, 4, 6\)"):
        IdentityEncoder(8)(torch.randn(2, 4, 6))
