"""Batched crop, flip, normalisation and time masks on the device, after the batch transfer.

With ``data.augment_on=device`` the loader workers hand over padded uint8 video (a quarter of
the bytes of the float crops) and raw float audio; :class:`BatchAugment` then does, for the
whole padded batch at once and on whatever device it is on, what
:class:`~avsr.data.transforms.VideoTransform` and :class:`~avsr.data.transforms.AudioTransform`
do per utterance on the CPU. The model sees the same shapes, dtypes and normalisation.

The random draws (crop corner, flip, mask spans: a few numbers per utterance) are made on the
CPU, per utterance, from a ``torch.Generator`` seeded with :func:`augment_seed` of the item's
seed (``batch["seeds"]``, from :class:`~avsr.data.loading.SeededBatchSampler`), in the order
the CPU transforms draw them (audio masks, then crop, flip and video masks). For a given item
seed the device result therefore equals the CPU transforms run with such a generator, and it is
the same for any worker count and after a resume. Without seeds the global torch RNG is used.
Only the pixel work is batched on the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from avsr.data.io import FPS, SAMPLE_RATE
from avsr.data.transforms import VIDEO_MEAN, VIDEO_STD, AudioTransform, VideoTransform

__all__ = ["AUGMENT_ON", "AudioBatchAugment", "BatchAugment", "RawVideo", "VideoBatchAugment",
           "augment_seed", "span_mask"]

AUGMENT_ON = ("cpu", "device")


def augment_seed(item_seed: int) -> int:
    """The seed of an item's device draws, derived from its loader seed.

    Not the item seed itself: the item's noise draws (SNR, babble talkers) in the worker start
    from a torch RNG seeded with it, and the same stream here would tie crops to SNRs.
    """
    key = f"{int(item_seed)}/device-augment".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _randint(high: int, generator: torch.Generator | None) -> int:
    # the draw of avsr.data.transforms._randint: same calls, same numbers for a given generator
    return int(torch.randint(high, (1,), generator=generator).item())


def _draw_spans(length: int, max_length: int, stride: int,
                generator: torch.Generator | None) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans :func:`~avsr.data.transforms.adaptive_time_mask` zeroes."""
    if max_length <= 0 or length == 0:
        return []
    spans = []
    for _ in range(-(-length // stride)):
        t = min(_randint(max_length + 1, generator), length)
        if t == 0:
            continue
        start = _randint(length - t + 1, generator)
        spans.append((start, start + t))
    return spans


def span_mask(spans: Sequence[Sequence[tuple[int, int]]], length: int,
              device: torch.device | str = "cpu") -> Tensor:
    """Boolean (B, length) mask, True inside any of each row's ``[start, end)`` spans.

    Built as +1/-1 steps at the span edges and a running sum: O(B x length) however many
    spans (an audio row has one per second of samples).
    """
    steps = torch.zeros(len(spans), length + 1, dtype=torch.int32)
    for b, row in enumerate(spans):
        for start, end in row:
            steps[b, start] += 1
            steps[b, end] -= 1
    return steps.to(device, non_blocking=True).cumsum(1)[:, :length] > 0


def _valid(lengths: Tensor, length: int) -> Tensor:
    """(B, length) True before each row's length."""
    return torch.arange(length, device=lengths.device) < lengths[:, None]


class RawVideo(nn.Module):
    """The dataset's video transform with ``augment_on=device``: frames stay uint8 (T, H, W).

    (``video_transform=None`` would make the dataset convert to float.)
    """

    def forward(self, video: Tensor) -> Tensor:
        if video.ndim != 3:
            raise ValueError(f"expected video of shape (T, H, W), got {tuple(video.shape)}")
        return video


class VideoBatchAugment(nn.Module):
    """:class:`~avsr.data.transforms.VideoTransform` for a padded batch, on its device.

    Arguments are those of :class:`~avsr.data.transforms.VideoTransform` (no ``generator``:
    the draws come from the item seeds given to :meth:`forward`).

    Shapes:
        - video: (B, T, H, W) uint8 (or float in [0, 255]), zero-padded after each length.
        - lengths: (B,) long.
        - output: (B, T, 1, S, S) float32, S = ``output_size`` or ``crop_size``; frames past
          each length are 0, as the CPU collate pads them.
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
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        if crop_size <= 0 or std <= 0 or time_mask_stride <= 0:
            raise ValueError("crop_size, std and time_mask_stride must be positive")
        if output_size is not None and not 0 < output_size <= crop_size:
            raise ValueError(f"output_size must be in (0, crop_size={crop_size}], "
                             f"got {output_size}")
        self.crop_size = crop_size
        self.train_mode = train  # as VideoTransform: a parent's eval() must not change it
        self.flip_prob = flip_prob
        self.time_mask_max_frames = time_mask_max_frames
        self.time_mask_stride = time_mask_stride
        self.mean = mean
        self.std = std
        self.output_size = output_size

    @classmethod
    def from_transform(cls, transform: VideoTransform) -> VideoBatchAugment:
        """The batched twin of a configured CPU transform (same crop, sizes, probabilities)."""
        if not isinstance(transform, VideoTransform):
            raise ValueError(f"augment_on=device builds its video augmentation from a "
                             f"VideoTransform, got {type(transform).__name__}")
        return cls(crop_size=transform.crop_size, train=transform.train_mode,
                   flip_prob=transform.flip_prob,
                   time_mask_max_frames=transform.time_mask_max_frames,
                   time_mask_stride=transform.time_mask_stride, mean=transform.mean,
                   std=transform.std, output_size=transform.output_size)

    def extra_repr(self) -> str:
        return (f"crop_size={self.crop_size}, output_size={self.output_size}, "
                f"train={self.train_mode}, flip_prob={self.flip_prob}, "
                f"time_mask_max_frames={self.time_mask_max_frames}")

    def draw(self, lengths: Sequence[int], height: int, width: int,
             generators: Sequence[torch.Generator | None]) -> dict[str, Any]:
        """Per-item crop corners, flips and mask spans, in VideoTransform's draw order."""
        c = self.crop_size
        if height < c or width < c:
            raise ValueError(f"video frames of size ({height}, {width}) are smaller than crop {c}")
        tops, lefts, flips, spans = [], [], [], []
        for length, g in zip(lengths, generators):
            if not self.train_mode or length == 0:  # an item without video draws nothing
                tops.append((height - c) // 2)
                lefts.append((width - c) // 2)
                flips.append(False)
                spans.append([])
                continue
            tops.append(_randint(height - c + 1, g))
            lefts.append(_randint(width - c + 1, g))
            flips.append(bool(self.flip_prob > 0
                              and torch.rand((), generator=g) < self.flip_prob))
            spans.append(_draw_spans(length, self.time_mask_max_frames, self.time_mask_stride, g))
        return {"top": tops, "left": lefts, "flip": flips, "spans": spans}

    def forward(self, video: Tensor, lengths: Tensor,
                generators: Sequence[torch.Generator | None] | None = None) -> Tensor:
        """Augment a padded batch; ``generators``: one per item (None: the global RNG)."""
        if video.ndim != 4:
            raise ValueError(f"expected video of shape (B, T, H, W), got {tuple(video.shape)}")
        if lengths.shape != video.shape[:1]:
            raise ValueError(f"expected lengths of shape ({video.shape[0]},), "
                             f"got {tuple(lengths.shape)}")
        b, t, h, w = video.shape
        gens = list(generators) if generators is not None else [None] * b
        p = self.draw(lengths.tolist(), h, w, gens)
        c, dev = self.crop_size, video.device
        # two gathers crop every item at its own corner (and flip it: reversed columns); on
        # the CPU 2.5x faster than one 4-index advanced indexing
        ar = torch.arange(c)
        rows = torch.tensor(p["top"])[:, None] + ar
        cols = torch.tensor(p["left"])[:, None] + torch.where(
            torch.tensor(p["flip"])[:, None], c - 1 - ar, ar)
        rows, cols = rows.to(dev, non_blocking=True), cols.to(dev, non_blocking=True)
        x = video.gather(2, rows[:, None, :, None].expand(b, t, c, w))
        x = x.gather(3, cols[:, None, None, :].expand(b, t, c, c)).float()  # (B, T, c, c)
        s = self.output_size
        if s is not None and s != c:
            flat = x.reshape(b * t, 1, c, c)
            # whole factor: average pooling is area resampling (and what the CPU path runs)
            flat = (F.avg_pool2d(flat, c // s) if c % s == 0
                    else F.interpolate(flat, size=(s, s), mode="area"))
            x = flat.reshape(b, t, s, s)
        # (x / 255 - mean) / std in place, one scale and one shift (3x cheaper on the CPU)
        x.mul_(1.0 / (255.0 * self.std)).sub_(self.mean / self.std)
        keep = _valid(lengths.to(dev), t)
        if any(p["spans"]):
            keep &= ~span_mask(p["spans"], t, dev)
        # masked frames are 0 = the data mean, as on the CPU; padding is 0, as the collate pads
        x.mul_(keep[:, :, None, None])
        return x.unsqueeze(2).contiguous()


class AudioBatchAugment(nn.Module):
    """:class:`~avsr.data.transforms.AudioTransform` for a padded batch, on its device.

    Arguments are those of :class:`~avsr.data.transforms.AudioTransform` (no ``generator``).
    The z-normalisation uses each row's own samples only (biased std, as the CPU transform).

    Shapes:
        - audio: (B, S) float, zero-padded after each length.
        - lengths: (B,) long.
        - output: (B, S) float32; masked spans and padding are 0.
    """

    def __init__(
        self,
        *,
        train: bool = False,
        time_mask_max_samples: int = 6400,
        time_mask_stride: int = SAMPLE_RATE,
        normalize: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if time_mask_stride <= 0:
            raise ValueError("time_mask_stride must be positive")
        self.train_mode = train
        self.time_mask_max_samples = time_mask_max_samples
        self.time_mask_stride = time_mask_stride
        self.normalize = normalize
        self.eps = eps

    @classmethod
    def from_transform(cls, transform: AudioTransform) -> AudioBatchAugment:
        """The batched twin of a configured CPU transform."""
        if not isinstance(transform, AudioTransform):
            raise ValueError(f"augment_on=device builds its audio augmentation from an "
                             f"AudioTransform, got {type(transform).__name__}")
        return cls(train=transform.train_mode,
                   time_mask_max_samples=transform.time_mask_max_samples,
                   time_mask_stride=transform.time_mask_stride, normalize=transform.normalize,
                   eps=transform.eps)

    def extra_repr(self) -> str:
        return (f"train={self.train_mode}, time_mask_max_samples={self.time_mask_max_samples}, "
                f"normalize={self.normalize}")

    def draw(self, lengths: Sequence[int], generators: Sequence[torch.Generator | None]
             ) -> list[list[tuple[int, int]]]:
        """Per-item mask spans, in AudioTransform's draw order."""
        if not self.train_mode:
            return [[] for _ in lengths]
        return [_draw_spans(n, self.time_mask_max_samples, self.time_mask_stride, g)
                for n, g in zip(lengths, generators)]

    def forward(self, audio: Tensor, lengths: Tensor,
                generators: Sequence[torch.Generator | None] | None = None) -> Tensor:
        """Augment a padded batch; ``generators``: one per item (None: the global RNG)."""
        if audio.ndim != 2:
            raise ValueError(f"expected audio of shape (B, S), got {tuple(audio.shape)}")
        if lengths.shape != audio.shape[:1]:
            raise ValueError(f"expected lengths of shape ({audio.shape[0]},), "
                             f"got {tuple(lengths.shape)}")
        b, s = audio.shape
        gens = list(generators) if generators is not None else [None] * b
        spans = self.draw(lengths.tolist(), gens)
        valid = _valid(lengths.to(audio.device), s)
        x = audio.float() * valid
        if self.normalize:
            n = lengths.to(audio.device).clamp(min=1)[:, None].float()
            mean = x.sum(1, keepdim=True) / n
            std = (((x - mean) * valid).square().sum(1, keepdim=True) / n).sqrt()
            x = (x - mean) / (std + self.eps)
        if any(spans):
            valid &= ~span_mask(spans, s, audio.device)
        return x * valid


class BatchAugment(nn.Module):
    """Video and audio batch augmentation of one loader role, applied to a whole batch dict.

    Args:
        video: the video augmentation, or None (video passes unchanged).
        audio: the audio augmentation, or None.

    The batch is that of :func:`~avsr.data.dataset.collate_fn` with ``video`` uint8
    (B, T, H, W) and optionally ``seeds`` long (B,) (the items' loader seeds); a new dict
    comes back with ``video`` (B, T, 1, S, S) and ``audio`` (B, S) float32.
    """

    def __init__(self, *, video: VideoBatchAugment | None = None,
                 audio: AudioBatchAugment | None = None) -> None:
        super().__init__()
        self.video = video
        self.audio = audio

    @classmethod
    def from_transforms(cls, video_transform: Any, audio_transform: Any) -> BatchAugment:
        """From the CPU transforms of a data module (their settings, not their code)."""
        return cls(video=VideoBatchAugment.from_transform(video_transform),
                   audio=None if audio_transform is None
                   else AudioBatchAugment.from_transform(audio_transform))

    @staticmethod
    def generators(seeds: Tensor | None, size: int) -> list[torch.Generator | None]:
        """One CPU generator per item seeded by :func:`augment_seed`; the global RNG without."""
        if seeds is None:
            return [None] * size
        return [torch.Generator().manual_seed(augment_seed(s)) for s in seeds.tolist()]

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        size = len(batch["ids"])
        if size == 0:
            return out
        # one generator per item, audio drawn first: the CPU dataset's order
        gens = self.generators(batch.get("seeds"), size)
        if self.audio is not None and batch.get("audio") is not None:
            out["audio"] = self.audio(batch["audio"], batch["audio_lengths"], gens)
        if self.video is not None and batch.get("video") is not None:
            out["video"] = self.video(batch["video"], batch["video_lengths"], gens)
        return out


def device_augments(video_transforms: dict[bool, Any], audio_transforms: dict[bool, Any]
                    ) -> dict[bool, BatchAugment]:
    """A data module's training (True) and evaluation (False) batch augmentations, built from
    its configured CPU transforms."""
    return {train: BatchAugment.from_transforms(video_transforms[train], audio_transforms[train])
            for train in (True, False)}


def augment_loader_batch(augments: dict[bool, BatchAugment], batch: Any, training: bool) -> Any:
    """Apply the training or evaluation augmentation to a transferred loader batch.

    A semi-supervised training batch is ``{"labelled": ..., "unlabelled": ...}``: the
    unlabelled pool is loaded clean (evaluation transforms), as with ``augment_on=cpu``.
    """
    if isinstance(batch, dict) and "ids" not in batch:
        return {key: augment_loader_batch(augments, part, training and key != "unlabelled")
                for key, part in batch.items()}
    return augments[training](batch)
