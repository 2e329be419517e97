"""Bucketing batch sampler with a total-frames budget, distributed-aware and resumable.

Items are grouped into length buckets; each bucket has a fixed batch size
``max_frames // (longest item of the bucket)``, so every batch satisfies
``batch_size × longest item in the batch <= max_frames`` (the padded size the GPU sees), and
the number of batches per epoch does not depend on the shuffle. That matters for Lightning,
which reads ``len(dataloader)`` once and would otherwise cut an epoch short.

Per epoch (``set_epoch``), members of every bucket are shuffled, cut into batches, and the
batch order is shuffled, all from ``seed + epoch``: the same seed and epoch give the same
batches on every rank and run. For DDP the batch list is split round-robin across ranks and
every rank gets the SAME number of batches, so no rank waits in a collective forever:

- ``drop_last=False``: when the number of batches is not a multiple of the world size, the
  largest batches are halved until it is (a half batch still fits the budget), so every item
  is seen exactly once per epoch across ranks. When only single-item batches are left (tiny
  sets), the last rounds are filled with EMPTY batches: the training step of such a rank
  contributes zero gradients and zero counts (see :class:`avsr.objectives.supervised.
  SupervisedObjective` and :class:`avsr.lightning.task.TrainTask`), evaluation skips them;
- ``drop_last=True``: the partial last batch of every bucket and the trailing batches that do
  not fill a round are dropped, so some items are skipped in that epoch (a different set next
  epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["FrameBudgetBatchSampler"]

log = logging.getLogger(__name__)


class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Yield lists of dataset indices whose padded size fits a frame budget.

    Args:
        lengths: length of every item (video frames, or audio samples / 640).
        max_frames: budget of ``batch_size × max length`` per batch. An item longer than the
            budget forms a batch of its own; such items are counted (``num_oversized``) and
            warned about once.
        shuffle: shuffle bucket members and batch order per epoch (off for evaluation:
            batches then go from short to long).
        seed: base seed; the epoch's generator is seeded with ``seed + epoch``.
        num_buckets: number of equal-count length buckets (ignored with ``bucket_width``).
        bucket_width: fixed bucket width in frames instead of quantile buckets.
        max_batch_size: optional cap on items per batch (very short items otherwise make huge
            batches).
        drop_last: see the module docstring.
        num_replicas: number of ranks; default: the torch.distributed world size, or 1.
        rank: this rank; default: the torch.distributed rank, or 0.

    Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``; ``sampler`` is this
    object for that reason. Give the trainer ``use_distributed_sampler=False`` so Lightning
    does not try to swap in a ``DistributedSampler`` (this sampler shards by itself).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 20,
        bucket_width: int | None = None,
        max_batch_size: int | None = None,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.lengths = [max(1, int(n)) for n in lengths]
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.max_batch_size = max_batch_size
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._resume_position = 0  # batches of this rank to skip (from load_state_dict)
        self._position = 0  # batches of this rank yielded in the current epoch
        self._cache: tuple[int, list[list[int]]] | None = None

        oversized = [i for i, n in enumerate(self.lengths) if n > max_frames]
        self.num_oversized = len(oversized)
        if oversized:
            log.warning("%d items are longer than max_frames=%d and form single-item batches "
                        "(longest %d frames)", len(oversized), max_frames,
                        max(self.lengths[i] for i in oversized))
        over = set(oversized)
        fitting = [i for i in range(len(self.lengths)) if i not in over]
        self._buckets = self._make_buckets(fitting, num_buckets, bucket_width)
        self._singletons = oversized

    # -- bucketing ------------------------------------------------------------------------

    def _make_buckets(self, items: list[int], num_buckets: int, bucket_width: int | None
                      ) -> list[tuple[list[int], int]]:
        """Fixed (members, batch size) pairs, shortest bucket first."""
        by_len = sorted(items, key=lambda i: (self.lengths[i], i))
        groups: list[list[int]] = []
        if bucket_width is not None:
            if bucket_width <= 0:
                raise ValueError(f"bucket_width must be positive, got {bucket_width}")
            current: dict[int, list[int]] = {}
            for i in by_len:
                current.setdefault(self.lengths[i] // bucket_width, []).append(i)
            groups = [current[k] for k in sorted(current)]
        elif by_len:
            k = max(1, min(num_buckets, len(by_len)))
            bounds = [round(j * len(by_len) / k) for j in range(k + 1)]
            groups = [by_len[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        buckets = []
        for members in groups:
            size = max(1, self.max_frames // max(self.lengths[i] for i in members))
            if self.max_batch_size is not None:
                size = min(size, self.max_batch_size)
            buckets.append((members, size))
        return buckets

    def _all_batches(self, epoch: int) -> list[list[int]]:
        """Every batch of ``epoch`` (all ranks), in the epoch's order."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        batches: list[list[int]] = []
        for members, size in self._buckets:
            if self.shuffle:
                members = [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
            cut = [members[a:a + size] for a in range(0, len(members), size)]
            if self.drop_last and cut and len(cut[-1]) < size:
                cut.pop()
            batches += cut
        batches += [[i] for i in self._singletons]
        if self.shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of this rank for ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = self._all_batches(epoch)
        r = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) // r * r]
        elif batches and len(batches) % r:
            batches = _split_to_multiple(batches, r)
        mine = batches[self.rank::r]
        self._cache = (epoch, mine)
        return mine

    # -- Sampler protocol -----------------------------------------------------------------

    @property
    def sampler(self) -> FrameBudgetBatchSampler:
        """This object: Lightning looks for ``set_epoch`` on ``batch_sampler.sampler``."""
        return self

    def __len__(self) -> int:
        """Batches of this rank in a full epoch (the same for every epoch and rank)."""
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        start = min(self._resume_position, len(batches))
        self._position = start
        for i in range(start, len(batches)):
            self._position = i + 1  # counts the batch being handed out
            yield list(batches[i])
        # a complete pass uses up the resume offset: the next pass starts at 0
        self._resume_position = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle; a different epoch drops any pending resume offset."""
        if epoch != self.epoch:
            self._resume_position = 0
            self._position = 0
        self.epoch = epoch

    # -- resumption -----------------------------------------------------------------------

    @property
    def resume_position(self) -> int:
        """Batches of the current epoch that the next pass skips."""
        return self._resume_position

    def state_dict(self) -> dict[str, Any]:
        """``epoch``, ``position`` (batches of this rank handed out this epoch) and ``seed``.

        With DataLoader workers or a prefetching trainer, batches are requested ahead of use;
        :class:`avsr.data.loader.AVDataLoader` reports the consumed count instead.
        """
        return {"epoch": self.epoch, "position": self._position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next pass of ``epoch`` skips ``position``."""
        if "seed" in state and state["seed"] != self.seed:
            log.warning("sampler seed %s differs from the saved %s; batches will differ",
                        self.seed, state["seed"])
        self.epoch = int(state["epoch"])
        self._resume_position = int(state["position"])
        self._position = self._resume_position


def _split_to_multiple(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Halve the largest batch until ``len(batches)`` is a multiple of ``multiple``.

    Deterministic (ties go to the earliest batch); the halves stay next to each other, and a
    half of a batch that fits the frame budget fits it too. When every batch is a single item
    and there are still too few, empty batches fill the last round (tiny sets only).
    """
    out = [list(b) for b in batches]
    while len(out) % multiple:
        j = max(range(len(out)), key=lambda k: (len(out[k]), -k))
        if len(out[j]) < 2:
            out += [[] for _ in range(-len(out) % multiple)]
            break
        half = (len(out[j]) + 1) // 2
        out[j:j + 1] = [out[j][:half], out[j][half:]]
    return out
