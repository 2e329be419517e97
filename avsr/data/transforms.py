"""Per-utterance video and audio transforms (crop, flip, time masking, normalisation).

Both transforms are ``nn.Module`` s with typed keyword arguments so a Hydra config builds them
with ``_target_``. Randomness comes from the ``generator`` passed at construction or, when it
is None (the default), from the global torch RNG. Prefer the global RNG with DataLoader
workers: PyTorch seeds it differently in every worker, whereas a generator object would be
copied into each worker with the same state and give every worker the same augmentations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avsr.data.io import FPS, SAMPLE_RATE

__all__ = ["VideoTransform", "AudioTransform", "adaptive_time_mask", "VIDEO_MEAN", "VIDEO_STD"]

# Mean and std of LRS3 mouth crops on [0, 1] grayscale (auto_avsr, USR, AV-HuBERT use them).
VIDEO_MEAN = 0.421
VIDEO_STD = 0.165


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high) from ``generator`` (or the global RNG)."""
    return int(torch.randint(high, (1,), generator=generator).item())


def adaptive_time_mask(
    x: Tensor, max_length: int, stride: int, generator: torch.Generator | None = None
) -> Tensor:
    """Zero ``ceil(T / stride)`` random spans of at most ``max_length`` steps along dim 0.

    The number of masks grows with the duration (one per ``stride`` steps), as auto_avsr's
    ``AdaptiveTimeMask``. Unlike auto_avsr, which draws the span length and its end offset as
    two independent numbers, each mask draws ONE length ``t`` uniform in [0, max_length] and
    zeroes exactly ``[start, start + t)``.

    Args:
        x: tensor of shape (T, ...); not modified.
        max_length: longest span in steps (frames for video, samples for audio).
        stride: steps per mask.
        generator: RNG; None uses the global torch RNG.

    Returns:
        A masked copy of ``x`` with the same shape.
    """
    length = x.shape[0]
    if max_length <= 0 or length == 0:
        return x
    out = x.clone()
    num_masks = -(-length // stride)  # ceil: a 1.2 s clip gets two masks per auto_avsr
    for _ in range(num_masks):
        t = min(_randint(max_length + 1, generator), length)
        if t == 0:
            continue
        start = _randint(length - t + 1, generator)
        out[start:start + t] = 0
    return out


class VideoTransform(nn.Module):
    """Mouth-crop video transform: crop, flip, normalise, time-mask.

    Training: random ``crop_size`` crop, horizontal flip with ``flip_prob``, time masking.
    Evaluation (``train=False``): deterministic centre crop only.

    Args:
        crop_size: side of the square crop (88 for 96×96 stored crops).
        train: training-time randomness on/off.
        flip_prob: probability of a horizontal flip (training only).
        time_mask_max_frames: longest masked span per mask, in frames (0 disables).
        time_mask_stride: frames per mask (25 = one mask per second of video).
        mean: mean subtracted from [0, 1] gray values.
        std: standard deviation divided out.
        generator: RNG; None uses the global torch RNG (see module docstring).
        output_size: when set, the crop is area-resampled to ``output_size`` squared after
            cropping (e.g. 44 for a CPU-sized model: a quarter of the front-end's work, and the
            augmentation geometry stays that of the 88-pixel crop).

    Shapes:
        - input: (T, H, W) uint8 grayscale (or float in [0, 255]).
        - output: (T, 1, S, S) float32 with S = ``output_size`` or ``crop_size``. Masked frames are 0 after normalisation,
          i.e. the data mean, so a mask carries no brightness cue.
    """

    def __init__(
        self,
        *,
        crop_size: int = 88,
        train: bool = False,
        flip_prob: float = 0.5,
        time_mask_max_frames: int = 10,
        time_mask_stride: int = FPS,
        mean: float = VIDEO_MEAN,
        std: float = VIDEO_STD,
        generator: torch.Generator | None = None,
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        if crop_size <= 0 or std <= 0 or time_mask_stride <= 0:
            raise ValueError("crop_size, std and time_mask_stride must be positive")
        if output_size is not None and not 0 < output_size <= crop_size:
            raise ValueError(f"output_size must be in (0, crop_size={crop_size}], got {output_size}")
        self.output_size = output_size
        self.crop_size = crop_size
        self.train_mode = train  # not nn.Module.training: eval() of a parent must not change it
        self.flip_prob = flip_prob
        self.time_mask_max_frames = time_mask_max_frames
        self.time_mask_stride = time_mask_stride
        self.mean = mean
        self.std = std
        self.generator = generator

    def extra_repr(self) -> str:
        return (f"crop_size={self.crop_size}, output_size={self.output_size}, "
                f"train={self.train_mode}, "
                f"flip_prob={self.flip_prob}, time_mask_max_frames={self.time_mask_max_frames}")

    def crop_offsets(self, height: int, width: int) -> tuple[int, int]:
        """Top-left corner of the crop: random in training, centred at evaluation."""
        c = self.crop_size
        if height < c or width < c:
            raise ValueError(f"video frames of size ({height}, {width}) are smaller than crop {c}")
        if self.train_mode:
            g = self.generator
            return _randint(height - c + 1, g), _randint(width - c + 1, g)
        return (height - c) // 2, (width - c) // 2

    def forward(self, video: Tensor) -> Tensor:
        """Transform one utterance; see the class docstring for shapes."""
        if video.ndim != 3:
            raise ValueError(f"expected video of shape (T, H, W), got {tuple(video.shape)}")
        top, left = self.crop_offsets(video.shape[1], video.shape[2])
        x = video[:, top:top + self.crop_size, left:left + self.crop_size]
        x = x.float()
        if self.output_size is not None and self.output_size != self.crop_size:
            if self.crop_size % self.output_size == 0:
                # area resampling by a whole factor is plain average pooling, ~4x cheaper
                k = self.crop_size // self.output_size
                x = torch.nn.functional.avg_pool2d(x.unsqueeze(1), k).squeeze(1)
            else:
                x = torch.nn.functional.interpolate(
                    x.unsqueeze(1), size=(self.output_size, self.output_size), mode="area"
                ).squeeze(1)
        # normalising after the (linear) resampling touches fewer pixels, same result
        x = (x / 255.0 - self.mean) / self.std
        if self.train_mode:
            if self.flip_prob > 0 and torch.rand((), generator=self.generator) < self.flip_prob:
                x = x.flip(-1)
            x = adaptive_time_mask(x, self.time_mask_max_frames, self.time_mask_stride,
                                   self.generator)
        return x.unsqueeze(1).contiguous()  # (T, 1, crop, crop)


class AudioTransform(nn.Module):
    """Raw-waveform transform: per-utterance z-normalisation, then time masking in training.

    Args:
        train: training-time masking on/off.
        time_mask_max_samples: longest masked span per mask in samples (6400 = 0.4 s, as
            auto_avsr); 0 disables.
        time_mask_stride: samples per mask (16000 = one mask per second).
        normalize: z-normalise each utterance (zero mean, unit variance).
        eps: added to the standard deviation so silence does not divide by zero.
        generator: RNG; None uses the global torch RNG.

    Shapes:
        - input: (S,) float.
        - output: (S,) float32; masked spans are 0 (the mean after normalisation).
    """

    def __init__(
        self,
        *,
        train: bool = False,
        time_mask_max_samples: int = 6400,
        time_mask_stride: int = SAMPLE_RATE,
        normalize: bool = True,
        eps: float = 1e-5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if time_mask_stride <= 0:
            raise ValueError("time_mask_stride must be positive")
        self.train_mode = train
        self.time_mask_max_samples = time_mask_max_samples
        self.time_mask_stride = time_mask_stride
        self.normalize = normalize
        self.eps = eps
        self.generator = generator

    def extra_repr(self) -> str:
        return (f"train={self.train_mode}, time_mask_max_samples={self.time_mask_max_samples}, "
                f"normalize={self.normalize}")

    def forward(self, audio: Tensor) -> Tensor:
        """Transform one utterance; see the class docstring for shapes."""
        if audio.ndim != 1:
            raise ValueError(f"expected audio of shape (S,), got {tuple(audio.shape)}")
        x = audio.float()
        if self.normalize and x.numel() > 0:
            x = (x - x.mean()) / (x.std(unbiased=False) + self.eps)
        if self.train_mode:
            x = adaptive_time_mask(x, self.time_mask_max_samples, self.time_mask_stride,
                                   self.generator)
        return x
