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

Weighted parts (``groups`` and ``group_weights``; a training set composed of corpus parts,
:mod:`avsr.data.parts`): an item of a part of weight ``w`` is drawn ``w`` times per epoch on
average, as fairseq's ``ConcatDataset`` ``sample_ratios`` upsample (``w = 2``: twice; ``0.5``:
a random half, redrawn every epoch). The count each part contributes to each bucket is fixed
(``floor(w)`` copies of the members plus the fractional rest, split over the buckets by
largest remainder), so the batch count stays the same every epoch; which members fill the
fractional rest is drawn per epoch from ``seed + epoch`` within the bucket (a bucket too small
to draw a share from is warned about: fewer buckets fix it). With every weight 1 the batches
are those of the unweighted sampler.

Memory: lengths, bucket members and the epoch's order are numpy arrays, a few integers per
item (a 1 M-utterance VoxCeleb2 manifest: ``benchmarks/manifest_scale.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["FrameBudgetBatchSampler"]

log = logging.getLogger(__name__)

# one bucket: its members (item indices, shortest first), its batch size and, for weighted
# parts, (members of a part, whole copies, extra members drawn per epoch) per part
_Bucket = tuple[np.ndarray, int, list[tuple[np.ndarray, int, int]] | None]


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
        groups: the part of every item (0 ... number of parts - 1), for ``group_weights``.
        group_weights: sampling weight of every part (> 0): expected draws per item and epoch
            (see the module docstring). None: every item once per epoch.

    Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``; ``sampler`` is this
    object for that reason. Give the trainer ``use_distributed_sampler=False`` so Lightning
    does not try to swap in a ``DistributedSampler`` (this sampler shards by itself).

    Raises:
        ValueError: a non-positive budget or weight, a rank outside the world, or ``groups``
            of another length than ``lengths``.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
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
        groups: Sequence[int] | np.ndarray | None = None,
        group_weights: Sequence[float] | None = None,
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
        # int64: a few integers per item, not a Python int object each (1 M items: 8 MB)
        self.lengths = np.maximum(np.asarray(lengths, dtype=np.int64).reshape(-1), 1)
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
        # (epoch, epoch order of items, this rank's batch starts, this rank's batch sizes)
        self._cache: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._groups, self._weights = _check_groups(groups, group_weights, len(self.lengths))

        over = self.lengths > max_frames
        oversized = np.flatnonzero(over)
        self.num_oversized = int(oversized.size)
        if oversized.size:
            log.warning("%d items are longer than max_frames=%d and form single-item batches "
                        "(longest %d frames)", oversized.size, max_frames,
                        int(self.lengths[oversized].max()))
        fitting = np.flatnonzero(~over)
        self._buckets = self._make_buckets(fitting, num_buckets, bucket_width)
        self._singletons = oversized

    # -- bucketing ------------------------------------------------------------------------

    def _make_buckets(self, items: np.ndarray, num_buckets: int, bucket_width: int | None
                      ) -> list[_Bucket]:
        """Fixed (members, batch size, weighted parts) triples, shortest bucket first."""
        # stable sort of increasing indices: ties keep index order
        by_len = items[np.argsort(self.lengths[items], kind="stable")]
        groups: list[np.ndarray] = []
        if bucket_width is not None:
            if bucket_width <= 0:
                raise ValueError(f"bucket_width must be positive, got {bucket_width}")
            keys = self.lengths[by_len] // bucket_width
            cuts = np.flatnonzero(np.diff(keys)) + 1
            groups = [g for g in np.split(by_len, cuts) if g.size]
        elif by_len.size:
            k = max(1, min(num_buckets, by_len.size))
            bounds = [round(j * by_len.size / k) for j in range(k + 1)]
            groups = [by_len[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        sizes = []
        for members in groups:
            size = max(1, self.max_frames // int(self.lengths[members].max()))
            if self.max_batch_size is not None:
                size = min(size, self.max_batch_size)
            sizes.append(size)
        parts = self._weighted_parts(groups)
        return [(m, s, p) for m, s, p in zip(groups, sizes, parts)]

    def _weighted_parts(self, buckets: list[np.ndarray]
                        ) -> list[list[tuple[np.ndarray, int, int]] | None]:
        """Per bucket and part: (members, whole copies, extra draws per epoch); None per
        bucket when every weight is 1 (the unweighted path, batches unchanged)."""
        if self._weights is None:
            return [None] * len(buckets)
        groups, weights = self._groups, self._weights
        split = [[m[groups[m] == g] for g in range(len(weights))] for m in buckets]
        extra = np.zeros((len(buckets), len(weights)), dtype=np.int64)
        for g, w in enumerate(weights):
            frac = w - math.floor(w)
            if frac == 0:
                continue
            counts = np.array([parts[g].size for parts in split], dtype=np.float64)
            want = frac * counts
            extra[:, g] = np.floor(want)
            # largest remainder: the part's total is round(frac * its size), fixed per epoch
            rest = int(round(frac * counts.sum())) - int(extra[:, g].sum())
            if rest > 0:
                order = np.argsort(-(want - np.floor(want)), kind="stable")[:rest]
                extra[order, g] += 1
        counts = np.array([[part.size for part in parts] for parts in split], dtype=np.int64)
        for g, w in enumerate(weights):
            # a bucket whose share of the part rounds to none or all of its members draws
            # the same ones every epoch: say so rather than bias the mix silently
            fixed = (extra[:, g] == 0) | (extra[:, g] == counts[:, g])
            stuck = int(counts[fixed, g].sum()) if w != math.floor(w) else 0
            if stuck:
                log.warning("part %d (weight %s): %d of its %d items lie in length buckets too "
                            "small to draw a share from: they are drawn in every epoch or in "
                            "none (use fewer buckets, data.num_buckets)", g, w, stuck,
                            int(counts[:, g].sum()))
        return [[(parts[g], math.floor(w), int(extra[b, g]))
                 for g, w in enumerate(weights) if parts[g].size]
                for b, parts in enumerate(split)]

    def _members(self, bucket: _Bucket, g: torch.Generator) -> np.ndarray:
        """The bucket's items of one epoch: every member once, or its parts' weighted draw."""
        members, _, parts = bucket
        if parts is None:
            return members
        drawn = []
        for part, copies, extra in parts:
            drawn += [part] * copies
            if extra:
                pick = torch.randperm(part.size, generator=g)[:extra].numpy()
                drawn.append(part[np.sort(pick)])
        return np.concatenate(drawn) if drawn else members[:0]

    def _epoch_batches(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every batch of ``epoch`` (all ranks), in the epoch's order, as the item order and
        each batch's (start, size) in it."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        chunks, starts, sizes = [], [], []
        offset = 0
        for bucket in self._buckets:
            members, size = self._members(bucket, g), bucket[1]
            if self.shuffle:
                members = members[torch.randperm(members.size, generator=g).numpy()]
            n = members.size
            cut = np.arange(0, n, size, dtype=np.int64)
            lens = np.minimum(size, n - cut)
            if self.drop_last and lens.size and lens[-1] < size:
                cut, lens = cut[:-1], lens[:-1]
            chunks.append(members)
            starts.append(cut + offset)
            sizes.append(lens)
            offset += n
        chunks.append(self._singletons)
        starts.append(np.arange(self._singletons.size, dtype=np.int64) + offset)
        sizes.append(np.ones(self._singletons.size, dtype=np.int64))
        order = np.concatenate(chunks).astype(np.int64, copy=False)
        start, size = np.concatenate(starts), np.concatenate(sizes)
        if self.shuffle:
            perm = torch.randperm(start.size, generator=g).numpy()
            start, size = start[perm], size[perm]
        return order, start, size

    def _rank_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(epoch order, batch starts, batch sizes) of this rank's batches, cached."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1:]
        order, start, size = self._epoch_batches(epoch)
        r = self.num_replicas
        if self.drop_last:
            keep = start.size // r * r
            start, size = start[:keep], size[:keep]
        elif start.size and start.size % r:
            start, size = _split_to_multiple(start, size, r)
        self._cache = (epoch, order, start[self.rank::r], size[self.rank::r])
        return self._cache[1:]

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of this rank for ``epoch`` (default: the current epoch)."""
        order, start, size = self._rank_plan(self.epoch if epoch is None else epoch)
        return [order[a:a + n].tolist() for a, n in zip(start.tolist(), size.tolist())]

    # -- Sampler protocol -----------------------------------------------------------------

    @property
    def sampler(self) -> FrameBudgetBatchSampler:
        """This object: Lightning looks for ``set_epoch`` on ``batch_sampler.sampler``."""
        return self

    def __len__(self) -> int:
        """Batches of this rank in a full epoch (the same for every epoch and rank)."""
        return int(self._rank_plan(self.epoch)[1].size)

    def __iter__(self) -> Iterator[list[int]]:
        order, start, size = self._rank_plan(self.epoch)
        start_at = min(self._resume_position, start.size)
        self._position = start_at
        for i in range(start_at, start.size):
            self._position = i + 1  # counts the batch being handed out
            a = int(start[i])
            yield order[a:a + int(size[i])].tolist()
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



def _check_groups(groups: Sequence[int] | np.ndarray | None,
                  weights: Sequence[float] | None, n: int
                  ) -> tuple[np.ndarray | None, list[float] | None]:
    """The items' part indices and the parts' weights; (None, None) when no weighting is
    needed (no weights, or every weight 1: the unweighted batches, bit for bit).

    Raises:
        ValueError: a weight that is not a positive finite number, or ``groups`` of the wrong
            length or with a part index that has no weight.
    """
    if weights is None:
        return None, None
    weights = [float(w) for w in weights]
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f"group_weights must be positive numbers, got {weights}")
    if groups is None:
        raise ValueError("group_weights needs groups (the part of every item)")
    groups = np.asarray(groups, dtype=np.int64).reshape(-1)
    if groups.size != n:
        raise ValueError(f"groups has {groups.size} entries for {n} items")
    if groups.size and (groups.min() < 0 or groups.max() >= len(weights)):
        raise ValueError(f"groups must lie in [0, {len(weights)}) (one weight per part)")
    if all(w == 1.0 for w in weights):
        return None, None
    return groups, weights


def _split_to_multiple(start: np.ndarray, size: np.ndarray, multiple: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Halve the largest batch until the batch count is a multiple of ``multiple``.

    Deterministic (ties go to the earliest batch); the halves stay next to each other, and a
    half of a batch that fits the frame budget fits it too. When every batch is a single item
    and there are still too few, empty batches fill the last round (tiny sets only).
    """
    start, size = start.copy(), size.copy()
    while start.size % multiple:
        j = int(np.argmax(size))  # the first of the largest
        if size[j] < 2:
            pad = -start.size % multiple
            start = np.concatenate([start, np.zeros(pad, dtype=start.dtype)])
            size = np.concatenate([size, np.zeros(pad, dtype=size.dtype)])
            break
        half = (int(size[j]) + 1) // 2
        start = np.insert(start, j + 1, start[j] + half)
        size = np.insert(size, j + 1, size[j] - half)
        size[j] = half
    return start, size
