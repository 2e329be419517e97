"""Multi-worker loading: per-item augmentation seeds and per-trainer worker defaults.

With DataLoader workers, augmentation (crops, flips, masks, noise SNRs) draws from each worker's
global torch RNG. Which worker gets which batch depends on the worker count, and a resumed run
starts fresh workers mid-epoch, so the draws depend on both. :class:`SeededBatchSampler` gives
every item a seed from (seed, epoch, rank, batch position, slot) instead: the augmentation of a
batch is then the same for any worker count and after a resume.

The defaults ``${loader_workers:...}`` and ``${loader_pin_memory:...}`` used by
``configs/data/default.yaml`` are registered as OmegaConf resolvers by :mod:`avsr.utils.resolvers`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

from avsr.data.sampler import FrameBudgetBatchSampler

__all__ = ["SeededBatchSampler", "item_seed", "loader_workers", "loader_pin_memory",
           "raise_malloc_thresholds", "worker_init"]

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda")
# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_MAX = 32 * 2**20  # the largest mmap threshold glibc accepts on 64-bit


def raise_malloc_thresholds() -> bool:
    """Keep freed frame-sized buffers in this process's heap instead of unmapping them.

    glibc serves blocks over the mmap threshold (128 KiB at first) with fresh mappings and
    gives freed heap tops back to the OS; every item's frame tensors (a few MiB) then
    page-fault their memory in again. Raising both thresholds (as ``GLIBC_TUNABLES`` does in
    ``make demo``) made the training transforms ~3x cheaper per frame here (see
    benchmarks/RESULTS.md). Returns False where glibc's ``mallopt`` is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        return False


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: :func:`raise_malloc_thresholds` in the worker only (the
    training process keeps its allocator settings)."""
    if not raise_malloc_thresholds() and worker_id == 0:
        log.debug("mallopt not available: loader workers keep the default malloc thresholds")


def item_seed(seed: int, epoch: int, rank: int, position: int, slot: int) -> int:
    """A 63-bit seed for one item of one batch, stable across processes and machines."""
    key = f"{seed}/{epoch}/{rank}/{position}/{slot}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class SeededBatchSampler:
    """Wrap a :class:`~avsr.data.sampler.FrameBudgetBatchSampler`: yield ``(index, seed)``.

    :meth:`avsr.data.dataset.AVDataset.__getitem__` runs an item given as ``(index, seed)``
    under a torch RNG seeded with ``seed`` (and restores the RNG after it). Epoch, position,
    state and length are the wrapped sampler's, so Lightning (``set_epoch`` on ``.sampler``)
    and resumption see no difference.

    Args:
        batch_sampler: the frame-budget sampler.
        seed: base seed of the item seeds.
    """

    def __init__(self, batch_sampler: FrameBudgetBatchSampler, seed: int) -> None:
        self.batch_sampler = batch_sampler
        self.seed = seed

    @property
    def sampler(self) -> FrameBudgetBatchSampler:
        """The wrapped sampler: Lightning calls ``set_epoch`` on ``batch_sampler.sampler``."""
        return self.batch_sampler

    @property
    def resume_position(self) -> int:
        return self.batch_sampler.resume_position

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        s = self.batch_sampler
        for batch in s:
            position = s._position  # 1-based position of this batch in the rank's epoch
            yield [(i, item_seed(self.seed, s.epoch, s.rank, position, k))
                   for k, i in enumerate(batch)]

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_workers(accelerator: str = "cpu", max_workers: int = 8) -> int:
    """Default DataLoader workers of one training process for a trainer's ``accelerator``.

    - CPU: the step itself uses the cores, so workers take at most an eighth of them (0 on
      machines with fewer than 8 cores: decoding in the step's process costs less than
      processes fighting it for 2 or 4 cores), at most 2.
    - GPU: every process (one per GPU) gets the CPUs per GPU less one for the step's own
      process, at most ``max_workers`` and at least 1.

    Used in configs as ``${loader_workers:${trainer.accelerator}}``.
    """
    cpus = _cpus()
    gpu = accelerator in GPU_ACCELERATORS or (accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return min(2, cpus // 8)
    per_gpu = cpus // max(1, torch.cuda.device_count())
    return max(1, min(max_workers, per_gpu - 1))


def loader_pin_memory(accelerator: str = "cpu") -> bool:
    """Pin host batches (faster, asynchronous copies) when training on a GPU."""
    if accelerator in GPU_ACCELERATORS:
        return True
    return accelerator == "auto" and torch.cuda.is_available()
