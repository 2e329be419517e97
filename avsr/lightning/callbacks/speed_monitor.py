"""Throughput and memory logging: utterances/s, frames/s, step time and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from avsr.modalities import SAMPLES_PER_FRAME

__all__ = ["SpeedMonitor", "batch_counts", "batch_frames", "peak_memory_mb"]


def batch_frames(batch: Mapping[str, Any]) -> int:
    """Real (unpadded) 25 fps frames of a batch: per item, video frames or audio samples / 640,
    whichever is longer (an item missing one stream counts the other)."""
    video = batch.get("video_lengths")
    audio = batch.get("audio_lengths")
    if video is None and audio is None:
        return 0
    if video is None:
        return int((audio // SAMPLES_PER_FRAME).sum())
    if audio is None:
        return int(video.sum())
    return int(torch.maximum(video, audio // SAMPLES_PER_FRAME).sum())


def batch_counts(batch: Mapping[str, Any]) -> tuple[int, int]:
    """(utterances, real frames) of a batch; a batch of named sub-batches (the semi-supervised
    stage's ``{"labelled": ..., "unlabelled": ...}``) counts all of them."""
    if "ids" in batch:
        return len(batch["ids"]), batch_frames(batch)
    utterances = frames = 0
    for part in batch.values():
        if isinstance(part, Mapping):
            u, f = batch_counts(part)
            utterances, frames = utterances + u, frames + f
    return utterances, frames


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: allocated CUDA memory on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


class SpeedMonitor(pl.Callback):
    """Log ``train/utterances_per_s``, ``train/frames_per_s``, ``train/step_time_s`` and
    ``train/peak_memory_mb`` every step (loggers write them every ``log_every_n_steps``).

    Rates are averaged over the last ``window`` steps, wall time from one batch end to the next
    (data loading included). The names are the same for every logger (CSV, TensorBoard, wandb).

    Args:
        window: steps averaged.
    """

    def __init__(self, window: int = 10) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._steps: deque[tuple[float, int, int]] = deque(maxlen=window)
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is None or not isinstance(batch, Mapping):
            self._last = now
            return
        self._steps.append((now - self._last, *batch_counts(batch)))
        self._last = now
        seconds = sum(s[0] for s in self._steps)
        if seconds <= 0:
            return
        metrics = {
            "train/utterances_per_s": sum(s[1] for s in self._steps) / seconds,
            "train/frames_per_s": sum(s[2] for s in self._steps) / seconds,
            "train/step_time_s": seconds / len(self._steps),
            "train/peak_memory_mb": peak_memory_mb(pl_module.device),
        }
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # validation time is not training time

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()
