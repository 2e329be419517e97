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
