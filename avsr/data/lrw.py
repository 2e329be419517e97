"""LRW (Lip Reading in the Wild) word-level corpus: reader, dataset and data module.

Official layout (Chung & Zisserman, ACCV 2016): ``<root>/<WORD>/{train,val,test}/
<WORD>_<id>.mp4`` (29 frames at 25 fps, the word in the middle) with a sibling ``.txt``::

    Text: ABOUT
    Conf: 5
    <blank line>
    ...
    Duration: 0.43 seconds

The ``Duration`` line is the duration of the word; as in the LRW literature (Ma et al.,
"Training Strategies for Improved Lip-Reading", ICASSP 2022, and mpc001's
Lipreading_using_Temporal_Convolutional_Networks) it gives a *word boundary*: a per-frame
0/1 indicator of the frames the word covers around the centre frame, an optional model input.

Clips go through the same media io (:mod:`avsr.data.io`) and transforms
(:mod:`avsr.data.transforms`) as the sentence corpora: :class:`WordDataset` is an
:class:`~avsr.data.dataset.AVDataset` whose "tokenizer" is the :class:`WordVocabulary` (a word
encodes to its class index), so skipping, caching and audio/video alignment are shared.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avsr.data.corpora import Utterance, normalize_text
from avsr.data.datamodule import AVDataModule
from avsr.data.dataset import AVDataset
from avsr.data.io import FPS, SAMPLES_PER_FRAME

__all__ = ["LRW", "WordClip", "WordVocabulary", "WordDataset", "WordDataModule",
           "read_word_info", "word_boundary", "clip_window", "LRW_FRAMES"]

log = logging.getLogger(__name__)

LRW_FRAMES = 29  # every LRW clip: 1.16 s at 25 fps, the word centred
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WordClip(Utterance):
    """An LRW clip: an :class:`~avsr.data.corpora.Utterance` whose ``text`` is the word.

    Attributes:
        duration: the word's duration in seconds from the ``Duration:`` line (None: absent).
    """

    duration: float | None = None


def read_word_info(path: str | Path) -> tuple[str, float | None]:
    """Read an LRW ``.txt``: the word of the ``Text:`` line and the ``Duration:`` seconds.

    Raises:
        ValueError: no ``Text:`` line, or a ``Duration:`` line that is not a number.
    """
    text: str | None = None
    duration: float | None = None
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        s = line.strip()
        if text is None and s.startswith("Text:"):
            text = normalize_text(s[len("Text:"):])
        elif s.startswith("Duration:"):
            fields = s[len("Duration:"):].split()
            try:
                duration = float(fields[0])
            except (IndexError, ValueError) as e:
                raise ValueError(f"{path}: bad Duration line {s!r}") from e
    if text is None:
        raise ValueError(f"{path}: no 'Text:' line")
    return text, duration


def word_boundary(duration: float | None, num_frames: int) -> torch.Tensor:
    """Per-frame word indicator of a clip whose word is centred (LRW convention).

    As mpc001's LRW loader: centre index ``(T - 1) // 2``, half width
    ``int(duration / 2 × 25)`` frames, and one more frame on each side.

    Args:
        duration: word duration in seconds; None marks every frame (no information).
        num_frames: T.

    Returns:
        (T,) float tensor of 0 and 1.
    """
    boundary = torch.zeros(num_frames)
    if duration is None:
        return boundary.fill_(1.0)
    half = int(duration / 2.0 * FPS)
    mid = (num_frames - 1) // 2
    boundary[max(0, mid - half - 1):min(mid + half + 1, num_frames)] = 1.0
    return boundary


class LRW:
    """Reader of the official LRW layout (also the synthetic word corpus, same layout).

    Args:
        root: directory holding one folder per word.
        num_frames: clip length used for the sampler (29 for LRW; clips are not probed).

    Splits: ``train``, ``val``, ``test``. :meth:`words` lists the word folders (sorted, the
    usual class order: mpc001's ``500WordsSortedList.txt`` is the sorted folder names).
    """

    SPLITS = SPLITS

    def __init__(self, root: str | Path, num_frames: int = LRW_FRAMES) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"LRW root not found: {self.root}")
        self.num_frames = num_frames
        self._cache: dict[str, list[WordClip]] = {}

    def __repr__(self) -> str:
        return f"LRW(root={str(self.root)!r})"

    def words(self) -> list[str]:
        """Word folder names, sorted."""
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and any((p / s).is_dir() for s in SPLITS))

    def utterances(self, split: str) -> list[WordClip]:
        """Clips of ``split``, sorted by id (``ABOUT/train/ABOUT_00001``).

        The label is the folder name; a ``.txt`` whose ``Text:`` disagrees is an error.

        Raises:
            ValueError: unknown split, or a transcript naming another word.
            FileNotFoundError: no word folder has the split.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown LRW split {split!r}; expected one of {SPLITS}")
        if split not in self._cache:
            clips = []
            for word in self.words():
                folder = self.root / word / split
                if not folder.is_dir():
                    continue
                files = set(folder.iterdir())
                for mp4 in sorted(p for p in files if p.suffix == ".mp4"):
                    txt = mp4.with_suffix(".txt")
                    text, duration = read_word_info(txt) if txt in files else (word, None)
                    if text != normalize_text(word):
                        raise ValueError(f"{txt}: Text {text!r} but the folder is {word!r}")
                    clips.append(WordClip(
                        id=mp4.with_suffix("").relative_to(self.root).as_posix(),
                        video_path=str(mp4), audio_path=str(mp4), text=word,
                        num_frames=self.num_frames, duration=duration))
            if not clips:
                raise FileNotFoundError(f"no LRW clips of split '{split}' under {self.root}")
            self._cache[split] = clips
        return list(self._cache[split])


class WordVocabulary:
    """Word classes; plays the tokenizer's part for the word-classification stage.

    Args:
        words: class names in class-index order.

    ``encode(word) -> [index]`` (so :class:`~avsr.data.dataset.AVDataset` produces the label
    as a one-token target), ``decode([index]) -> word``; ``vocab_size`` = number of classes.
    """

    def __init__(self, words: Sequence[str]) -> None:
        self.words = [normalize_text(w) for w in words]
        if len(set(self.words)) != len(self.words) or not self.words:
            raise ValueError(f"word list must be non-empty and unique, got {len(self.words)}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        word = normalize_text(text)
        if word not in self.index:
            raise KeyError(f"word {word!r} is not one of the {self.vocab_size} classes")
        return [self.index[word]]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[int(i)] for i in ids)


class WordDataset(AVDataset):
    """:class:`~avsr.data.dataset.AVDataset` of :class:`WordClip` s with labels and boundaries.

    Items add ``label`` (int) and ``boundary`` (T,) float (:func:`word_boundary`, T = video
    frames, or audio samples // 640 without video). Batches add ``labels`` long (B,) and
    ``boundaries`` float (B, T) zero-padded.
    """

    def _item(self, utt: Utterance, index: int) -> dict[str, Any] | None:
        item = super()._item(utt, index)
        if item is None:
            return None
        frames = (item["video"].shape[0] if item["video"] is not None
                  else item["audio"].numel() // SAMPLES_PER_FRAME)
        item["label"] = int(item["tokens"][0]) if item["tokens"].numel() else -1
        item["boundary"] = word_boundary(getattr(utt, "duration", None), frames)
        return item

    def collate(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        batch = super().collate(items)
        kept = [x for x in items if x is not None]
        length = max((x["boundary"].numel() for x in kept), default=0)
        boundaries = torch.zeros(len(kept), length)
        for b, x in enumerate(kept):
            boundaries[b, :x["boundary"].numel()] = x["boundary"]
        batch["labels"] = torch.tensor([x["label"] for x in kept], dtype=torch.long)
        batch["boundaries"] = boundaries
        return batch


class WordDataModule(AVDataModule):
    """:class:`~avsr.data.datamodule.AVDataModule` over a word corpus (:class:`LRW`).

    Everything (frame-budget sampler, transforms, noise, caching, skip reports) is the
    sentence data module's; the "tokenizer" is a :class:`WordVocabulary`.

    Args:
        corpus: an :class:`LRW` reader, or any object with ``utterances(split)`` and
            ``words()``; an optional ``prepare()`` is called first (the synthetic word corpus
            cuts its clips there).
        tokenizer_path: optional class list (one word per line, the class order, e.g. LRW's
            ``500WordsSortedList.txt``); None or a missing file: ``corpus.words()``.
        vocab_size: expected number of classes, checked when given (None: any).
        **kwargs: :class:`~avsr.data.datamodule.AVDataModule` arguments.
    """

    dataset_class = WordDataset

    def __init__(self, *, corpus: Any, tokenizer_path: str | Path | None = None,
                 vocab_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(corpus=corpus, tokenizer_path=tokenizer_path or "", vocab_size=0,
                         **kwargs)
        self.class_list = Path(tokenizer_path) if tokenizer_path else None
        self.expected_classes = vocab_size

    def prepare_data(self) -> None:
        prepare = getattr(self.corpus, "prepare", None)
        if callable(prepare):
            prepare()

    def load_tokenizer(self) -> WordVocabulary:
        if self.tokenizer is None:
            self.prepare_data()
            if self.class_list is not None and self.class_list.is_file():
                words = [w.strip() for w in self.class_list.read_text().splitlines()
                         if w.strip()]
            else:
                words = self.corpus.words()
            vocab = WordVocabulary(words)
            if self.expected_classes and vocab.vocab_size != self.expected_classes:
                raise ValueError(f"{vocab.vocab_size} word classes, expected "
                                 f"{self.expected_classes} (data.vocab_size)")
            self.tokenizer = vocab
        return self.tokenizer

    def _utterances(self, role: str) -> list[Utterance]:
        # word corpora have no labelled / unlabelled split
        return self.corpus.utterances(self.splits[role])


def clip_window(centre_s: float, num_frames: int = LRW_FRAMES) -> int:
    """First frame of the ``num_frames`` window whose middle frame holds time ``centre_s``.

    Frame ``i`` covers ``[i / 25, (i + 1) / 25)``; the middle frame is ``(T - 1) // 2``.
    The result may be negative or run past the media: the caller pads.
    """
    return math.floor(centre_s * FPS) - (num_frames - 1) // 2
