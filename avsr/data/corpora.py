"""Readers for the official LRS2 and LRS3 layouts (and the synthetic corpus, written as LRS3).

The readers only list files and read the small ``.txt`` transcripts; they never decode media.
Every record is an :class:`Utterance` whose ``id`` is its path relative to the corpus root
without suffix (``"test/spk007/00012"``), so ids are stable across machines and match the
validation lists. Records come back sorted by id, so two runs see the same order.

A transcript that cannot be read (an empty file, no ``Text:`` line, unreadable) does not stop
the scan: its utterance comes back with empty text, as one without a ``.txt`` does, the reader
records the file and the problem in ``bad_transcripts`` and logs one warning per split. The
dataset then skips and counts the item when it needs a transcript (the run summary's skip
counts), and still uses its media when it does not (unlabelled pre-training).

Layouts:

- LRS3 (and AV-HuBERT / auto_avsr preprocessed copies): ``<root>/{pretrain,trainval,test}/
  <speaker>/<utt>.mp4`` with ``<utt>.txt`` and optionally a sibling ``<utt>.wav`` (then the wav
  is the audio source).
- LRS2: ``<root>/main/<id>.mp4`` and ``<root>/pretrain/<id>.mp4`` with official list files
  ``<root>/{pretrain,train,val,test}.txt`` (``5535415699068794046/00001`` per line; test lines
  may carry an extra field such as `` NF``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from avsr.data.io import FPS

__all__ = ["Utterance", "LRS3", "LRS2", "TranscriptError", "normalize_text", "read_transcript",
           "transcript_problem"]

log = logging.getLogger(__name__)

_BRACE_TAG = re.compile(r"\{[^}]*\}")
_WORD_HEADER = "WORD START END"


def normalize_text(text: str) -> str:
    """Normalise a transcript for tokenisation and WER scoring.

    Noise tags in braces (``{LG}``, ``{NS}``) are dropped, letters are upper-cased and runs of
    white space collapse to one space. The tokenizer and the WER references use this one
    function so that hypotheses and references are compared in the same alphabet.

    Example:
        >>> normalize_text("  hello {LG}  world ")
        'HELLO WORLD'
    """
    return " ".join(_BRACE_TAG.sub(" ", text).upper().split())


@dataclass(frozen=True)
class Utterance:
    """One corpus item; paths are absolute at runtime, ``None`` where the modality is absent.

    Attributes:
        id: path relative to the corpus root without suffix, e.g. ``"test/spk007/00012"``.
        video_path: the ``.mp4`` (None: no video).
        audio_path: the sibling ``.wav`` when it exists, else the ``.mp4`` (None: no audio).
        text: transcript from the ``Text:`` line, normalised with :func:`normalize_text`.
        num_frames: video frames when known cheaply (last word END × 25), else None.
    """

    id: str
    video_path: str | None
    audio_path: str | None
    text: str
    num_frames: int | None


class TranscriptError(ValueError):
    """A transcript file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_transcript(path: str | Path) -> tuple[str, int | None]:
    """Read an LRS2/LRS3 ``.txt``: the ``Text:`` line and, when present, the word timings.

    Returns:
        ``(text, num_frames)``: normalised text and ``ceil(END of the last word × 25)`` or
        None when the file has no word-timing table (LRS2 ``main``).

    Raises:
        TranscriptError: (a ``ValueError``) the file is empty, has no ``Text:`` line or cannot
            be read; the message names the file.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise TranscriptError(path, f"unreadable transcript ({e.strerror or e})") from e
    if not any(line.strip() for line in lines):  # 0 bytes, or only white space
        raise TranscriptError(path, "empty transcript file")
    text: str | None = None
    last_end: float | None = None
    in_words = False
    for line in lines:
        stripped = line.strip()
        if text is None and stripped.startswith("Text:"):
            text = stripped[len("Text:"):]
        elif stripped.upper().startswith(_WORD_HEADER):
            in_words = True
        elif in_words and stripped:
            fields = stripped.split()
            if len(fields) >= 3:
                try:
                    last_end = float(fields[2])
                except ValueError:  # a malformed row: keep the previous estimate
                    pass
    if text is None:
        raise TranscriptError(path, "no 'Text:' line in transcript")
    # ceil: the clip holds at least the frame in which the last word ends
    num_frames = max(1, math.ceil(last_end * FPS - 1e-6)) if last_end is not None else None
    return normalize_text(text), num_frames


def transcript_problem(path: str | Path) -> str:
    """Why the transcript at ``path`` gives no text: the skip reason a dataset reports."""
    if not Path(path).is_file():
        return "missing transcript"
    try:
        read_transcript(path)
    except TranscriptError as e:
        return e.problem
    return "empty transcript"  # a Text: line with nothing left after normalisation


def _make_utterance(root: Path, stem: Path, files: set[Path] | None = None,
                    bad: dict[str, str] | None = None) -> Utterance | None:
    """Build the record of ``stem`` (a path without suffix); None when no media exists.

    ``files``, when given, is the set of existing files (one directory listing instead of three
    ``stat`` calls per utterance on a 100k-utterance split). A transcript that cannot be read
    gives empty text (as a missing one does) and is recorded in ``bad`` (path -> problem).
    """
    def exists(p: Path) -> bool:
        return p in files if files is not None else p.is_file()

    mp4, wav, txt = stem.with_suffix(".mp4"), stem.with_suffix(".wav"), stem.with_suffix(".txt")
    video = str(mp4) if exists(mp4) else None
    audio = str(wav) if exists(wav) else video
    if video is None and audio is None:
        return None
    text, num_frames = "", None
    if exists(txt):
        try:
            text, num_frames = read_transcript(txt)
        except TranscriptError as e:  # one bad file must not stop a 100k-file scan
            if bad is not None:
                bad[e.path] = e.problem
    return Utterance(
        id=stem.relative_to(root).as_posix(),
        video_path=video,
        audio_path=audio,
        text=text,
        num_frames=num_frames,
    )


def _read_id_list(path: Path) -> list[str]:
    """Ids of a list file: first field per line, blank lines and ``#`` comments ignored."""
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            ids.append(fields[0].removesuffix(".mp4"))
    return ids


