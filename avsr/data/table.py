"""A compact, columnar list of utterances for corpora of a million items.

A list of :class:`~avsr.data.corpora.Utterance` objects costs about 0.5 kB per item (the
object, its attribute dict and four ``str`` objects): half a gigabyte for VoxCeleb2's 1 M
utterances, copied page by page into every forked DataLoader worker as reference counts
change. :class:`UtteranceTable` holds the same records as a few numpy arrays: the strings of a
column packed in one UTF-8 buffer with offsets, paths relative to a few base directories, the
video frames as integers. It is a ``Sequence[Utterance]``: ``table[i]`` builds the record of
item ``i`` when the dataset asks for it, so the dataset, the sampler and the data module take
a table where they take a list.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

from avsr.data.corpora import Utterance

__all__ = ["PackedStrings", "UtteranceTable", "as_table"]

_UNKNOWN = -1  # num_frames not known (the sampler probes the media)


class PackedStrings(Sequence[str]):
    """Strings stored as one UTF-8 buffer and ``n + 1`` offsets (no object per string).

    Args:
        data: the concatenated UTF-8 bytes (uint8).
        offsets: int64 (n + 1,) start of every string, then the end of the last.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> PackedStrings:
        strings = list(strings)
        # one join and one encode, the offsets from the separators (vectorised: a million
        # strings in a fraction of a second); a string holding the separator goes slowly
        joined = "\x00".join(strings).encode("utf-8")
        buf = np.frombuffer(joined, dtype=np.uint8)
        cuts = np.flatnonzero(buf == 0)
        if cuts.size != max(len(strings) - 1, 0):
            encoded = [s.encode("utf-8") for s in strings]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
            return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)
        starts = np.concatenate([[0], cuts + 1]) if strings else np.zeros(0, dtype=np.int64)
        ends = np.concatenate([cuts, [buf.size]]) if strings else np.zeros(0, dtype=np.int64)
        lengths = ends - starts
        offsets = np.zeros(len(strings) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        keep = np.ones(buf.size, dtype=bool)
        keep[cuts] = False
        return cls(buf[keep], offsets)

    def __len__(self) -> int:
        return self.offsets.size - 1

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        a, b = self.offsets[index], self.offsets[index + 1]
        return self.data[a:b].tobytes().decode("utf-8")

    def take(self, indices: np.ndarray) -> PackedStrings:
        """The strings at ``indices``, packed anew."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        offsets = np.zeros(indices.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # byte j of new string k is byte (starts[k] + j) of the old buffer
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return PackedStrings(self.data[gather], offsets)

    @staticmethod
    def concat(parts: Sequence[PackedStrings]) -> PackedStrings:
        if not parts:
            return PackedStrings.from_strings([])
        shifts = np.cumsum([0] + [p.data.size for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]]
                                 + [p.offsets[1:] + s for p, s in zip(parts, shifts)])
        return PackedStrings(np.concatenate([p.data for p in parts]), offsets)


class UtteranceTable(Sequence[Utterance]):
    """Utterance records as columns; ``table[i]`` is the :class:`Utterance` of item ``i``.

    Paths are stored relative to one of ``bases`` (``base[i]`` picks it; an absolute stored
    path is used as it is, as ``os.path.join`` does); an empty stored path is a missing
    modality (None).

    Args:
        ids, texts, video, audio: the columns (:class:`PackedStrings`, same length).
        num_frames: int64 video frames, -1 where unknown.
        base: uint16 index into ``bases`` per item.
        bases: base directories.
    """

    def __init__(self, *, ids: PackedStrings, texts: PackedStrings, video: PackedStrings,
                 audio: PackedStrings, num_frames: np.ndarray, base: np.ndarray,
                 bases: Sequence[str]) -> None:
        n = len(ids)
        if not (len(texts) == len(video) == len(audio) == num_frames.size == base.size == n):
            raise ValueError("UtteranceTable columns differ in length")
        self.ids, self.texts, self.video, self.audio = ids, texts, video, audio
        self.num_frames = num_frames.astype(np.int64, copy=False)
        self.base = base.astype(np.uint16, copy=False)
        self.bases = list(bases)

    @classmethod
    def from_columns(cls, ids: Sequence[str], texts: Sequence[str], video: Sequence[str],
                     audio: Sequence[str], num_frames: Sequence[int] | np.ndarray,
                     base_dir: str = "") -> UtteranceTable:
        """A table of one base directory (``""``: the paths are absolute)."""
        return cls(ids=PackedStrings.from_strings(ids),
                   texts=PackedStrings.from_strings(texts),
                   video=PackedStrings.from_strings(video),
                   audio=PackedStrings.from_strings(audio),
                   num_frames=np.asarray(num_frames, dtype=np.int64),
                   base=np.zeros(len(ids), dtype=np.uint16), bases=[base_dir])

    @classmethod
    def from_utterances(cls, utterances: Iterable[Utterance]) -> UtteranceTable:
        utts = list(utterances)
        return cls.from_columns(
            [u.id for u in utts], [u.text for u in utts], [u.video_path or "" for u in utts],
            [u.audio_path or "" for u in utts],
            [_UNKNOWN if u.num_frames is None else u.num_frames for u in utts])

    def __len__(self) -> int:
        return self.num_frames.size

    def _path(self, column: PackedStrings, index: int) -> str | None:
        rel = column[index]
        if not rel:
            return None
        base = self.bases[self.base[index]]
        return os.path.join(base, rel) if base else rel

    @overload
    def __getitem__(self, index: int) -> Utterance: ...

    @overload
    def __getitem__(self, index: slice) -> UtteranceTable: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"utterance {index} out of range ({len(self)} items)")
        frames = int(self.num_frames[index])
        return Utterance(id=self.ids[index], video_path=self._path(self.video, index),
                         audio_path=self._path(self.audio, index), text=self.texts[index],
                         num_frames=None if frames == _UNKNOWN else frames)

    def __iter__(self) -> Iterator[Utterance]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Sequence[int] | np.ndarray) -> UtteranceTable:
        """The items at ``indices`` (in that order) as a new table."""
        idx = np.asarray(indices, dtype=np.int64)
        return UtteranceTable(ids=self.ids.take(idx), texts=self.texts.take(idx),
                              video=self.video.take(idx), audio=self.audio.take(idx),
                              num_frames=self.num_frames[idx], base=self.base[idx],
                              bases=self.bases)

    def with_texts(self, texts: Sequence[str]) -> UtteranceTable:
        """The same items with other transcripts (one per item)."""
        if len(texts) != len(self):
            raise ValueError(f"{len(texts)} transcripts for {len(self)} utterances")
        return UtteranceTable(ids=self.ids, texts=PackedStrings.from_strings(texts),
                              video=self.video, audio=self.audio, num_frames=self.num_frames,
                              base=self.base, bases=self.bases)

    def has_text(self) -> np.ndarray:
        """bool per item: the transcript is not empty."""
        return np.diff(self.texts.offsets) > 0

    @staticmethod
    def concat(tables: Sequence[UtteranceTable]) -> UtteranceTable:
        """The items of ``tables`` one after the other (their base directories merged)."""
        bases: list[str] = []
        remapped = []
        for t in tables:
            lookup = np.array([_index(bases, b) for b in t.bases] or [0], dtype=np.uint16)
            remapped.append(lookup[t.base])
        if len(bases) > np.iinfo(np.uint16).max:
            raise ValueError(f"{len(bases)} base directories; at most 65535")
        return UtteranceTable(
            ids=PackedStrings.concat([t.ids for t in tables]),
            texts=PackedStrings.concat([t.texts for t in tables]),
            video=PackedStrings.concat([t.video for t in tables]),
            audio=PackedStrings.concat([t.audio for t in tables]),
            num_frames=np.concatenate([t.num_frames for t in tables] or [np.zeros(0)]),
            base=np.concatenate(remapped or [np.zeros(0)]), bases=bases or [""])


def _index(items: list[str], item: str) -> int:
    if item not in items:
        items.append(item)
    return items.index(item)


def as_table(utterances: Sequence[Utterance]) -> UtteranceTable:
    """``utterances`` as a table (a table is returned as it is)."""
    if isinstance(utterances, UtteranceTable):
        return utterances
    return UtteranceTable.from_utterances(utterances)
