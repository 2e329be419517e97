"""ResNet-18 building blocks shared by the audio (1-D) and video (2-D) front-ends.

One :class:`BasicBlock` parameterised by its convolution and batch-norm classes serves both
trunks (:class:`BasicBlock1d`, :class:`BasicBlock2d`), and one :class:`ResNet` assembles four
stages of them. Module names follow torchvision and the public lip-reading code
(``layer1.0.conv1``, ``bn1``, ``relu1``, ``relu2``, ``downsample.0``/``downsample.1``, optional
``conv1``/``bn1``/``relu`` input stem, ``avgpool``), so torchvision ``resnet18`` stage weights and
auto_avsr / AV-HuBERT front-end weights load by name.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.utils import make_activation, make_pad_mask

__all__ = ["BasicBlock", "BasicBlock1d", "BasicBlock2d", "ResNet"]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3-wide convolutions with batch norm and a residual connection.

    Subclasses fix ``conv_cls`` / ``bn_cls`` (1-D or 2-D); the code is shared.

    The strided shortcut (``downsample.0`` 1×1 convolution, ``downsample.1`` batch norm)
    subsamples its input and then applies a stride-1 1×1 convolution: the same function and
    weights as a stride-``s`` 1×1 convolution, without oneDNN's strided 1×1 weight-gradient
    kernel, which writes past its workspace for channels-last inputs with fewer than 16 (AVX-512)
    or 8 (AVX2) input channels (uxlfoundation/oneDNN#6035: heap corruption or wrong gradients).

    Args:
        in_channels: input channels.
        channels: output channels.
        stride: stride of the first convolution (and of the shortcut projection).
        activation: ``"relu"``, ``"prelu"`` or ``"swish"``.
    """

    conv_cls: type[nn.Module] = nn.Conv2d
    bn_cls: type[nn.Module] = nn.BatchNorm2d

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = self.conv_cls(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = self.bn_cls(channels)
        self.relu1 = make_activation(activation, channels)
        self.conv2 = self.conv_cls(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = self.bn_cls(channels)
        self.relu2 = make_activation(activation, channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                self.conv_cls(in_channels, channels, 1, stride=1, bias=False),
                self.bn_cls(channels),
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (N, C, *spatial).
            mask: optional float mask at the OUTPUT resolution, 1 at valid and 0 at padded
                positions, broadcastable to the output, e.g. (B, 1, T) for 1-D sequences. It is
                applied after each activation, so that bias and batch-norm shifts at padded
                positions never reach valid positions through the next convolution.

        Returns:
            (N, channels, *spatial / stride).
        """
        out = self.relu1(self.bn1(self.conv1(x)))
        if mask is not None:
            out = out * mask
        out = self.bn2(self.conv2(out))
        if self.downsample is None:
            residual = x
        else:
            if self.stride != 1:  # = a stride-s 1×1 convolution (see the class docstring)
                # a 1-wide average pool subsamples exactly; unlike slicing, its backward keeps
                # the channels-last layout of the gradient (slicing costs ~40% of the trunk)
                pool = F.avg_pool1d if x.dim() == 3 else F.avg_pool2d
                x = pool(x, 1, self.stride)
            residual = self.downsample(x)
        out = self.relu2(out + residual)
        if mask is not None:
            out = out * mask
        return out


class BasicBlock1d(BasicBlock):
    """:class:`BasicBlock` over sequences (N, C, T) (audio trunk)."""

    conv_cls = nn.Conv1d
    bn_cls = nn.BatchNorm1d


class BasicBlock2d(BasicBlock):
    """:class:`BasicBlock` over images (N, C, H, W) (per-frame video trunk)."""

    conv_cls = nn.Conv2d
    bn_cls = nn.BatchNorm2d


def _conv_out_length(
    lengths: torch.Tensor, kernel: int, stride: int, padding: int
) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


class ResNet(nn.Module):
    """Four ResNet stages of basic blocks, with an optional input stem and a pooling layer.

    ``dim=2`` is the per-frame trunk of the lip-reading front-ends (input: stem feature maps,
    output: one vector per image after global average pooling). ``dim=1`` is the raw-waveform
    trunk of the audio front-end; it tracks lengths and re-masks padding after every layer so
    that a padded batch row equals the same item alone (in eval mode).

    Args:
        dim: 1 (sequences) or 2 (images).
        in_channels: channels entering the stem (or ``layer1`` when there is no stem).
        widths: output channels of the four stages.
        blocks: basic blocks per stage (ResNet-18: 2, 2, 2, 2).
        strides: stride of each stage's first block.
        activation: ``"relu"``, ``"prelu"`` or ``"swish"``.
        stem_channels: if given, an input stem ``conv1`` (in_channels → stem_channels, no bias),
            ``bn1``, ``relu`` runs first.
        stem_kernel_size: kernel of the stem convolution.
        stem_stride: stride of the stem convolution.
        stem_padding: padding of the stem convolution.
        pool_size: 1-D average-pooling window (= stride) after the stages; ``None`` for none.
            For ``dim=2`` the trunk always ends with global average pooling.
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        strides: Sequence[int] = (1, 2, 2, 2),
        activation: str = "relu",
        stem_channels: int | None = None,
        stem_kernel_size: int = 7,
        stem_stride: int = 2,
        stem_padding: int = 3,
        pool_size: int | None = None,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        if not (len(widths) == len(blocks) == len(strides) == 4):
            raise ValueError(
                f"widths, blocks and strides need 4 stages, got {widths}, {blocks}, {strides}"
            )
        self.dim = dim
        block_cls = BasicBlock1d if dim == 1 else BasicBlock2d
        self._stem = None
        if stem_channels is not None:
            conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
            bn_cls = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
            self.conv1 = conv_cls(
                in_channels,
                stem_channels,
                stem_kernel_size,
                stride=stem_stride,
                padding=stem_padding,
                bias=False,
            )
            self.bn1 = bn_cls(stem_channels)
            self.relu = make_activation(activation, stem_channels)
            self._stem = (stem_kernel_size, stem_stride, stem_padding)
            in_channels = stem_channels
        for i, (width, num_blocks, stride) in enumerate(zip(widths, blocks, strides)):
            layer = [block_cls(in_channels, width, stride, activation)]
            layer += [block_cls(width, width, 1, activation) for _ in range(num_blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            in_channels = width
        self.output_dim = in_channels
        self._pool_size = pool_size
        if dim == 2:
            self.avgpool: nn.Module | None = nn.AdaptiveAvgPool2d(1)
        elif pool_size is not None:
            self.avgpool = nn.AvgPool1d(pool_size, pool_size)
        else:
            self.avgpool = None

    def layers(self) -> list[nn.Sequential]:
        """The four stages ``layer1`` … ``layer4``."""
        return [getattr(self, f"layer{i}") for i in range(1, 5)]

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run stem, stages and pooling.

        Args:
            x: ``dim=1``: (B, C, T) with zeros at padded positions; ``dim=2``: (N, C, H, W).
            lengths: ``dim=1`` only: valid lengths (B,); ``None`` means no padding.

        Returns:
            ``dim=1``: (B, widths[-1], T') and lengths (B,) at the output rate (or ``None``);
            ``dim=2``: (N, widths[-1]) and ``None``.
        """
        expected = self.dim + 2
        if x.dim() != expected:
            layout = "(B, C, T)" if self.dim == 1 else "(N, C, H, W)"
            raise ValueError(
                f"ResNet(dim={self.dim}) input must be {layout}, got {tuple(x.shape)}"
            )
        if self.dim == 2:
            lengths = None
        mask = None
        if lengths is not None:
            mask = self._mask(lengths, x.shape[-1], x.dtype)
            x = x * mask
        if self._stem is not None:
            x = self.relu(self.bn1(self.conv1(x)))
            if lengths is not None:
                lengths = _conv_out_length(lengths, *self._stem)
                mask = self._mask(lengths, x.shape[-1], x.dtype)
                x = x * mask
        for layer in self.layers():
            for block in layer:
                if lengths is not None and block.stride != 1:
                    lengths = _conv_out_length(lengths, 3, block.stride, 1)
                    width = (x.shape[-1] - 1) // block.stride + 1  # conv 3, padding 1
                    mask = self._mask(lengths, width, x.dtype)
                x = block(x, mask)
        if self.avgpool is not None:
            x = self.avgpool(x)
            if self.dim == 2:
                x = x.flatten(1)
            elif lengths is not None:
                assert self._pool_size is not None
                lengths = torch.div(lengths, self._pool_size, rounding_mode="floor")
        return x, lengths

    @staticmethod
    def _mask(lengths: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
        """(B, 1, width) float mask, 1 at valid positions."""
        return (~make_pad_mask(lengths, width)).to(dtype).unsqueeze(1)
