"""Pre-decoded media shards: decode every mp4 once, then read raw frames from disk.

Decoding H.264 with PyAV costs a CPU core ~1-2 ms per 96x96 frame; a GPU step consumes frames
faster than a node's cores decode them. ``python -m avsr.prepare shards`` writes the decoded
media once; :class:`ShardDataset` then reads it with a memory map and a slice per item.

Layout of a shard directory (``data.shards_dir``)::

    index.jsonl        header line, then one JSON line per utterance
    shard-00000.bin    members back to back: video (T, H, W) uint8, then audio (S,) int16
    shard-00001.bin    or float32, each member starting on a 64-byte boundary
    ...

An index line is ``{"id", "split", "text", "shard", "video": [offset, T, H, W] or null,
"audio": [offset, S] or null, "crc32"}`` (offsets in bytes; ``crc32`` of the member's bytes),
or ``{"id", "split", "path", "error"}`` for media that could not be decoded when the shards were
written: the dataset skips and counts it with the original file and problem, as it would the mp4.

Items are found by utterance id: the data module reads the corpus as before (transcripts, splits,
low-resource subsets, babble sources) and :meth:`ShardIndex.resolve` points each utterance at its
shard. Random access by index keeps the frame-budget sampler, DDP sharding and resume unchanged.

Damage is reported, never hidden (each a :class:`~avsr.data.io.MediaError` naming the shard, so
the dataset counts a skip): a shard shorter than its members (truncated copy), a member whose
checksum does not match (bad member), an id the index does not hold or an index line that cannot
be parsed (bad index; the unreadable line numbers are named).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avsr.data.corpora import Utterance
from avsr.data.dataset import AVDataset
from avsr.data.io import MediaError

__all__ = ["FORMAT", "VERSION", "ALIGN", "AUDIO_DTYPES", "STORAGES", "ShardIndex", "ShardDataset",
           "shard_dataset", "shard_index"]

log = logging.getLogger(__name__)

FORMAT = "avsr-shards"
VERSION = 1
ALIGN = 64  # member start alignment: int16/float32 views of a memory map need aligned offsets
AUDIO_DTYPES = {"int16": np.int16, "float32": np.float32}
INDEX = "index.jsonl"
STORAGES = ("media", "shards")

# per process: the index is parsed once, forked workers inherit it
_OPEN: dict[str, ShardIndex] = {}


def _check_entry(entry: Any) -> dict[str, Any]:
    """The entry when it is well formed, else ValueError saying what is wrong."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise ValueError("not an object with a string 'id'")
    if "error" in entry:
        return entry
    if not isinstance(entry.get("shard"), str) or "/" in entry["shard"] or \
            entry["shard"].startswith("."):
        raise ValueError(f"bad shard name {entry.get('shard')!r}")
    for key, n in (("video", 4), ("audio", 2)):
        v = entry.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == n and all(
                isinstance(x, int) and x >= 0 for x in v)):
            raise ValueError(f"bad {key} field {v!r}")
    if not isinstance(entry.get("crc32"), int):
        raise ValueError("no integer crc32")
    return entry


