"""torchvision-compatible video trunk: parity with torchvision ResNets, MoCo v2 loading."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from avsr.models.frontends import VideoResNet
from avsr.models.frontends.video_torchvision import (
    VideoTorchvisionResNet,
    load_torchvision_trunk,
)


def _randomize_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def _stages(net: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    return net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(x))))).flatten(1)


def _check_trunk(reference: torchvision.models.ResNet, frontend: nn.Module) -> None:
    reference.eval()
    _randomize_bn(reference)
    ignored = load_torchvision_trunk(frontend, reference.state_dict())
    assert "conv1.weight" in ignored and "fc.weight" in ignored
    x = torch.randn(2, 64, 22, 22)
    with torch.no_grad():
        expected = _stages(reference, x)
        got, _ = frontend.eval().trunk(x)
    # deep random trunks reach large magnitudes: compare relative to the largest output
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, atol=2e-6 * scale, rtol=0.0)


def test_resnet50_trunk_matches_torchvision() -> None:
    torch.manual_seed(0)
    _check_trunk(torchvision.models.resnet50(weights=None), VideoTorchvisionResNet())


def test_resnet18_loads_into_both_trunks() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    _check_trunk(reference, VideoTorchvisionResNet(block="basic", layers=(2, 2, 2, 2)))
    _check_trunk(reference, VideoResNet(activation="relu"))


def test_moco_v2_checkpoint_loads() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    _randomize_bn(reference)
    q = {f"module.encoder_q.{k}": v for k, v in reference.state_dict().items()
         if not k.startswith("fc.")}
    # MoCo v2: MLP head fc.0 / fc.2, momentum encoder, queue; all ignored
    q["module.encoder_q.fc.0.weight"] = torch.randn(2048, 2048)
    q["module.encoder_q.fc.2.weight"] = torch.randn(128, 2048)
    q["module.encoder_k.layer1.0.conv1.weight"] = torch.randn(64, 64, 1, 1)
    q["module.queue"] = torch.randn(128, 16)
    frontend = VideoTorchvisionResNet()
    ignored = load_torchvision_trunk(frontend, {"epoch": 200, "state_dict": q})
    assert "fc.0.weight" in ignored
    for key, value in frontend.trunk.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], msg=key)
    with pytest.raises(KeyError, match="trunk weights"):
        load_torchvision_trunk(frontend, {"layer1.0.conv1.weight": torch.zeros(1)})


def test_frontend_shapes_and_padding_invariance() -> None:
    torch.manual_seed(0)
    model = VideoTorchvisionResNet(layers=(1, 1, 1, 1)).eval()
    _randomize_bn(model)
    video = torch.randn(2, 6, 1, 32, 32)
    video[1, 4:] = 5.0
    with torch.no_grad():
        out, lengths = model(video, torch.tensor([6, 4]))
        alone, _ = model(video[1:, :4])
    assert model.output_dim == 2048 and out.shape == (2, 6, 2048) and lengths.tolist() == [6, 4]
    torch.testing.assert_close(out[1, :4], alone[0], atol=1e-4, rtol=1e-5)
    assert out[1, 4:].abs().max() == 0
