"""AV-HuBERT audio stem: stacked log filterbanks at 25 Hz and one linear layer."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from avsr.data.io import SAMPLE_RATE, SAMPLES_PER_FRAME
from avsr.models.frontends.audio_resnet import whole_frames
from avsr.models.utils import make_pad_mask

__all__ = ["FilterbankFrontend"]

_HOP = 160  # 10 ms
_WIN = 400  # 25 ms
_STACK = SAMPLES_PER_FRAME // _HOP  # 4 filterbank frames per 25 Hz video frame


class FilterbankFrontend(nn.Module):
    """Log-mel filterbanks (25 ms / 10 ms), 4 frames stacked to 25 Hz, utterance-normalised,
    projected by one linear layer.

    Shi et al., "Learning Audio-Visual Speech Representation by Masked Multimodal Cluster
    Prediction", ICLR 2022 (AV-HuBERT): 26 filterbanks, 4 stacked to 104 dims, layer norm over
    the utterance, ``Linear(104, D)``. Far cheaper than the raw-waveform ResNet, which makes it
    the audio front-end of CPU-sized recipes.

    Args:
        num_mels: filterbank channels (26 in AV-HuBERT).
        output_dim: output feature size D.
        n_fft: FFT size of the 400-sample (25 ms) window.

    Shapes:
        - audio (B, S) 16 kHz, lengths (B,) samples.
        - output (B, S // 640, D), zero past each length; lengths // 640.
    """

    def __init__(self, *, num_mels: int = 26, output_dim: int = 512, n_fft: int = 512) -> None:
        super().__init__()
        self.num_mels = num_mels
        self.output_dim = output_dim
        self.n_fft = n_fft
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=n_fft, win_length=_WIN, hop_length=_HOP,
            n_mels=num_mels, center=False, power=2.0,
        )
        self.proj = nn.Linear(num_mels * _STACK, output_dim)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waveforms; see the class docstring for shapes."""
        x, frames, out_lengths = whole_frames(audio, lengths)
        batch = x.shape[0]
        # Whole 25 Hz frames only, zero beyond each item's last whole frame, then n_fft - hop
        # zeros so
        # that exactly 4 windows fall in every frame: a padded row sees what it would alone.
        x = x * (~make_pad_mask(out_lengths * SAMPLES_PER_FRAME, x.shape[1])).to(x.dtype)
        x = nn.functional.pad(x, (0, self.n_fft - _HOP))
        with torch.autocast(device_type=x.device.type, enabled=False):
            mel = self.melspec(x.float())  # (B, M, 4F)
        feats = torch.log(mel + 1e-6).transpose(1, 2)  # (B, 4F, M)
        feats = feats.reshape(batch, frames, _STACK * self.num_mels)  # (B, F, 4M)
        valid = (~make_pad_mask(out_lengths, frames)).unsqueeze(-1).to(feats.dtype)  # (B, F, 1)
        count = (valid.sum(dim=(1, 2)) * feats.shape[-1]).clamp(min=1.0)  # (B,)
        mean = (feats * valid).sum(dim=(1, 2)) / count
        var = (((feats - mean[:, None, None]) ** 2) * valid).sum(dim=(1, 2)) / count
        feats = (feats - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
        return self.proj(feats) * valid, out_lengths
