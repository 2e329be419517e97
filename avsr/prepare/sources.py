"""The raw corpora as lists of clips to prepare: LRS3, LRS2 and VoxCeleb2 official layouts.

- LRS3: ``<src>/{pretrain,trainval,test}/<speaker>/<utt>.{mp4,txt}``.
- LRS2: ``<src>/{main,pretrain}/<video>/<utt>.{mp4,txt}`` with the official lists
  ``<src>/{pretrain,train,val,test}.txt``.
- VoxCeleb2: ``<src>/<dev|test>/mp4/<speaker>/<video>/<utt>.mp4``, no transcripts; optionally
  restricted to an id list (AV-HuBERT's English ``vox-en.id``), matched on the last three
  path components (``<speaker>/<video>/<utt>``).

Landmark files mirror the video paths under the landmark root, ``.pkl`` or ``.npy``.

Every id becomes an output path (``<out>/<id>.{mp4,wav,txt}``), so ids from list files and
from the tree are checked (:func:`check_relative_id`): plain relative paths of named
components, whose folder does not lead out of the corpus split through a symbolic link. A bad
id is an :class:`UnsafePathError` naming the list file and line (or the file found), never a
skipped clip: a list with one hostile line is not trusted for the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Clip", "list_clips", "CORPORA", "LONG_SPLITS", "UnsafePathError",
           "check_relative_id", "is_within", "read_id_list"]

CORPORA = ("lrs3", "lrs2", "vox2")
LONG_SPLITS = ("pretrain",)  # splits whose long utterances are cut at word gaps


_DRIVE = re.compile(r"^[A-Za-z]:")  # "C:..." is absolute (or drive-relative) on Windows


class UnsafePathError(ValueError):
    """An id or output path that would leave its root (path traversal)."""


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it; both should be resolved."""
    return path == root or root in path.parents


def check_relative_id(rel: str, where: str) -> str:
    """``rel`` if it is a plain relative path (``"main/5535415699068794046/00001"``).

    Rejected: empty ids, absolute paths (``/x``, ``C:x``), backslashes (a separator on
    Windows), empty, ``.`` or ``..`` components and control characters.

    Args:
        rel: the id, ``/``-separated.
        where: what the error names: ``"<list file>:<line>"`` or the file found.

    Raises:
        UnsafePathError: the id could name a path outside its root.
    """
    problem = None
    if not rel:
        problem = "it is empty"
    elif rel.startswith("/") or _DRIVE.match(rel):
        problem = "it is an absolute path"
    elif "\\" in rel:
        problem = "it holds a backslash"
    elif any(ord(c) < 32 or ord(c) == 127 for c in rel):
        problem = "it holds a control character"
    elif "" in rel.split("/"):
        problem = "it has an empty path component"
    elif any(part in (".", "..") for part in rel.split("/")):
        problem = "it has a '.' or '..' component"
    if problem is not None:
        raise UnsafePathError(f"{where}: unsafe id {rel!r}: {problem}; ids must be relative "
                              "paths inside the corpus (e.g. '<video>/<utt>')")
    return rel


def read_id_list(path: str | Path) -> list[tuple[int, str]]:
    """(line number, id) of every non-blank line of an id list (first field of the line),
    each checked with :func:`check_relative_id`.

    Raises:
        UnsafePathError: a line's id is not a plain relative path (names file and line).
    """
    path = Path(path)
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            ids.append((n, check_relative_id(line.split()[0], f"{path}:{n}")))
    return ids


@dataclass(frozen=True)
class Clip:
    """One raw video to prepare.

    Attributes:
        id: output id, the path relative to the output root without suffix
            (``"trainval/spk001/00003"``); split pieces append ``_<i>``.
        split: the official split it belongs to (``pretrain``, ``trainval``, ``test``,
            ``main``, ``dev``...).
        video: the raw video file.
        transcript: its ``.txt`` or None.
        landmarks: its landmark file or None (none found).
    """

    id: str
    split: str
    video: Path
    transcript: Path | None
    landmarks: Path | None


