"""AV-HuBERT audio stem: stacked log filterbanks at 25 Hz and one linear layer."""

from __future__ import annotations

import math

import torch
from torch import nn

from avsr.modalities import SAMPLE_RATE, SAMPLES_PER_FRAME
from avsr.models.frontends.audio_resnet import whole_frames
from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["FilterbankFrontend", "mel_filterbank"]

_HOP = 160  # 10 ms
_WIN = 400  # 25 ms
_STACK = SAMPLES_PER_FRAME // _HOP  # 4 filterbank frames per 25 Hz video frame
_NORMALIZE = ("frame", "utterance", "none")
_EPS = 2.220446049250313e-16  # numpy float64 eps: python_speech_features' floor for zero energy


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular mel filters on whole FFT bins, as ``python_speech_features.get_filterbanks``.

    Mel points are spaced evenly from 0 Hz to Nyquist on the HTK scale and rounded down to FFT
    bins, so AV-HuBERT's features (computed with that package) are reproduced exactly.

    Returns:
        (n_fft // 2 + 1, num_mels) float32 matrix.
    """
    def hz2mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    top = hz2mel(sample_rate / 2)
    points = [top * i / (num_mels + 1) for i in range(num_mels + 2)]
    bins = [math.floor((n_fft + 1) * 700.0 * (10 ** (m / 2595.0) - 1.0) / sample_rate)
            for m in points]
    fb = torch.zeros(n_fft // 2 + 1, num_mels)
    for j in range(num_mels):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(lo, mid):
            fb[i, j] = (i - lo) / (mid - lo)
        for i in range(mid, hi):
            fb[i, j] = (hi - i) / (hi - mid)
    return fb


class FilterbankFrontend(nn.Module):
    """Log-mel filterbanks (25 ms / 10 ms), 4 frames stacked to 25 Hz, normalised, projected
    by one linear layer.

    Shi et al., "Learning Audio-Visual Speech Representation by Masked Multimodal Cluster
    Prediction", ICLR 2022 (AV-HuBERT). Its data loader computes
    ``python_speech_features.logfbank`` (pre-emphasis 0.97, rectangular 400-sample window,
    512-point FFT, 26 filters), stacks 4 frames into 104 dims (zero rows complete the last
    group), applies ``layer_norm`` over each stacked frame, and its model applies
    ``Linear(104, D)``. With ``normalize="frame"`` and the defaults this module computes the
    same features, so AV-HuBERT's projection weights load unchanged. Far cheaper than the
    raw-waveform ResNet, which makes it the audio front-end of CPU-sized recipes.

    Args:
        num_mels: filterbank channels (26 in AV-HuBERT).
        output_dim: output feature size D.
        n_fft: FFT size of the 400-sample (25 ms) window.
        preemphasis: coefficient of ``y[n] = x[n] - c x[n-1]`` (0 disables it).
        normalize: ``"frame"`` (AV-HuBERT: each stacked frame to zero mean, unit variance),
            ``"utterance"`` (one mean and variance over the utterance) or ``"none"``.

    Shapes:
        - audio (B, S) 16 kHz, lengths (B,) samples.
        - output (B, S // 640, D), zero past each length; lengths // 640.
    """

    def __init__(self, *, num_mels: int = 26, output_dim: int = 512, n_fft: int = 512,
                 preemphasis: float = 0.97, normalize: str = "frame") -> None:
        super().__init__()
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
        if n_fft < _WIN:
            raise ValueError(f"n_fft must be at least the {_WIN}-sample window, got {n_fft}")
        self.num_mels = num_mels
        self.output_dim = output_dim
        self.n_fft = n_fft
        self.preemphasis = float(preemphasis)
        self.normalize = normalize
        self.register_buffer("mel", mel_filterbank(num_mels, n_fft), persistent=False)
        self.proj = nn.Linear(num_mels * _STACK, output_dim)

    def log_filterbanks(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms with whole-frame ``lengths`` (samples) -> (B, S // 160, M).

        Row ``k`` of an item holds the window starting at sample ``160 k``; an item of ``4 F``
        rows has ``4 F - 1`` full windows (the last one reaches 80 samples past its end, where
        the signal is zero, as python_speech_features pads it) and a zero last row (AV-HuBERT's
        stacker pads with zeros). Rows past each item's length are zero.
        """
        batch, samples = x.shape
        valid = (~make_pad_mask(lengths, samples)).float()
        x = x.float() * valid
        if self.preemphasis:
            # re-mask: the first padded sample would otherwise carry -c x[L-1] into the batch
            x = torch.cat([x[:, :1], x[:, 1:] - self.preemphasis * x[:, :-1]], dim=1) * valid
        x = nn.functional.pad(x, (0, _WIN - _HOP))
        frames = x.unfold(1, _WIN, _HOP)[:, : samples // _HOP]  # (B, 4F, 400)
        spec = torch.fft.rfft(frames, n=self.n_fft)
        power = (spec.real ** 2 + spec.imag ** 2) / self.n_fft
        feats = torch.log((power @ self.mel).clamp(min=_EPS))
        rows = lengths // _HOP
        keep = ~make_pad_mask(rows - 1, feats.shape[1])  # drop each item's last row
        return feats * keep.unsqueeze(-1).float()

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waveforms; see the class docstring for shapes."""
        x, frames, out_lengths = whole_frames(audio, lengths)
        batch = x.shape[0]
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = self.log_filterbanks(x, out_lengths * SAMPLES_PER_FRAME)  # (B, 4F, M)
            feats = feats.reshape(batch, frames, _STACK * self.num_mels)  # (B, F, 4M)
            valid = (~make_pad_mask(out_lengths, frames)).unsqueeze(-1).float()  # (B, F, 1)
            if self.normalize == "frame":
                feats = nn.functional.layer_norm(feats, feats.shape[-1:])
            elif self.normalize == "utterance":
                count = (valid.sum(dim=(1, 2)) * feats.shape[-1]).clamp(min=1.0)  # (B,)
                mean = (feats * valid).sum(dim=(1, 2)) / count
                var = (((feats - mean[:, None, None]) ** 2) * valid).sum(dim=(1, 2)) / count
                feats = (feats - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
        return self.project(feats, out_lengths)

    def project(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear layer alone, on features already stacked and normalised (AV-HuBERT's
        ``feature_extractor_audio`` input: its data loader computes them).

        Args:
            features: (B, F, 4 · num_mels) stacked features at 25 Hz.
            lengths: (B,) valid frames; ``None`` means all F.

        Returns:
            (B, F, D), zero past each length, and lengths (B,).
        """
        check_shape("features", features, 3, f"(B, F, {self.proj.in_features})")
        batch, frames = features.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=features.device)
        dtype = self.proj.weight.dtype
        valid = (~make_pad_mask(lengths, frames)).unsqueeze(-1).to(dtype)  # (B, F, 1)
        return self.proj(features.to(dtype)) * valid, lengths
