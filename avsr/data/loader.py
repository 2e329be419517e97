"""The data loader of the training stages: frame-budget batches that resume mid-epoch.

- :class:`AVDataLoader`: a ``DataLoader`` over a :class:`~avsr.data.sampler.
  FrameBudgetBatchSampler` that saves how far the epoch got (``state_dict``), so a resumed run
  continues with the next unseen batch, and that merges the skip reports of its workers.
- :func:`utterance_lengths`: the lengths the sampler buckets by, without decoding media.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from avsr.data.corpora import Utterance
from avsr.data.dataset import AVDataset
from avsr.data.io import FPS, MediaError, probe
from avsr.data.table import UtteranceTable

__all__ = ["AVDataLoader", "utterance_lengths"]


def utterance_lengths(utterances: Sequence[Utterance]) -> list[int] | np.ndarray:
    """Length in video frames of every utterance, for the sampler.

    ``num_frames`` when the corpus knew it; otherwise a container probe (header only, no
    decoding). An unreadable file gets length 1: the dataset will skip and report it. A
    :class:`~avsr.data.table.UtteranceTable` gives an int64 array (its frame column; only the
    unknown ones are probed), a list of records a list.
    """
    if isinstance(utterances, UtteranceTable):
        lengths = utterances.num_frames.copy()
        for i in np.flatnonzero(lengths < 0).tolist():
            lengths[i] = _probe_frames(utterances[i])
        return np.maximum(lengths, 1)
    return [max(1, int(u.num_frames if u.num_frames is not None else _probe_frames(u)))
            for u in utterances]


def _probe_frames(u: Utterance) -> int:
    path = u.video_path or u.audio_path
    try:
        info = probe(path) if path is not None else {}
    except MediaError:
        info = {}
    return int(info.get("num_frames") or round((info.get("duration") or 0.0) * FPS))


class AVDataLoader(DataLoader):
    """DataLoader that merges worker skip reports and counts consumed batches.

    Args:
        consumer_prefetch: batches the consumer requests ahead of the one it is processing;
            the saved position subtracts them so a resumed run continues right after the last
            processed batch. Lightning's fetcher does not prefetch a loader that has a length
            (this one), hence the default 0.
        **kwargs: :class:`torch.utils.data.DataLoader` arguments; ``batch_sampler`` must be a
            :class:`~avsr.data.sampler.FrameBudgetBatchSampler` for ``state_dict``.
    """

    def __init__(self, *args: Any, consumer_prefetch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumer_prefetch = consumer_prefetch
        self._delivered = 0
        self._exhausted = False
        self._start = 0

    def __iter__(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        self._start = getattr(sampler, "resume_position", 0)
        self._delivered, self._exhausted = 0, False
        dataset = self.dataset
        for batch in super().__iter__():
            self._delivered += 1
            if self.num_workers > 0 and isinstance(dataset, AVDataset):
                # the workers' dataset copies counted these; the main-process report did not
                dataset.report.merge_batch(batch)
                dataset.report.check(dataset.max_bad_fraction, dataset.min_items_for_check)
            yield batch
        self._exhausted = True
        if isinstance(dataset, AVDataset):  # small sets never reach the minimum: judge at the end
            dataset.report.check(dataset.max_bad_fraction, 1)

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state with ``position`` = batches consumed in the current epoch."""
        state = dict(self.batch_sampler.state_dict())
        ahead = 0 if self._exhausted else self.consumer_prefetch
        state["position"] = self._start + max(0, self._delivered - ahead)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sampler: the next pass of the saved epoch skips the consumed batches."""
        self.batch_sampler.load_state_dict(state)
        self._start, self._delivered, self._exhausted = int(state["position"]), 0, False