def _warn_bad(corpus: str, split: str, bad: dict[str, str]) -> None:
    """One warning per scanned split for all of its unusable transcripts."""
    if bad:
        path, problem = next(iter(sorted(bad.items())))
        log.warning("%s %s: %d unusable transcripts; their utterances get no text and are "
                    "skipped where a transcript is needed (first: %s: %s)", corpus, split,
                    len(bad), path, problem)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")


class LRS3:
    """LRS3 layout reader (also the synthetic corpus and AV-HuBERT/auto_avsr copies).

    Args:
        root: corpus root holding ``pretrain/``, ``trainval/``, ``test/`` (any subset).
        val_list: file of validation ids relative to ``root`` (``trainval/spk/00003``), one per
            line. Default: ``<root>/val_ids.txt`` if it exists. Needed for the ``train`` and
            ``val`` splits.

    Splits: ``pretrain``, ``trainval``, ``test``, ``train`` (trainval minus the val ids) and
    ``val`` (the val ids).

    Attributes:
        bad_transcripts: ``.txt`` path -> problem of every unusable transcript scanned so far.
    """

    SPLITS = ("pretrain", "trainval", "test", "train", "val")

    def __init__(self, root: str | Path, val_list: str | Path | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        _require_dir(self.root, "LRS3 root")
        if val_list is None:
            default = self.root / "val_ids.txt"
            self.val_list = default if default.is_file() else None
        else:
            path = Path(val_list).expanduser()
            self.val_list = path if path.is_absolute() else self.root / path
            if not self.val_list.is_file():
                raise FileNotFoundError(f"LRS3 validation list not found: {self.val_list}")
        self._cache: dict[str, list[Utterance]] = {}
        self.bad_transcripts: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LRS3(root={str(self.root)!r}, val_list={str(self.val_list)!r})"

    def _scan(self, split: str) -> list[Utterance]:
        if split not in self._cache:
            directory = self.root / split
            _require_dir(directory, f"LRS3 split '{split}'")
            # a stem is any utterance with a media file; the .txt alone is not an utterance
            files = set(directory.glob("*/*"))
            stems = {p.with_suffix("") for p in files if p.suffix in (".mp4", ".wav")}
            bad: dict[str, str] = {}
            utts = [u for s in stems
                    if (u := _make_utterance(self.root, s, files, bad)) is not None]
            _warn_bad("LRS3", split, bad)
            self.bad_transcripts.update(bad)
            self._cache[split] = sorted(utts, key=lambda u: u.id)
        return self._cache[split]

    def _val_ids(self) -> set[str]:
        if self.val_list is None:
            raise FileNotFoundError(
                f"LRS3 splits 'train'/'val' need a validation id list; none given and "
                f"{self.root / 'val_ids.txt'} does not exist (use split 'trainval' to train on "
                "everything)"
            )
        return set(_read_id_list(self.val_list))

    def utterances(self, split: str) -> list[Utterance]:
        """Records of ``split``, sorted by id.

        Raises:
            ValueError: unknown split name.
            FileNotFoundError: the split directory or the needed val list is missing.
        """
        if split not in self.SPLITS:
            raise ValueError(f"unknown LRS3 split {split!r}; expected one of {self.SPLITS}")
        if split not in ("train", "val"):
            return list(self._scan(split))
        val_ids = self._val_ids()
        if split == "train":
            return [u for u in self._scan("trainval") if u.id not in val_ids]
        by_split: dict[str, list[str]] = {}
        for uid in val_ids:
            by_split.setdefault(uid.split("/", 1)[0], []).append(uid)
        found: list[Utterance] = []
        for sub, ids in by_split.items():
            wanted = set(ids)
            found += [u for u in self._scan(sub) if u.id in wanted]
        if len(found) < len(val_ids):
            log.warning("%d of %d ids of %s have no media", len(val_ids) - len(found),
                        len(val_ids), self.val_list)
        return sorted(found, key=lambda u: u.id)


class LRS2:
    """LRS2 (LRS2-BBC) layout reader.

    Args:
        root: corpus root with ``main/``, ``pretrain/`` and the list files
            ``{pretrain,train,val,test}.txt``.

    Splits: ``pretrain`` (from ``pretrain/``), ``train``, ``val``, ``test`` (from ``main/``).

    Attributes:
        bad_transcripts: ``.txt`` path -> problem of every unusable transcript scanned so far.
    """

    SPLITS = ("pretrain", "train", "val", "test")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        _require_dir(self.root, "LRS2 root")
        self._cache: dict[str, list[Utterance]] = {}
        self.bad_transcripts: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LRS2(root={str(self.root)!r})"

    def utterances(self, split: str) -> list[Utterance]:
        """Records of ``split`` as listed in ``<root>/<split>.txt``, sorted by id.

        Listed items without any media file are left out with one warning that counts them.

        Raises:
            ValueError: unknown split name.
            FileNotFoundError: the list file or the media directory is missing.
        """
        if split not in self.SPLITS:
            raise ValueError(f"unknown LRS2 split {split!r}; expected one of {self.SPLITS}")
        if split not in self._cache:
            list_file = self.root / f"{split}.txt"
            if not list_file.is_file():
                raise FileNotFoundError(
                    f"LRS2 list file for split '{split}' not found: {list_file}")
            sub = "pretrain" if split == "pretrain" else "main"
            _require_dir(self.root / sub, f"LRS2 media directory for split '{split}'")
            bad: dict[str, str] = {}
            utts, missing = self._records(sub, _read_id_list(list_file), bad)
            _warn_bad("LRS2", split, bad)
            self.bad_transcripts.update(bad)
            if missing:
                log.warning("LRS2 %s: %d listed utterances have no media (first: %s)", split,
                            len(missing), missing[0])
            self._cache[split] = sorted(utts, key=lambda u: u.id)
        return list(self._cache[split])

    def _records(self, sub: str, ids: Iterable[str], bad: dict[str, str]
                 ) -> tuple[list[Utterance], list[str]]:
        utts, missing = [], []
        for uid in ids:
            stem = self.root / sub / uid
            utt = _make_utterance(self.root, stem, bad=bad)
            if utt is None:
                missing.append(str(stem.with_suffix(".mp4")))
            else:
                utts.append(utt)
        return utts, missing