def _landmark_file(root: Path | None, rel: str) -> Path | None:
    if root is None:
        return None
    for suffix in (".pkl", ".npy"):
        p = root / f"{rel}{suffix}"
        if p.is_file():
            return p
    return None


def _video(src: Path, folder: str, rel: str, where: str) -> Path:
    """``<src>/<folder>/<rel>.mp4`` once ``rel`` is known not to leave ``<src>/<folder>``.

    The folder itself may be a link (a split stored on another disk) and so may the mp4 (a
    git-annex / DVC cache); the folders in between may not lead out of it.
    """
    check_relative_id(rel, where)
    base = src / folder
    video = base / f"{rel}.mp4"
    target = video.parent.resolve()
    if not is_within(target, base.resolve()):
        raise UnsafePathError(f"{where}: id {rel!r} leads through a symbolic link to "
                              f"{target}, outside {base}")
    return video


def _clip(src: Path, landmarks: Path | None, video: Path, split: str) -> Clip:
    rel = video.relative_to(src).with_suffix("").as_posix()
    txt = video.with_suffix(".txt")
    return Clip(rel, split, video, txt if txt.is_file() else None, _landmark_file(landmarks, rel))


def _found(src: Path, split: str, pattern: str) -> list[Path]:
    """The videos ``pattern`` finds under ``<src>/<split>``, each id checked."""
    videos = []
    for v in sorted((src / split).glob(pattern)):
        rel = v.relative_to(src / split).with_suffix("").as_posix()
        videos.append(_video(src, split, rel, str(v)))
    return videos


def list_clips(corpus: str, src: str | Path, landmarks: str | Path | None = None,
               splits: list[str] | None = None, id_list: str | Path | None = None
               ) -> list[Clip]:
    """The clips of ``corpus`` under ``src``, sorted by id.

    Args:
        corpus: ``lrs3``, ``lrs2`` or ``vox2``.
        src: raw corpus root.
        landmarks: landmark root mirroring ``src`` (None: no landmark files).
        splits: splits to include (default: all of the corpus).
        id_list: VoxCeleb2 only: keep the clips listed (``<speaker>/<video>/<utt>`` tails).

    Raises:
        ValueError: unknown corpus or split.
        UnsafePathError: an id that could lead out of the corpus (``..``, absolute, a
            symbolic link out of the split...); names the list file and line.
        FileNotFoundError: ``src`` or a needed list file is missing.
    """
    src = Path(src)
    lm = Path(landmarks) if landmarks is not None else None
    if not src.is_dir():
        raise FileNotFoundError(f"raw corpus root not found: {src}")
    clips: list[Clip] = []
    if corpus == "lrs3":
        for split in splits or ["pretrain", "trainval", "test"]:
            if split not in ("pretrain", "trainval", "test"):
                raise ValueError(f"LRS3 splits are pretrain, trainval, test; got {split!r}")
            clips += [_clip(src, lm, v, split) for v in _found(src, split, "*/*.mp4")]
    elif corpus == "lrs2":
        for split in splits or ["pretrain", "train", "val", "test"]:
            if split not in ("pretrain", "train", "val", "test"):
                raise ValueError(f"LRS2 splits are pretrain, train, val, test; got {split!r}")
            listing = src / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"LRS2 list file not found: {listing}")
            sub = "pretrain" if split == "pretrain" else "main"
            for n, i in read_id_list(listing):
                video = _video(src, sub, i, f"{listing}:{n}")
                if video.is_file():
                    clips.append(_clip(src, lm, video, split))
    elif corpus == "vox2":
        wanted = None
        if id_list is not None:
            wanted = {"/".join(i.split("/")[-3:]) for _, i in read_id_list(id_list)}
        for split in splits or ["dev", "test"]:
            if split not in ("dev", "test"):
                raise ValueError(f"VoxCeleb2 splits are dev, test; got {split!r}")
            for v in _found(src, split, "**/*.mp4"):
                tail = "/".join(v.with_suffix("").parts[-3:])
                if wanted is None or tail in wanted:
                    clips.append(_clip(src, lm, v, split))
    else:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    return sorted(clips, key=lambda c: c.id)
