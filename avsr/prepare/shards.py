"""Write pre-decoded media shards (:mod:`avsr.data.shards`) from a corpus, once.

``python -m avsr.prepare shards --corpus lrs3 --root data/lrs3 --out data/shards/lrs3``

Every utterance of the chosen splits is decoded with the loaders training uses
(:func:`~avsr.data.io.load_video`, :func:`~avsr.data.io.load_audio`), in ``workers`` processes,
and appended to the current shard until it reaches ``shard_mb``. A file that does not decode is
written as an error line (the run summary will name it, as it names a corrupt mp4 today). The
shards and the index are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from avsr.data.corpora import LRS2, LRS3, Utterance
from avsr.data.io import MediaError, load_audio, load_video
from avsr.data.shards import ALIGN, AUDIO_DTYPES, FORMAT, INDEX, VERSION

__all__ = ["write_shards", "corpus_utterances"]

log = logging.getLogger(__name__)


def corpus_utterances(corpus: str, root: str | Path, splits: Sequence[str],
                      val_list: str | None = None) -> Iterator[tuple[str, Utterance]]:
    """(split, utterance) of ``splits`` of an LRS3- or LRS2-layout corpus (the synthetic one
    is LRS3 layout); an utterance in two splits (LRS3's trainval holds val) is written once."""
    reader = LRS3(root, val_list=val_list) if corpus == "lrs3" else LRS2(root)
    seen: set[str] = set()
    for split in splits:
        for u in reader.utterances(split):
            if u.id not in seen:
                seen.add(u.id)
                yield split, u


def _decode(job: tuple[str, Utterance, str]) -> tuple[str, Utterance, Any]:
    """(split, utterance, (video uint8 (T, H, W) | None, audio (S,) | None) or MediaError)."""
    split, u, audio_dtype = job
    try:
        video = load_video(u.video_path).numpy() if u.video_path else None
        audio = load_audio(u.audio_path).numpy() if u.audio_path else None
    except MediaError as e:
        return split, u, e
    if audio is not None and audio_dtype == "int16":
        audio = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    return split, u, (video, audio)


class _ShardWriter:
    """Appends members to ``shard-NNNNN.bin`` files (under temporary names until
    :meth:`finish`) and returns their index fields."""

    def __init__(self, out: Path, shard_bytes: int) -> None:
        self.out, self.shard_bytes = out, shard_bytes
        self.number, self.file, self.size = -1, None, 0

    def _name(self, number: int) -> str:
        return f"shard-{number:05d}.bin"

    def _tmp(self, number: int) -> Path:
        return self.out / f".{self._name(number)}.tmp"

    def _roll(self) -> None:
        if self.file is not None:
            self.file.close()
        self.number += 1
        self.file = open(self._tmp(self.number), "wb")
        self.size = 0

    def add(self, video: np.ndarray | None, audio: np.ndarray | None) -> dict[str, Any]:
        if self.file is None or self.size >= self.shard_bytes:
            self._roll()
        pad = -self.size % ALIGN
        self.file.write(b"\0" * pad)
        self.size += pad
        fields: dict[str, Any] = {"shard": self._name(self.number), "video": None, "audio": None}
        crc = 0
        for key, array in (("video", video), ("audio", audio)):
            if array is None:
                continue
            data = np.ascontiguousarray(array).tobytes()
            fields[key] = [self.size, *array.shape]
            crc = zlib.crc32(data, crc)
            self.file.write(data)
            self.size += len(data)
        fields["crc32"] = crc
        return fields

    def finish(self, keep: bool) -> None:
        """Rename every shard into place, or (a failed run) delete them: an existing index
        never points into half-written replacements."""
        if self.file is not None:
            self.file.close()
            self.file = None
        for number in range(self.number + 1):
            if keep:
                self._tmp(number).replace(self.out / self._name(number))
            else:
                self._tmp(number).unlink(missing_ok=True)


def write_shards(items: Iterable[tuple[str, Utterance]], out: str | Path, *,
                 shard_mb: float = 1024.0, audio_dtype: str = "int16",
                 workers: int = 1) -> dict[str, Any]:
    """Decode ``items`` into shards under ``out``; returns counts for the log.

    Args:
        items: (split, utterance) pairs, e.g. from :func:`corpus_utterances`.
        out: shard directory (created; existing shards and index are replaced).
        shard_mb: a new shard starts once the current one holds this many MiB.
        audio_dtype: ``"int16"`` (half the bytes, 1/32768 quantisation) or ``"float32"`` (the
            decoder's samples exactly, so items equal those decoded from the mp4s).
        workers: decoding processes.
    """
    if audio_dtype not in AUDIO_DTYPES:
        raise ValueError(f"audio_dtype must be one of {sorted(AUDIO_DTYPES)}, got {audio_dtype!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out, int(shard_mb * 2**20))
    counts = {"written": 0, "errors": 0, "frames": 0}
    jobs = ((split, u, audio_dtype) for split, u in items)
    tmp_index = out / f".{INDEX}.{os.getpid()}.tmp"
    with open(tmp_index, "w", encoding="utf-8") as index:
        index.write(json.dumps({"format": FORMAT, "version": VERSION,
                                "audio_dtype": audio_dtype}) + "\n")
        pool = get_context("spawn").Pool(workers) if workers > 1 else None
        ok = False
        try:
            results = pool.imap(_decode, jobs, chunksize=4) if pool else map(_decode, jobs)
            for split, u, decoded in results:
                entry: dict[str, Any] = {"id": u.id, "split": split, "text": u.text}
                if isinstance(decoded, MediaError):
                    entry.update(path=decoded.path, error=decoded.problem)
                    counts["errors"] += 1
                    log.warning("not stored: %s: %s (%s)", u.id, decoded.problem, decoded.path)
                else:
                    entry.update(writer.add(*decoded))
                    counts["written"] += 1
                    counts["frames"] += 0 if decoded[0] is None else int(decoded[0].shape[0])
                index.write(json.dumps(entry) + "\n")
            ok = True
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            writer.finish(keep=ok)
            if not ok:
                index.close()
                tmp_index.unlink()
    tmp_index.replace(out / INDEX)
    counts["shards"] = writer.number + 1
    return counts
