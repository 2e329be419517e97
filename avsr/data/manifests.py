"""Manifests as corpora: AV-HuBERT's tsv/wrd and auto_avsr's label csv, read as they are.

A user whose data was prepared by AV-HuBERT (facebookresearch/av_hubert ``lrs3_manifest.py``,
``vox_manifest.py``) or auto_avsr (mpc001/auto_avsr ``preparation/``), or by ``python -m
avsr.prepare manifests`` which writes both forms, trains on it unchanged. Listing comes from
the manifest (a 1 M-line VoxCeleb2 manifest in seconds), never from a directory walk, and the
records are an :class:`~avsr.data.table.UtteranceTable` (a few arrays, not an object per item).

Forms:

- AV-HuBERT (:class:`AVHuBERTManifest`): ``<dir>/<split>.tsv``, first line the root directory
  (``/`` in AV-HuBERT's own files, whose paths are absolute), then ``id \\t video \\t audio \\t
  video frames \\t audio samples`` per utterance, paths joined to the root as
  ``os.path.join`` does; ``<dir>/<split>.wrd`` holds one lower-case transcript per tsv line, in
  the same order. Splits: the ``.tsv`` files (``train``, ``valid``, ``test``).
- auto_avsr / USR (:class:`AutoAVSRManifest`): a csv without header, ``dataset,relative/path
  .mp4,<video frames>,<space-separated token ids>``; media at ``<root>/<dataset>/<path>``,
  audio at the same path with ``.wav`` (auto_avsr's rule). Token ids become text through the
  tokenizer they were made with (e.g. :class:`~avsr.data.units_tokenizer.UnitsTokenizer` of
  ``unigram5000_units.txt``); the data module encodes that text again with its own.

Bad input: a line that cannot be parsed (too few fields, a frame count that is not a positive
integer) is named by file and line. Up to ``max_bad_fraction`` of the lines are skipped and
counted (``bad_lines``, one warning); beyond it, or when the transcripts do not line up with
the utterances, :class:`ManifestError` stops the run. A manifest with no usable line is an
error, never an empty set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from avsr.data.corpora import normalize_text
from avsr.data.table import UtteranceTable

__all__ = ["AVHuBERTManifest", "AutoAVSRManifest", "ManifestError"]

log = logging.getLogger(__name__)

_CHUNK = 200_000  # lines packed at a time: bounds the Python objects alive while listing


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file (and line)."""


class _Lines:
    """Collects the bad lines of one manifest and judges them against a fraction."""

    def __init__(self, path: Path, max_bad_fraction: float) -> None:
        self.path = path
        self.max_bad_fraction = max_bad_fraction
        self.bad: list[tuple[int, str]] = []

    def skip(self, line_no: int, problem: str) -> None:
        self.bad.append((line_no, problem))

    def check(self, total: int) -> None:
        if not self.bad:
            return
        first = "; ".join(f"{self.path}:{n}: {p}" for n, p in self.bad[:3])
        if len(self.bad) > self.max_bad_fraction * total:
            raise ManifestError(f"{len(self.bad)} of {total} lines of {self.path} are "
                                f"unreadable (max_bad_fraction {self.max_bad_fraction}): "
                                f"{first}")
        log.warning("%s: skipped %d of %d unreadable lines (first: %s)", self.path,
                    len(self.bad), total, first)


def _frames(field: str) -> int | None:
    try:
        n = int(field)
    except ValueError:
        return None
    return n if n > 0 else None


def _open(path: Path, what: str) -> Iterator[str]:
    """The lines of ``path``, read lazily (a million-line file is never one list).

    Raises:
        FileNotFoundError: at once, naming ``what`` and the path.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")

    def lines() -> Iterator[str]:
        with path.open(encoding="utf-8", errors="strict") as f:
            try:
                yield from f
            except UnicodeDecodeError as e:
                raise ManifestError(f"{path}: not UTF-8 text ({e})") from e

    return lines()


class _Columns:
    """Rows gathered in chunks and packed into tables (see ``_CHUNK``)."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.tables: list[UtteranceTable] = []
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.video: list[str] = []
        self.audio: list[str] = []
        self.frames: list[int] = []
        self.base: list[int] = []

    def add(self, uid: str, text: str, video: str, audio: str, frames: int, base: int = 0
            ) -> None:
        self.ids.append(uid)
        self.texts.append(text)
        self.video.append(video)
        self.audio.append(audio)
        self.frames.append(frames)
        self.base.append(base)
        if len(self.ids) >= _CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self.ids:
            t = UtteranceTable.from_columns(self.ids, self.texts, self.video, self.audio,
                                            self.frames)
            self.tables.append(UtteranceTable(
                ids=t.ids, texts=t.texts, video=t.video, audio=t.audio,
                num_frames=t.num_frames, base=np.asarray(self.base, dtype=np.uint16),
                bases=self.bases))
        self._reset()

    def table(self) -> UtteranceTable:
        self._pack()
        if not self.tables:
            return UtteranceTable.from_columns([], [], [], [], [])
        return self.tables[0] if len(self.tables) == 1 else UtteranceTable.concat(self.tables)


