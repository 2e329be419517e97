"""Front-ends: shapes, rates, padding invariance, torchvision parity of the 2-D trunk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsr.models.frontends import AudioResNet, BasicBlock1d, BasicBlock2d, ResNet, VideoResNet
from avsr.models.utils import make_pad_mask

WIDTHS = (8, 16, 16, 32)


def _randomize_bn(module: nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode batch norm shifts padded positions."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_make_pad_mask() -> None:
    mask = make_pad_mask(torch.tensor([1, 3, 0]), 4)
    assert mask.tolist() == [
        [False, True, True, True],
        [False, False, False, True],
        [True, True, True, True],
    ]
    assert make_pad_mask(torch.tensor([2, 1])).shape == (2, 2)
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        make_pad_mask(torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("activation", ["relu", "prelu", "swish"])
def test_video_shapes_and_padding_invariance(activation: str) -> None:
    torch.manual_seed(0)
    model = VideoResNet(widths=WIDTHS, stem_channels=8, activation=activation).eval()
    _randomize_bn(model)
    lengths = torch.tensor([9, 6])
    video = torch.randn(2, 9, 1, 32, 32)
    video[1, 6:] = 5.0  # garbage in padding must not matter
    with torch.no_grad():
        out, out_lengths = model(video, lengths)
        alone, _ = model(video[1:, :6], lengths[1:])
    assert out.shape == (2, 9, 32) and out_lengths.tolist() == [9, 6]
    torch.testing.assert_close(out[1, :6], alone[0], atol=1e-5, rtol=1e-5)
    assert out[1, 6:].abs().max() == 0


def test_video_channels_last_matches_default_layout() -> None:
    torch.manual_seed(0)
    a = VideoResNet(widths=WIDTHS, stem_channels=8, channels_last=True).eval()
    b = VideoResNet(widths=WIDTHS, stem_channels=8, channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    video = torch.randn(2, 5, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(a(video)[0], b(video)[0], atol=1e-5, rtol=1e-5)


def test_video_channels_last_gradients_match_default_layout() -> None:
    """Training gradients agree across memory layouts at tiny channel counts (< 16, where the
    strided shortcut avoids oneDNN#6035)."""
    torch.manual_seed(0)
    a = VideoResNet(widths=(4, 4, 8, 8), stem_channels=4, channels_last=True).train()
    b = VideoResNet(widths=(4, 4, 8, 8), stem_channels=4, channels_last=False).train()
    b.load_state_dict(a.state_dict())
    video, lengths = torch.randn(3, 6, 1, 40, 40), torch.tensor([6, 4, 5])
    for model in (a, b):
        out, _ = model(video, lengths)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads_b = dict(b.named_parameters())
    for name, p in a.named_parameters():
        torch.testing.assert_close(p.grad, grads_b[name].grad, atol=1e-4, rtol=1e-4, msg=name)


def test_video_rejects_bad_rank() -> None:
    model = VideoResNet(widths=WIDTHS, stem_channels=8)
    with pytest.raises(ValueError, match=r"\(2, 5, 24, 24\)"):
        model(torch.randn(2, 5, 24, 24))
    with pytest.raises(ValueError, match=r"\(2, 5, 3, 24, 24\)"):
        model(torch.randn(2, 5, 3, 24, 24))


def test_video_state_dict_names_follow_public_layout() -> None:
    keys = set(VideoResNet(widths=WIDTHS, stem_channels=8, activation="prelu").state_dict())
    for key in [
        "frontend3D.0.weight",
        "frontend3D.1.running_mean",
        "frontend3D.2.weight",
        "trunk.layer1.0.conv1.weight",
        "trunk.layer1.0.relu1.weight",
        "trunk.layer2.0.downsample.0.weight",
        "trunk.layer2.0.downsample.1.running_var",
        "trunk.layer4.1.bn2.weight",
    ]:
        assert key in keys, key


def test_2d_trunk_matches_torchvision_resnet18() -> None:
    """Our 2-D trunk with torchvision resnet18 stage weights equals resnet18's stages."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    _randomize_bn(reference)
    trunk = ResNet(dim=2, in_channels=64, activation="relu").eval()
    stage_weights = {
        k: v for k, v in reference.state_dict().items() if k.startswith(("layer", "avgpool"))
    }
    missing, unexpected = trunk.load_state_dict(stage_weights, strict=True)
    assert not missing and not unexpected
    x = torch.randn(3, 64, 22, 22)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
        expected = reference.avgpool(expected).flatten(1)
        got, _ = trunk(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_blocks_share_code_across_dims() -> None:
    b1, b2 = BasicBlock1d(4, 8, 2), BasicBlock2d(4, 8, 2)
    assert type(b1).forward is type(b2).forward
    assert isinstance(b1.conv1, nn.Conv1d) and isinstance(b2.conv1, nn.Conv2d)
    assert b1(torch.randn(2, 4, 10)).shape == (2, 8, 5)
    assert b2(torch.randn(2, 4, 10, 10)).shape == (2, 8, 5, 5)


def test_audio_rate_and_lengths() -> None:
    model = AudioResNet(widths=WIDTHS).eval()
    audio = torch.randn(2, 640 * 7 + 300)
    with torch.no_grad():
        out, lengths = model(audio, torch.tensor([640 * 7 + 300, 640 * 3 + 639]))
    assert out.shape == (2, 7, 32)
    assert lengths.tolist() == [7, 3]
    with pytest.raises(ValueError, match=r"\(2, 1, 100\)"):
        model(torch.randn(2, 1, 100))


@pytest.mark.parametrize("activation", ["relu", "prelu", "swish"])
def test_audio_padding_invariance(activation: str) -> None:
    torch.manual_seed(0)
    model = AudioResNet(widths=WIDTHS, activation=activation).eval()
    _randomize_bn(model)
    n_long, n_short = 640 * 6, 640 * 3 + 200  # the short item is cut to 3 whole frames
    audio = torch.randn(2, n_long)
    audio[1, n_short:] = 3.0
    with torch.no_grad():
        out, lengths = model(audio, torch.tensor([n_long, n_short]))
        alone, alone_lengths = model(audio[1:, :n_short], torch.tensor([n_short]))
    assert lengths.tolist() == [6, 3] and alone_lengths.tolist() == [3]
    assert alone.shape == (1, 3, 32)
    torch.testing.assert_close(out[1, :3], alone[0], atol=1e-5, rtol=1e-5)
    assert out[1, 3:].abs().max() == 0
