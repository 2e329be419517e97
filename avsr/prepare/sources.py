"""The raw corpora as lists of clips to prepare: LRS3, LRS2 and VoxCeleb2 official layouts.

- LRS3: ``<src>/{pretrain,trainval,test}/<speaker>/<utt>.{mp4,txt}``.
- LRS2: ``<src>/{main,pretrain}/<video>/<utt>.{mp4,txt}`` with the official lists
  ``<src>/{pretrain,train,val,test}.txt``.
- VoxCeleb2: ``<src>/<dev|test>/mp4/<speaker>/<video>/<utt>.mp4``, no transcripts; optionally
  restricted to an id list (AV-HuBERT's English ``vox-en.id``), matched on the last three
  path components (``<speaker>/<video>/<utt>``).

Landmark files mirror the video paths under the landmark root, ``.pkl`` or ``.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Clip", "list_clips", "CORPORA", "LONG_SPLITS"]

CORPORA = ("lrs3", "lrs2", "vox2")
LONG_SPLITS = ("pretrain",)  # splits whose long utterances are cut at word gaps


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


def _clip(src: Path, landmarks: Path | None, video: Path, split: str) -> Clip:
    rel = video.relative_to(src).with_suffix("").as_posix()
    txt = video.with_suffix(".txt")
    return Clip(rel, split, video, txt if txt.is_file() else None, _landmark_file(landmarks, rel))


def _read_ids(path: Path) -> list[str]:
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


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
            clips += [_clip(src, lm, v, split) for v in sorted((src / split).glob("*/*.mp4"))]
    elif corpus == "lrs2":
        for split in splits or ["pretrain", "train", "val", "test"]:
            if split not in ("pretrain", "train", "val", "test"):
                raise ValueError(f"LRS2 splits are pretrain, train, val, test; got {split!r}")
            listing = src / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"LRS2 list file not found: {listing}")
            sub = "pretrain" if split == "pretrain" else "main"
            for i in _read_ids(listing):
                video = src / sub / f"{i}.mp4"
                if video.is_file():
                    clips.append(_clip(src, lm, video, split))
    elif corpus == "vox2":
        wanted = None
        if id_list is not None:
            wanted = {"/".join(i.split("/")[-3:]) for i in _read_ids(Path(id_list))}
        for split in splits or ["dev", "test"]:
            for v in sorted((src / split).glob("**/*.mp4")):
                tail = "/".join(v.with_suffix("").parts[-3:])
                if wanted is None or tail in wanted:
                    clips.append(_clip(src, lm, v, split))
    else:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    return sorted(clips, key=lambda c: c.id)