def _finish(rows: _Columns, bad: _Lines, total: int, source: Path) -> UtteranceTable:
    """Judge the skipped lines, then the table of ``source``; an empty one is an error."""
    bad.check(total)
    table = rows.table()
    if not len(table):
        raise ManifestError(f"{source}: no usable utterance")
    return table


class AVHuBERTManifest:
    """AV-HuBERT's ``{train,valid,test}.tsv`` (+ ``.wrd``) as a corpus.

    Args:
        root: the folder holding ``<split>.tsv`` and ``<split>.<label>`` (e.g. AV-HuBERT's
            ``433h_data``, or ``<out>/<subset>`` of ``python -m avsr.prepare manifests``).
        label: the transcript suffix (``wrd``); None: no transcripts (unlabelled use, e.g. a
            VoxCeleb2 manifest without ``.wrd``).
        media_root: replaces the tsv's first line, the directory the media paths are relative
            to (the data moved to another machine). A relative first line is taken relative
            to ``root``.
        max_bad_fraction: share of unreadable tsv lines skipped with a warning before the
            manifest is refused.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path, label: str | None = "wrd",
                 media_root: str | Path | None = None, max_bad_fraction: float = 0.0) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"AV-HuBERT manifest directory not found: {self.root}")
        self.label = label
        self.media_root = str(media_root) if media_root is not None else None
        self.max_bad_fraction = max_bad_fraction
        self.bad_lines: dict[str, list[tuple[int, str]]] = {}
        self._cache: dict[str, UtteranceTable] = {}

    def __repr__(self) -> str:
        return f"AVHuBERTManifest(root={str(self.root)!r}, label={self.label!r})"

    def utterances(self, split: str) -> UtteranceTable:
        """The utterances of ``<root>/<split>.tsv`` in manifest order (transcripts from
        ``<split>.<label>``, upper-cased and normalised).

        Raises:
            FileNotFoundError: no such tsv, or no label file when ``label`` is set.
            ManifestError: too many unreadable lines, no usable line, or a label file with
                another number of lines than the tsv; names the files.
        """
        if split not in self._cache:
            self._cache[split] = self._read(split)
        return self._cache[split]

    def _read(self, split: str) -> UtteranceTable:
        tsv = self.root / f"{split}.tsv"
        labels: Iterator[str] | None = None
        wrd = self.root / f"{split}.{self.label}" if self.label else None
        if wrd is not None:
            labels = _open(wrd, f"AV-HuBERT label file of split '{split}'")
        lines = _open(tsv, f"AV-HuBERT manifest of split '{split}'")
        bad = _Lines(tsv, self.max_bad_fraction)
        first = next(lines, None)
        if first is None or not first.strip():
            raise ManifestError(f"{tsv}:1: expected the media root directory, got an empty "
                                "line (an AV-HuBERT tsv starts with it, e.g. '/')")
        base = self.media_root or first.strip()
        if not Path(base).is_absolute():
            base = str(self.root / base)
        rows = _Columns([base])
        total = 0
        for n, line in enumerate(lines, 2):
            total += 1
            text = ""
            if labels is not None:
                label = next(labels, None)
                if label is None:
                    raise ManifestError(f"{wrd} ends at line {n - 2} but {tsv} goes on "
                                        f"(line {n}): transcripts and utterances do not line "
                                        "up")
                text = normalize_text(label)
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                bad.skip(n, f"expected 5 tab-separated fields (id, video, audio, video "
                            f"frames, audio samples), got {len(fields)}")
                continue
            frames = _frames(fields[3])
            if not fields[0] or frames is None or (not fields[1] and not fields[2]):
                bad.skip(n, "empty id, no media path, or a video frame count that is not a "
                            f"positive integer ({fields[3]!r})")
                continue
            rows.add(fields[0], text, fields[1], fields[2], frames)
        if labels is not None and next(labels, None) is not None:
            raise ManifestError(f"{wrd} has more lines than {tsv} has utterances: "
                                "transcripts and utterances do not line up")
        self.bad_lines[split] = bad.bad
        return _finish(rows, bad, total, tsv)


class AutoAVSRManifest:
    """auto_avsr's / USR's label csv as a corpus.

    Args:
        root: the directory that holds one folder per dataset tag (auto_avsr's ``root_dir``:
            media at ``<root>/<dataset>/<relative path>``).
        labels_dir: where the csv files are (default ``<root>/labels``); split ``NAME`` is
            ``<labels_dir>/NAME.csv`` (auto_avsr: ``lrs3_train_transcript_lengths_seg16s``;
            ``python -m avsr.prepare manifests``: ``train`` in ``<out>/<subset>``).
        roots: dataset tag -> its own media directory, instead of ``<root>/<tag>`` (the
            csv of ``avsr.prepare manifests`` is relative to each prepared corpus root).
        tokenizer: turns the token ids into text (``decode``), the tokenizer the csv was
            written with; None: no transcripts (unlabelled use).
        max_bad_fraction: share of unreadable lines skipped with a warning before the csv is
            refused.

    Raises:
        FileNotFoundError: ``root`` is given and is not a directory.
    """

    def __init__(self, root: str | Path | None = None, labels_dir: str | Path | None = None,
                 roots: dict[str, str | Path] | None = None, tokenizer: Any | None = None,
                 max_bad_fraction: float = 0.0) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise FileNotFoundError(f"auto_avsr media root not found: {self.root}")
        if labels_dir is None and self.root is None:
            raise ValueError("AutoAVSRManifest needs root or labels_dir")
        self.labels_dir = (Path(labels_dir).expanduser() if labels_dir is not None
                           else self.root / "labels")
        self.roots = {str(k): str(Path(v).expanduser()) for k, v in (roots or {}).items()}
        self.tokenizer = tokenizer
        self.max_bad_fraction = max_bad_fraction
        self.bad_lines: dict[str, list[tuple[int, str]]] = {}
        self._cache: dict[str, UtteranceTable] = {}

    def __repr__(self) -> str:
        return (f"AutoAVSRManifest(root={str(self.root)!r}, "
                f"labels_dir={str(self.labels_dir)!r})")

    def _base(self, tag: str, where: str) -> str:
        if tag in self.roots:
            return self.roots[tag]
        if self.root is None:
            raise ManifestError(f"{where}: dataset {tag!r} has no media directory (give root, "
                                f"or roots.{tag})")
        return str(self.root / tag)

    def utterances(self, split: str) -> UtteranceTable:
        """The utterances of ``<labels_dir>/<split>.csv`` in file order.

        Ids are ``<dataset>/<relative path without .mp4>`` (unique across datasets).

        Raises:
            FileNotFoundError: no such csv.
            ManifestError: too many unreadable lines, no usable line, or a dataset tag
                without a media directory; names the file and line.
        """
        if split not in self._cache:
            self._cache[split] = self._read(split)
        return self._cache[split]

    def _read(self, split: str) -> UtteranceTable:
        csv = self.labels_dir / f"{split}.csv"
        lines = _open(csv, f"auto_avsr label csv of split '{split}'")
        bad = _Lines(csv, self.max_bad_fraction)
        bases: list[str] = []
        base_of: dict[str, int] = {}
        rows = _Columns(bases)
        total = 0
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            total += 1
            fields = line.rstrip("\n").split(",")
            if len(fields) != 4:
                bad.skip(n, "expected 4 comma-separated fields (dataset, path, video frames, "
                            f"token ids), got {len(fields)}")
                continue
            tag, rel, count, ids = fields
            frames = _frames(count)
            if not tag or not rel or frames is None:
                bad.skip(n, "empty dataset or path, or a video frame count that is not a "
                            f"positive integer ({count!r})")
                continue
            text = ""
            if self.tokenizer is not None:
                try:
                    tokens = [int(t) for t in ids.split()]
                except ValueError:
                    bad.skip(n, f"token ids must be integers, got {ids!r}")
                    continue
                text = normalize_text(self.tokenizer.decode(tokens))
            if tag not in base_of:
                base_of[tag] = len(bases)
                bases.append(self._base(tag, f"{csv}:{n}"))
            stem = rel[:-4] if rel.endswith(".mp4") else rel
            rows.add(f"{tag}/{stem}", text, rel, f"{stem}.wav", frames, base_of[tag])
        self.bad_lines[split] = bad.bad
        return _finish(rows, bad, total, csv)
