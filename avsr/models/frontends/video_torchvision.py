"""Visual front-end with a torchvision ResNet trunk (Pan et al.'s MoCo v2 ResNet-50).

The 3-D stem of :class:`~avsr.models.frontends.video_resnet.VideoResNet` followed by the four
stages of a torchvision ResNet, so torchvision ``resnet18`` / ``resnet50`` weights and MoCo v2
``module.encoder_q.*`` checkpoints load into ``trunk`` (:func:`load_torchvision_trunk`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from avsr.models.frontends.video_resnet import VideoResNet

__all__ = ["TorchvisionTrunk", "VideoTorchvisionResNet", "load_torchvision_trunk"]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_MOCO_PREFIX = "module.encoder_q."


class TorchvisionTrunk(nn.Module):
    """``layer1`` … ``layer4`` and ``avgpool`` of a torchvision ResNet (He et al., CVPR 2016),
    taken from :class:`torchvision.models.resnet.ResNet` (its 2-D stem and ``fc`` dropped).

    Args:
        block: ``"bottleneck"`` (ResNet-50: layers 3, 4, 6, 3) or ``"basic"`` (ResNet-18).
        layers: blocks per stage.
        width_per_group: torchvision's bottleneck width (64; 128 for wide ResNets).

    Shapes: (N, 64, H, W) stem feature maps -> ((N, 512 · expansion), ``None``).
    """

    def __init__(self, block: str = "bottleneck", layers: Sequence[int] = (3, 4, 6, 3),
                 width_per_group: int = 64) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"unknown block {block!r}; expected one of {tuple(_BLOCKS)}")
        net = ResNet(_BLOCKS[block], list(layers), width_per_group=width_per_group)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.avgpool = net.avgpool
        self.output_dim = net.fc.in_features

    def forward(self, x: torch.Tensor, lengths: None = None) -> tuple[torch.Tensor, None]:
        """Args: x (N, 64, H, W). Returns (N, output_dim) and ``None``."""
        if x.dim() != 4:
            raise ValueError(f"trunk input must be (N, C, H, W), got {tuple(x.shape)}")
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1), None


class VideoTorchvisionResNet(VideoResNet):
    """3-D stem (``frontend3D``) + a torchvision ResNet trunk, one vector per frame.

    Pan et al., "Leveraging Unimodal Self-Supervised Learning for Multimodal Audio-Visual
    Speech Recognition", ACL 2022: Conv3d 1→64 (5×7×7) + BN + ReLU + max-pool, then the MoCo v2
    (Chen et al. 2020) ImageNet ResNet-50 → 2048 per frame. Forward, padding handling and
    shapes are :class:`VideoResNet`'s; only the trunk differs.

    Args:
        block: ``"bottleneck"`` (ResNet-50) or ``"basic"`` (ResNet-18).
        layers: blocks per trunk stage.
        width_per_group: bottleneck width.
        activation: stem activation (``"relu"`` in Pan et al.).
        channels_last: channels-last weights and feature maps (faster on CPU).
    """

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        width_per_group: int = 64,
        activation: str = "relu",
        channels_last: bool = True,
    ) -> None:
        # the parent builds the stem (and a minimal ResNet trunk, replaced right away)
        super().__init__(widths=(64, 64, 64, 64), stem_channels=64, activation=activation,
                         blocks=(1, 1, 1, 1), channels_last=channels_last)
        self.trunk = TorchvisionTrunk(block, layers, width_per_group)
        self.output_dim = self.trunk.output_dim
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)


def load_torchvision_trunk(
    frontend: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> list[str]:
    """Load torchvision ResNet or MoCo v2 weights into ``frontend.trunk``.

    Accepts a torchvision ``resnet18`` / ``resnet50`` state_dict (keys ``layer1.*`` …), a
    MoCo v2 checkpoint's ``state_dict`` (keys ``module.encoder_q.*``; ``encoder_k``, the
    queue and the MLP head are ignored) or the whole MoCo checkpoint dict (with a
    ``state_dict`` entry). The 2-D stem (``conv1``, ``bn1``) and ``fc`` are ignored: the 3-D
    stem replaces the stem. Works for :class:`VideoTorchvisionResNet` and, with ``relu``,
    :class:`VideoResNet` (ResNet-18).

    Args:
        frontend: a module with a ``trunk`` whose stages are torchvision-named.
        state_dict: the weights.

    Returns:
        The ignored keys.

    Raises:
        KeyError: if a trunk weight is missing or has the wrong shape.
    """
    if "state_dict" in state_dict and not isinstance(state_dict["state_dict"], torch.Tensor):
        state_dict = state_dict["state_dict"]  # type: ignore[assignment]
    if any(k.startswith(_MOCO_PREFIX) for k in state_dict):
        state_dict = {k[len(_MOCO_PREFIX):]: v for k, v in state_dict.items()
                      if k.startswith(_MOCO_PREFIX)}
    trunk: nn.Module = frontend.trunk  # type: ignore[assignment]
    own = trunk.state_dict()
    stages = {k: v for k, v in state_dict.items() if k in own}
    problems = [k for k in own if k not in stages or stages[k].shape != own[k].shape]
    if problems:
        raise KeyError(f"{len(problems)} trunk weights missing or mis-shaped, e.g. {problems[:3]}")
    trunk.load_state_dict(stages, strict=True)
    return sorted(k for k in state_dict if k not in own)