class ShardIndex:
    """The index of a shard directory and memory-mapped reads of its members.

    Args:
        root: shard directory (``index.jsonl`` and ``shard-*.bin``).

    Raises:
        FileNotFoundError: no ``index.jsonl`` in ``root``.
        ValueError: the first line is not an avsr shard header (names the file).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: write the shards first with "
                                    "`python -m avsr.prepare shards`")
        self.entries: dict[str, dict[str, Any]] = {}
        self.bad_lines: list[int] = []  # 1-based line numbers that could not be parsed
        with open(path, encoding="utf-8", errors="replace") as f:
            header_line = f.readline()
            try:
                header = json.loads(header_line)
            except json.JSONDecodeError:
                header = None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"{path}: first line is not a {FORMAT} header")
            if header.get("version") != VERSION or header.get("audio_dtype") not in AUDIO_DTYPES:
                raise ValueError(f"{path}: unsupported header {header}")
            self.audio_dtype = np.dtype(AUDIO_DTYPES[header["audio_dtype"]])
            for number, line in enumerate(f, start=2):
                try:
                    entry = _check_entry(json.loads(line))
                except (json.JSONDecodeError, ValueError):
                    self.bad_lines.append(number)
                    continue
                self.entries[entry["id"]] = entry
        if self.bad_lines:
            log.warning("%s: %d index lines cannot be parsed (lines %s); their utterances are "
                        "skipped and counted", path, len(self.bad_lines), self.bad_lines[:10])
        self._maps: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, root: str | Path) -> ShardIndex:
        """The index of ``root``, parsed once per process."""
        key = str(Path(root).resolve())
        if key not in _OPEN:
            _OPEN[key] = cls(root)
        return _OPEN[key]

    def __getstate__(self) -> dict[str, Any]:
        # memory maps do not pickle (spawned workers); each process maps the files itself
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self.entries)

    def resolve(self, utterances: Sequence[Utterance]) -> list[Utterance]:
        """The utterances with their media paths pointing at their shard.

        Ids and transcripts stay the corpus's. An utterance without a member (not in the index,
        or stored as an error) points at ``index.jsonl``; reading it is a counted skip that
        names the index, or the original file and its problem.
        """
        out = []
        for u in utterances:
            entry = self.entries.get(u.id)
            name = entry["shard"] if entry is not None and "shard" in entry else INDEX
            path = str(self.root / name)
            out.append(replace(u, video_path=path if u.video_path else None,
                               audio_path=path if u.audio_path else None))
        return out

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            path = self.root / name
            if not path.is_file():
                raise MediaError(path, "missing shard file")
            # an empty file cannot be mapped: a zero-length view reports every member truncated
            self._maps[name] = (np.memmap(path, dtype=np.uint8, mode="r")
                                if path.stat().st_size else np.zeros(0, np.uint8))
        return self._maps[name]

    def read(self, uid: str, *, video: bool = True, audio: bool = True
             ) -> tuple[Tensor | None, Tensor | None]:
        """Video (T, H, W) uint8 and audio (S,) float32 in [-1, 1] of utterance ``uid``.

        Args:
            uid: utterance id.
            video, audio: which modalities to read (the other comes back None).

        Raises:
            MediaError: naming the shard (or index, or the original file) and the problem.
        """
        entry = self.entries.get(uid)
        if entry is None:
            lines = f"; unreadable index lines {self.bad_lines[:10]}" if self.bad_lines else ""
            raise MediaError(self.root / INDEX, f"bad index (no entry for {uid}{lines})")
        if "error" in entry:
            raise MediaError(entry.get("path", self.root / INDEX), str(entry["error"]))
        data = self._map(entry["shard"])
        path = self.root / entry["shard"]
        v, a = entry["video"], entry["audio"]
        start = v[0] if v is not None else a[0] if a is not None else 0
        end = start
        if v is not None:
            end = v[0] + v[1] * v[2] * v[3]
        if a is not None:
            end = max(end, a[0] + a[1] * self.audio_dtype.itemsize)
        if end > data.shape[0]:
            raise MediaError(path, f"truncated shard (member {uid} ends at byte {end}, the file "
                                   f"has {data.shape[0]})")
        member = data[start:end]
        if zlib.crc32(member) != entry["crc32"]:
            raise MediaError(path, f"bad member (checksum mismatch of {uid})")
        out_v = out_a = None
        if video:
            if v is None:
                raise MediaError(path, f"no video stream (member {uid})")
            frames = data[v[0]:v[0] + v[1] * v[2] * v[3]]
            out_v = torch.from_numpy(np.array(frames).reshape(v[1], v[2], v[3]))  # a copy
        if audio:
            if a is None:
                raise MediaError(path, f"no audio stream (member {uid})")
            raw = data[a[0]:a[0] + a[1] * self.audio_dtype.itemsize].view(self.audio_dtype)
            out_a = torch.from_numpy(raw.astype(np.float32))
            if self.audio_dtype == np.int16:
                out_a.div_(32768.0)
        return out_v, out_a


class ShardDataset(AVDataset):
    """:class:`~avsr.data.dataset.AVDataset` whose media come from shards, not mp4s.

    Takes utterances from :meth:`ShardIndex.resolve` (their media paths name the shard); every
    other step (checks, noise, transforms, tokens, skip counting) is the parent's.
    """

    def _decode(self, utt: Utterance) -> tuple[Tensor | None, Tensor | None]:
        path = utt.video_path or utt.audio_path
        if path is None:
            return None, None
        index = ShardIndex.open(Path(path).parent)
        return index.read(utt.id, video="video" in self.modalities and utt.video_path is not None,
                          audio="audio" in self.modalities and utt.audio_path is not None)


def shard_index(storage: str, shards_dir: str | Path | None) -> ShardIndex | None:
    """The data module's ``storage`` choice: None for ``"media"``, the index for ``"shards"``.

    Raises:
        ValueError: an unknown ``storage``, or ``"shards"`` without ``shards_dir``.
        FileNotFoundError: ``shards_dir`` holds no index (says how to write one).
    """
    if storage not in STORAGES:
        raise ValueError(f"data.storage must be one of {STORAGES}, got {storage!r}")
    if storage == "media":
        return None
    if shards_dir is None:
        raise ValueError("data.storage=shards needs data.shards_dir (written by "
                         "`python -m avsr.prepare shards`)")
    return ShardIndex.open(shards_dir)


def shard_dataset(dataset_class: type[AVDataset]) -> type[AVDataset]:
    """The shard-reading dataset for a data module's ``dataset_class``.

    Raises:
        ValueError: a dataset class other than :class:`~avsr.data.dataset.AVDataset` (the word
            datasets of LRW are not written by ``avsr.prepare shards``).
    """
    if dataset_class is not AVDataset:
        raise ValueError(f"data.storage=shards reads the sentence corpora (AVDataset), not "
                         f"{dataset_class.__name__}: use data.storage=media")
    return ShardDataset
