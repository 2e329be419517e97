"""Visual front-end: 3-D convolutional stem + per-frame 2-D ResNet-18 (lip reading).

Stafylakis & Tzimiropoulos, "Combining Residual Networks with LSTMs for Lipreading",
Interspeech 2017; the same stem and trunk are used by AV-HuBERT (Shi et al., ICLR 2022),
auto_avsr (Ma et al., ICASSP 2023) and USR (Haliassos et al., NeurIPS 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from avsr.models.frontends.resnet import ResNet
from avsr.models.utils import check_shape, make_activation, make_pad_mask

__all__ = ["VideoResNet"]


class VideoResNet(nn.Module):
    """3-D stem + 2-D ResNet-18 trunk mapping mouth crops to one vector per frame.

    The stem (``frontend3D``: Conv3d 1→stem_channels, kernel 5×7×7, stride 1×2×2, padding
    2×3×3, batch norm, activation, max-pool 1×3×3 stride 1×2×2 padding 0×1×1) mixes 5 frames;
    the trunk (``trunk.layer1`` … ``trunk.layer4``, ``trunk.avgpool``) works on each frame alone.
    No temporal downsampling: the output rate is the video rate (25 Hz).

    Padding: frames past an item's length are zeroed before the stem, so the temporal
    convolution sees them exactly like its own zero padding; everything after it is per frame.
    A padded batch row therefore equals the item alone (in eval mode), and output rows are
    zero past their length. Padded frames are computed (selecting the valid frames costs more
    than it saves at the padding a bucketing sampler leaves) and, as in auto_avsr, enter
    training-mode batch-norm statistics.

    Args:
        widths: output channels of the four trunk stages; the output dimension is
            ``widths[-1]``.
        stem_channels: channels of the 3-D stem (input of ``trunk.layer1``).
        activation: ``"relu"``, ``"prelu"`` (AV-HuBERT) or ``"swish"`` (auto_avsr, USR).
        blocks: basic blocks per trunk stage (ResNet-18: 2, 2, 2, 2).
        channels_last: keep weights and feature maps channels-last (NDHWC / NHWC), which
            runs the convolutions ~1.5x faster on CPU (oneDNN) for the same results.
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int = 64,
        activation: str = "swish",
        blocks: Sequence[int] = (2, 2, 2, 2),
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        # After the Conv3d, batch norm (1×1×1) and max-pooling (1×3×3) act on each frame alone:
        # they run as 2-D modules on (B·T) frames; state-dict keys equal BatchNorm3d's
        # (frontend3D.1.running_mean, ...), so public checkpoints load unchanged.
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, stem_channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm2d(stem_channels),
            make_activation(activation, stem_channels),
            nn.MaxPool2d(3, 2, 1),
        )
        self.trunk = ResNet(
            dim=2, in_channels=stem_channels, widths=widths, blocks=blocks, activation=activation
        )
        self.output_dim = self.trunk.output_dim
        self.channels_last = channels_last
        if channels_last:
            self.frontend3D[0].to(memory_format=torch.channels_last_3d)
            self.trunk.to(memory_format=torch.channels_last)

    def forward(
        self, video: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode frames.

        Args:
            video: (B, T, 1, H, W) normalised grayscale frames (88×88 in the recipes).
            lengths: valid frames per item (B,); ``None`` means all T.

        Returns:
            features (B, T, D) with D = ``widths[-1]``, zero past each length, and lengths (B,).
        """
        check_shape("video", video, 5, "(B, T, 1, H, W)")
        if video.shape[2] != 1:
            raise ValueError(f"video must be (B, T, 1, H, W) grayscale, got {tuple(video.shape)}")
        batch, frames = video.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=video.device)
        valid = ~make_pad_mask(lengths, frames)  # (B, T)
        # torch.export cannot branch on tensor values: masking an unpadded batch is a no-op
        padded = torch.compiler.is_exporting() or not bool(valid.all())
        if padded:
            video = video * valid[:, :, None, None, None].to(video.dtype)
        x = video.transpose(1, 2)  # (B, 1, T, H, W): Conv3d layout
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.frontend3D[0](x)
        # (B, C, T, H', W') -> (B·T, C, H', W'); a free view when channels-last
        x = x.transpose(1, 2).flatten(0, 1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.frontend3D[1:](x)
        x, _ = self.trunk(x)  # (B·T, D)
        x = x.view(batch, frames, -1)
        if padded:
            x = x.masked_fill(~valid.unsqueeze(-1), 0.0)
        return x, lengths
