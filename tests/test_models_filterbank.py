import pytest
import torch

from avsr.models.frontends.filterbank import FilterbankFrontend


def test_filterbank_rate_and_padding_invariance():
    torch.manual_seed(0)
    fe = FilterbankFrontend(num_mels=8, output_dim=6).eval()
    a, b = torch.randn(640 * 7 + 100), torch.randn(640 * 4 + 33)
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    out, lengths = fe(batch, torch.tensor([a.numel(), b.numel()]))
    assert out.shape == (2, 7, 6) and lengths.tolist() == [7, 4]
    alone, _ = fe(b[None], torch.tensor([b.numel()]))
    assert torch.allclose(out[1, :4], alone[0], atol=1e-5)
    assert torch.all(out[1, 4:] == 0)


def test_filterbank_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        FilterbankFrontend(num_mels=8, output_dim=4)(torch.zeros(2, 1, 640))


def _avhubert_features(wave):
    """AV-HuBERT's own recipe (hubert_dataset.load_feature) on one waveform."""
    import numpy as np
    from python_speech_features import logfbank

    feats = logfbank(wave, samplerate=16000).astype(np.float32)  # (T, 26)
    rest = (-len(feats)) % 4
    feats = np.concatenate([feats, np.zeros((rest, feats.shape[1]), np.float32)])
    feats = torch.from_numpy(feats.reshape(-1, 104))
    return torch.nn.functional.layer_norm(feats, feats.shape[1:])


@pytest.mark.parametrize("frames", [3, 10])
def test_filterbank_features_equal_avhubert_python_speech_features(frames):
    torch.manual_seed(frames)
    wave = (torch.randn(640 * frames) * 3000).double()
    fe = FilterbankFrontend(num_mels=26, output_dim=104).eval()
    with torch.no_grad():
        fe.proj.weight.copy_(torch.eye(104))
        fe.proj.bias.zero_()
        ours, lengths = fe(wave.float()[None], torch.tensor([wave.numel()]))
    ref = _avhubert_features(wave.numpy())
    assert lengths.tolist() == [frames] and ref.shape == (frames, 104)
    assert torch.allclose(ours[0], ref, atol=1e-5), (ours[0] - ref).abs().max()


@pytest.mark.parametrize("normalize", ["frame", "utterance", "none"])
def test_filterbank_padding_invariance_every_normalisation(normalize):
    torch.manual_seed(1)
    fe = FilterbankFrontend(num_mels=8, output_dim=6, normalize=normalize).eval()
    a, b = torch.randn(640 * 6), torch.randn(640 * 3 + 500)
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    batch[1, b.numel():] = 5.0  # garbage in the padding must not leak
    out, _ = fe(batch, torch.tensor([a.numel(), b.numel()]))
    alone, _ = fe(b[None], torch.tensor([b.numel()]))
    assert torch.allclose(out[1, :3], alone[0], atol=1e-5)


def test_filterbank_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match="normalize"):
        FilterbankFrontend(normalize="global")
