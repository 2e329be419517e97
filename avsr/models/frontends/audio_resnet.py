"""Auditory front-end: raw-waveform 1-D ResNet-18 at 25 Hz (640 samples per output vector).

Petridis et al., "End-to-end Audiovisual Speech Recognition", ICASSP 2018; Ma et al.,
"End-to-end Audio-visual Speech Recognition with Conformers", ICASSP 2021 (the front-end of
auto_avsr and USR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from avsr.modalities import SAMPLES_PER_FRAME
from avsr.models.frontends.resnet import ResNet
from avsr.models.utils import check_shape

__all__ = ["AudioResNet", "SAMPLES_PER_FRAME", "whole_frames"]

# SAMPLES_PER_FRAME (640 at 16 kHz / 25 fps) = stem stride 4 × stages 2·2·2 × pool 20


class AudioResNet(nn.Module):
    """1-D ResNet-18 over the raw 16 kHz waveform, one vector per 640 samples (25 Hz).

    ``trunk.conv1`` (Conv1d 1→stem_channels, kernel 80, stride 4, padding 38), ``trunk.bn1``,
    ``trunk.relu``, four stages of 1-D basic blocks with strides 1, 2, 2, 2
    (``trunk.layer1`` … ``trunk.layer4``) and ``trunk.avgpool`` (window 20): 4·8·20 = 640.

    Each item is cut to a whole number of frames (``lengths // 640 * 640`` samples, as
    auto_avsr cuts the batch), the rest is zeroed, and the trunk re-masks padding after every
    layer, so a padded batch row equals the same item alone (in eval mode).

    Args:
        widths: output channels of the four stages; the output dimension is ``widths[-1]``.
        activation: ``"relu"``, ``"prelu"`` or ``"swish"`` (auto_avsr, USR).
        stem_channels: channels of the stem convolution; defaults to ``widths[0]``.
        blocks: basic blocks per stage (ResNet-18: 2, 2, 2, 2).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        activation: str = "swish",
        stem_channels: int | None = None,
        blocks: Sequence[int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        self.trunk = ResNet(
            dim=1,
            in_channels=1,
            widths=widths,
            blocks=blocks,
            strides=(1, 2, 2, 2),
            activation=activation,
            stem_channels=widths[0] if stem_channels is None else stem_channels,
            stem_kernel_size=80,
            stem_stride=4,
            stem_padding=38,
            pool_size=20,
        )
        self.output_dim = self.trunk.output_dim

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waveforms.

        Args:
            audio: (B, S) 16 kHz waveforms (z-normalised per utterance in the recipes).
            lengths: valid samples per item (B,); ``None`` means all S.

        Returns:
            features (B, S // 640, D), zero past each length, and lengths // 640 (B,).
        """
        x, frames, out_lengths = whole_frames(audio, lengths)
        x = x.unsqueeze(1)  # (B, 1, S')
        # masking costs ~15% of the front-end: skip it when no item is shorter than the batch
        padded = bool((out_lengths < frames).any())
        trunk_lengths = out_lengths * SAMPLES_PER_FRAME if padded else None
        x, _ = self.trunk(x, trunk_lengths)  # (B, D, S' // 640)
        return x.transpose(1, 2), out_lengths


def whole_frames(audio: torch.Tensor, lengths: torch.Tensor | None
                 ) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Checks a (B, S) waveform batch and counts its whole 25 Hz frames.

    Returns:
        the waveforms cut to ``frames * 640`` samples (B, S'), ``frames`` (int) and the
        frames of each item (B,) = lengths // 640 (all S when ``lengths`` is None).
    """
    check_shape("audio", audio, 2, "(B, S)")
    batch, samples = audio.shape
    if lengths is None:
        lengths = torch.full((batch,), samples, dtype=torch.long, device=audio.device)
    frames = samples // SAMPLES_PER_FRAME
    out_lengths = torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="floor")
    return audio[:, : frames * SAMPLES_PER_FRAME], frames, out_lengths
