"""VoxCeleb2 prepared by ``python -m avsr.prepare crop --corpus vox2``, as a training corpus.

The prepared layout is ``<root>/{dev,test}/mp4/<speaker>/<video>/<utt>.{mp4,wav}`` (96 x 96
mouth crops, 16 kHz audio), with ``<root>/index.tsv`` listing every stored piece (``id \\t
split \\t frames \\t samples \\t text``, a header line first). VoxCeleb2 has no transcripts:
it is an unlabelled part (``labelled: false``), or a labelled one with automatic transcripts
from a file (:class:`avsr.data.parts.TrainPart` ``transcripts``). Listing reads the index, a
million lines in seconds; without an index the split directory is walked (slow at VoxCeleb2
scale: one warning). Data prepared by AV-HuBERT or auto_avsr is read through their manifests
instead (:mod:`avsr.data.manifests`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from avsr.data.manifests import ManifestError, _Columns, _frames, _Lines, _open
from avsr.data.table import UtteranceTable

__all__ = ["VoxCeleb2"]

log = logging.getLogger(__name__)

_HEADER = "id\tsplit\tframes\tsamples\ttext"


class VoxCeleb2:
    """Prepared VoxCeleb2 reader (ids are paths relative to ``root`` without suffix).

    Args:
        root: the prepared root (``--out`` of ``avsr.prepare crop --corpus vox2``).
        index: the listing file relative to ``root``.
        max_bad_fraction: share of unreadable index lines skipped with a warning before the
            index is refused.

    Splits: ``dev`` and ``test``.
    """

    SPLITS = ("dev", "test")

    def __init__(self, root: str | Path, index: str = "index.tsv",
                 max_bad_fraction: float = 0.0) -> None:
        # checked when listed, not here: evaluation instantiates a run's stored data config,
        # training-only parts included, on machines that may not hold them
        self.root = Path(root).expanduser().resolve()
        self.index = self.root / index
        self.max_bad_fraction = max_bad_fraction
        self._cache: dict[str, UtteranceTable] = {}

    def __repr__(self) -> str:
        return f"VoxCeleb2(root={str(self.root)!r})"

    def utterances(self, split: str) -> UtteranceTable:
        """The utterances of ``split``, sorted by id, without transcripts.

        Raises:
            ValueError: unknown split name.
            FileNotFoundError: no root, or no index and no split directory.
            ManifestError: too many unreadable index lines, or none of ``split``.
        """
        if split not in self.SPLITS:
            raise ValueError(f"unknown VoxCeleb2 split {split!r}; expected one of "
                             f"{self.SPLITS}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"VoxCeleb2 root not found: {self.root}")
        if split not in self._cache:
            table = self._read_index(split) if self.index.is_file() else self._walk(split)
            self._cache[split] = table
        return self._cache[split]

    def _read_index(self, split: str) -> UtteranceTable:
        bad = _Lines(self.index, self.max_bad_fraction)
        rows = _Columns([str(self.root)])
        keep: list[tuple[str, int]] = []
        total = 0
        for n, line in enumerate(_open(self.index, "VoxCeleb2 index"), 1):
            if n == 1 and line.rstrip("\n") == _HEADER:
                continue
            total += 1
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 5:
                bad.skip(n, f"expected 5 tab-separated fields ({_HEADER}), got {len(fields)}")
                continue
            frames = _frames(fields[2])
            if not fields[0] or frames is None:
                bad.skip(n, f"empty id or a frame count that is not a positive integer "
                            f"({fields[2]!r})")
                continue
            if fields[1] == split:
                keep.append((fields[0], frames))
        bad.check(total)
        if not keep:
            raise ManifestError(f"{self.index}: no utterance of split {split!r}")
        for uid, frames in sorted(keep):
            rows.add(uid, "", f"{uid}.mp4", f"{uid}.wav", frames)
        return rows.table()

    def _walk(self, split: str) -> UtteranceTable:
        directory = self.root / split
        if not directory.is_dir():
            raise FileNotFoundError(f"VoxCeleb2 split '{split}' not found: neither {self.index} "
                                    f"nor {directory} exists")
        log.warning("VoxCeleb2: no %s, walking %s (slow at VoxCeleb2 scale; avsr.prepare "
                    "crop writes the index)", self.index, directory)
        rows = _Columns([str(self.root)])
        for mp4 in sorted(directory.glob("**/*.mp4")):
            uid = mp4.relative_to(self.root).with_suffix("").as_posix()
            wav = mp4.with_suffix(".wav")
            rows.add(uid, "", f"{uid}.mp4", f"{uid}.wav" if wav.is_file() else f"{uid}.mp4",
                     -1)
        return rows.table()
