"""Frame-budget bucketing batch sampler: budget, coverage, DDP shards, determinism, resume."""

from __future__ import annotations

import logging
import random

import pytest
from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from avsr.data.sampler import FrameBudgetBatchSampler

LENGTHS = [random.Random(0).randint(5, 120) for _ in range(300)]


def _flat(batches: list[list[int]]) -> list[int]:
    return sorted(i for b in batches for i in b)


@pytest.mark.parametrize("shuffle", [True, False])
def test_budget_and_coverage(shuffle: bool) -> None:
    s = FrameBudgetBatchSampler(LENGTHS, max_frames=400, shuffle=shuffle, seed=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert _flat(batches) == list(range(len(LENGTHS)))
        assert all(len(b) * max(LENGTHS[i] for i in b) <= 400 for b in batches)
    # buckets keep padding small: padded size stays close to the real frames
    real = sum(LENGTHS)
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)
    assert padded < 1.2 * real


def test_oversized_items_are_alone_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    lengths = [10, 20, 500, 30, 700]
    with caplog.at_level(logging.WARNING):
        s = FrameBudgetBatchSampler(lengths, max_frames=100, seed=0)
    assert s.num_oversized == 2 and "longer than max_frames" in caplog.text
    batches = list(s)
    assert [2] in batches and [4] in batches and _flat(batches) == [0, 1, 2, 3, 4]


def test_deterministic_per_seed_and_epoch() -> None:
    a = FrameBudgetBatchSampler(LENGTHS, 400, seed=5)
    b = FrameBudgetBatchSampler(LENGTHS, 400, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and len(list(a)) == len(first)  # same count every epoch
    assert list(FrameBudgetBatchSampler(LENGTHS, 400, seed=6)) != first


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks(drop_last: bool) -> None:
    ranks = [FrameBudgetBatchSampler(LENGTHS[:97], 300, seed=2, num_replicas=2, rank=r,
                                     drop_last=drop_last) for r in range(2)]
    for epoch in range(2):
        for s in ranks:
            s.set_epoch(epoch)
        per_rank = [list(s) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0])
        union = set(_flat(per_rank[0])) | set(_flat(per_rank[1]))
        if drop_last:  # nothing twice; partial batches dropped
            assert len(_flat(per_rank[0] + per_rank[1])) == len(union)
        else:  # everything exactly once: batches are halved to even out the ranks
            assert _flat(per_rank[0] + per_rank[1]) == list(range(97))
            full = FrameBudgetBatchSampler(LENGTHS[:97], 300, seed=2)
            full.set_epoch(epoch)
            assert len(per_rank[0]) == -(-len(full) // 2)


def test_resume_from_state_dict() -> None:
    s = FrameBudgetBatchSampler(LENGTHS, 400, seed=3)
    s.set_epoch(4)
    expected = list(s)
    it = iter(s)
    seen = [next(it) for _ in range(5)]
    state = s.state_dict()
    assert state["epoch"] == 4 and state["position"] == 5 and seen == expected[:5]
    resumed = FrameBudgetBatchSampler(LENGTHS, 400, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # Lightning sets the same epoch again: the offset survives
    assert list(resumed) == expected[5:]
    assert list(resumed) == expected  # the next pass is complete again
    resumed.load_state_dict(state)
    resumed.set_epoch(5)  # a new epoch drops the offset
    assert _flat(list(resumed)) == list(range(len(LENGTHS)))


def test_bucket_width_and_max_batch_size() -> None:
    s = FrameBudgetBatchSampler(LENGTHS, 1000, bucket_width=10, max_batch_size=4)
    batches = list(s)
    assert _flat(batches) == list(range(len(LENGTHS))) and max(map(len, batches)) == 4
    assert all(len({LENGTHS[i] // 10 for i in b}) == 1 for b in batches)


def test_lightning_sets_epoch_through_dataloader() -> None:
    s = FrameBudgetBatchSampler(LENGTHS, 400)
    loader = DataLoader(list(range(len(LENGTHS))), batch_sampler=s)
    _set_sampler_epoch(loader, 7)
    assert s.epoch == 7 and len(loader) == len(s)
