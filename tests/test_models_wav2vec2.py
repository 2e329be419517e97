"""wav2vec 2.0 front-end: parity with torchaudio's model, padding, rate, freezing options."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from avsr.models.frontends.wav2vec2 import Wav2Vec2Frontend

# the real strides (20 ms, receptive field 400 samples) with 8 channels
SMALL = dict(
    extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2), (8, 2, 2), (8, 2, 2), (8, 2, 2),
                                 (8, 2, 2), (8, 2, 2)],
    encoder_embed_dim=16, encoder_pos_conv_kernel=8, encoder_pos_conv_groups=4,
    encoder_num_layers=2, encoder_num_heads=2, encoder_ff_interm_features=32,
)


def _pair(mode: str, layer_norm_first: bool, **kwargs):
    torch.manual_seed(0)
    args = dict(SMALL, extractor_mode=mode, extractor_conv_bias=mode == "layer_norm",
                encoder_layer_norm_first=layer_norm_first)
    reference = torchaudio.models.wav2vec2_model(
        **args, encoder_projection_dropout=0.1, encoder_attention_dropout=0.1,
        encoder_ff_interm_dropout=0.1, encoder_dropout=0.1, encoder_layer_drop=0.1,
        aux_num_out=5,
    ).eval()
    with torch.no_grad():  # non-trivial norm parameters, so a key left unloaded shows
        for name, p in reference.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    ours = Wav2Vec2Frontend(**args, **kwargs).eval()
    ignored = ours.load_wav2vec2_state_dict(reference.state_dict())
    assert ignored == ["aux.bias", "aux.weight"]
    return reference, ours


@pytest.mark.parametrize(("mode", "layer_norm_first"),
                         [("group_norm", False), ("layer_norm", True)])
def test_matches_torchaudio_wav2vec2_model(mode: str, layer_norm_first: bool) -> None:
    reference, ours = _pair(mode, layer_norm_first, rate="none")
    reference.aux = None
    audio = torch.randn(2, 640 * 6)
    with torch.no_grad():
        expected, _ = reference(audio)
        got, lengths = ours(audio)
    assert got.shape == expected.shape == (2, 11, 16) and lengths.tolist() == [11, 11]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rate", ["conv", "avg"])
@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_25hz_and_padding_invariance(rate: str, mode: str) -> None:
    _, ours = _pair(mode, mode == "layer_norm", rate=rate, output_dim=12, downsample_kernel=3)
    n_long, n_short = 640 * 6, 640 * 4 + 100
    audio = torch.randn(2, n_long)
    audio[1, n_short:] = 3.0  # garbage in the padding must not matter
    with torch.no_grad():
        out, lengths = ours(audio, torch.tensor([n_long, n_short]))
        alone, alone_lengths = ours(audio[1:, :n_short])
    dim = 12 if rate == "conv" else 16
    assert out.shape == (2, 6, dim) and lengths.tolist() == [6, 4]
    assert alone.shape == (1, 4, dim) and alone_lengths.tolist() == [4]
    torch.testing.assert_close(out[1, :4], alone[0], atol=1e-5, rtol=1e-5)
    assert out[1, 4:].abs().max() == 0


def test_rate_needs_50hz_feature_encoder() -> None:
    config = dict(SMALL, extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2)])
    with pytest.raises(ValueError, match="stride"):
        Wav2Vec2Frontend(**config, rate="conv")
    with pytest.raises(ValueError, match="rate"):
        Wav2Vec2Frontend(**SMALL, rate="max")


def _grads(model: Wav2Vec2Frontend) -> dict[str, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    out, _ = model(torch.randn(2, 640 * 3))
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_freeze_steps() -> None:
    model = Wav2Vec2Frontend(**SMALL, freeze_steps=2, encoder_layer_drop=0.0).train()
    for _ in range(2):  # frozen: only the rate adapter learns
        grads = _grads(model)
        assert grads["encoder.feature_projection.projection.weight"] is None
        assert grads["downsample.weight"] is not None
    grads = _grads(model)
    assert grads["encoder.feature_projection.projection.weight"] is not None
    assert int(model.num_updates) == 3
    model.eval()(torch.randn(1, 640 * 2))
    assert int(model.num_updates) == 3  # evaluation does not count


def test_feature_grad_scale() -> None:
    def cnn_grad(scale: float) -> torch.Tensor | None:
        torch.manual_seed(0)
        model = Wav2Vec2Frontend(**SMALL, feature_grad_scale=scale, encoder_dropout=0.0,
                                 encoder_projection_dropout=0.0, encoder_attention_dropout=0.0,
                                 encoder_layer_drop=0.0).train()
        torch.manual_seed(1)
        return _grads(model)["feature_extractor.conv_layers.0.conv.weight"]

    full, tenth, frozen = cnn_grad(1.0), cnn_grad(0.1), cnn_grad(0.0)
    assert frozen is None and full is not None and tenth is not None
    torch.testing.assert_close(tenth, 0.1 * full, atol=1e-6, rtol=1e-4)
