"""Audio-visual dataset over :class:`~avsr.data.corpora.Utterance` records, and its collate.

An item that cannot be used (unreadable, truncated or corrupt media, a missing stream, the
wrong frame rate, zero-length audio, audio and video of different lengths, media shorter than
its transcript's word timings, a missing, empty or unreadable transcript) is *skipped*:
``__getitem__`` returns None, logs a warning naming the file and the problem, and records it
in :attr:`AVDataset.report`. The collate drops Nones and lists the skipped items of the batch
under ``batch["skipped"]``, so skips that happen in DataLoader worker processes reach the main
process (:class:`avsr.data.loader.AVDataLoader` merges them into the main-process
report). Too many skips raise :class:`TooManyBadItemsError` instead of silently training on a
fraction of the data.

Transcripts with characters the tokenizer does not know are not skipped (their ``<unk>``
targets are still usable) but counted once when the dataset is built: one warning, and
``unknown_text`` in :attr:`AVDataset.skipped` names them (see
:func:`avsr.data.tokenizer.unknown_text`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from avsr.data.corpora import Utterance, normalize_text, transcript_problem
from avsr.data.io import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, MediaError, load_audio, load_video
from avsr.data.table import UtteranceTable
from avsr.data.tokenizer import unknown_text
from avsr.modalities import STREAMS

__all__ = ["AVDataset", "SkipReport", "TooManyBadItemsError", "collate_fn"]

log = logging.getLogger(__name__)

MODALITIES = STREAMS  # the streams an item may load

# unknown-text reports already warned about in this process: every noisy copy of a test set is
# a new dataset over the same transcripts, and one warning says it all
_WARNED_UNKNOWN: set[tuple[Any, ...]] = set()


class TooManyBadItemsError(RuntimeError):
    """More than ``max_bad_fraction`` of the items seen were skipped."""


class SkipReport:
    """Counts of items seen and skipped, with the skipped files and their problems.

    ``seen`` and ``skips`` count events (an item skipped every epoch counts every epoch, so
    ``fraction`` is a rate); ``items`` holds each skipped id once. ``unknown_text`` is the
    dataset's count of transcripts with ``<unk>`` tokens (None: not counted, no tokenizer).
    """

    def __init__(self) -> None:
        self.seen = 0
        self.skips = 0
        self.items: dict[str, tuple[str, str]] = {}  # id -> (path, problem)
        self.unknown_text: dict[str, Any] | None = None

    def record(self, uid: str, path: str, problem: str) -> bool:
        """Count one skip; returns True the first time ``uid`` is skipped."""
        self.skips += 1
        new = uid not in self.items
        self.items[uid] = (path, problem)
        return new

    def merge_batch(self, batch: dict[str, Any]) -> None:
        """Add the skips and items of a collated batch (produced in another process)."""
        skipped = batch.get("skipped", [])
        for s in skipped:
            self.record(s["id"], s["path"], s["problem"])
        self.seen += len(batch.get("ids", [])) + len(skipped)

    @property
    def fraction(self) -> float:
        return self.skips / self.seen if self.seen else 0.0

    def check(self, max_bad_fraction: float, min_items: int) -> None:
        """Raise :class:`TooManyBadItemsError` when the skip rate is too high.

        Args:
            max_bad_fraction: largest tolerated ``skips / seen``.
            min_items: no verdict before this many items were seen (a few bad files at the
                start of an epoch must not stop a run).
        """
        if self.seen >= max(1, min_items) and self.fraction > max_bad_fraction:
            raise TooManyBadItemsError(
                f"{self.skips} of {self.seen} items skipped ({self.fraction:.1%} > "
                f"max_bad_fraction {max_bad_fraction:.1%}); {self}")

    def summary(self) -> dict[str, Any]:
        """Plain dict for a run summary: counts, unique skipped per problem, file names."""
        problems = Counter(problem.split(" (")[0] for _, problem in self.items.values())
        summary = {
            "seen": self.seen,
            "skipped": self.skips,
            "skipped_unique": len(self.items),
            "by_problem": dict(sorted(problems.items())),
            "files": sorted(path for path, _ in self.items.values()),
        }
        if self.unknown_text is not None:
            summary["unknown_text"] = dict(self.unknown_text)
        return summary

    def __str__(self) -> str:
        s = self.summary()
        files = ", ".join(s["files"][:5]) + (" ..." if len(s["files"]) > 5 else "")
        return (f"skipped {s['skipped']} of {s['seen']} items ({s['skipped_unique']} unique) "
                f"by problem {s['by_problem']}: {files}")


class AVDataset(Dataset):
    """Decode, augment and tokenise utterances.

    Args:
        utterances: records from a corpus reader.
        tokenizer: object with ``encode(text) -> list[int]`` (a
            :class:`~avsr.data.tokenizer.Tokenizer`); None for unlabelled data (no tokens,
            empty transcripts allowed).
        video_transform: callable (T, H, W) uint8 -> (T, 1, H', W') float; None: scale to [0, 1].
        audio_transform: callable (S,) -> (S,); None: identity.
        modalities: which modalities to load. An utterance without a path for one of them
            gets None for it (the batch says so with length 0); a path that cannot be decoded
            (e.g. an mp4 without an audio stream when audio is requested) skips the item.
        noise: callable ``(audio (S,), key=utterance id) -> (S,)`` applied to the raw waveform
            before ``audio_transform`` (:class:`~avsr.data.noise.NoiseAugment` or
            :class:`~avsr.data.noise.FixedNoiseMixer`).
        max_bad_fraction: skip rate above which :class:`TooManyBadItemsError` is raised.
        cache: keep decoded media (uint8 video, float32 audio, before noise and transforms) in
            memory; with DataLoader workers call :meth:`preload` first so forked workers share
            it, otherwise every worker fills its own copy.
        min_items_for_check: items seen before the skip rate is judged.
        max_av_mismatch_s: largest tolerated difference between the audio and video durations
            of an item that has both (codec padding is a frame or two); beyond it the streams
            are not the same recording or one is cut, and the item is skipped. None: no check.
        max_text_overrun_s: how far the transcript's last word may end after the decoded media
            (video, else audio) of a labelled item before it is skipped: its transcript
            describes speech the media no longer holds (a cut file, or a cut that re-indexed
            it). Alignment times are rounded and segmenters round piece ends, hence a few
            frames of slack. None: no check.
        unknown_fraction: transcripts with a larger share of ``<unk>`` tokens are named apart
            in the ``unknown_text`` count.
        require_text: with a tokenizer, skip an item without a transcript. False: such an
            item loads with no tokens (the whole pool of a composed training set, whose
            unlabelled parts have none; self-supervised objectives ignore tokens).
        text_as_reference: the transcripts are references to score against, never labels
            (the unlabelled loader of semi-supervised training): an item carries no tokens
            and an empty ``text``, and its transcript under ``reference_text`` instead, so
            that nothing that reads ``texts`` or ``tokens`` can train on it. Which items load
            does not change.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: Any | None = None,
        video_transform: Callable[[Tensor], Tensor] | None = None,
        audio_transform: Callable[[Tensor], Tensor] | None = None,
        modalities: Sequence[str] = MODALITIES,
        noise: Callable[..., Tensor] | None = None,
        max_bad_fraction: float = 0.05,
        cache: bool = False,
        *,
        min_items_for_check: int = 20,
        max_av_mismatch_s: float | None = 0.4,
        max_text_overrun_s: float | None = 0.2,
        unknown_fraction: float = 0.1,
        require_text: bool = True,
        text_as_reference: bool = False,
    ) -> None:
        modalities = tuple(modalities)
        if not modalities or any(m not in MODALITIES for m in modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, "
                             f"got {modalities}")
        # a table stays a table: a list would build a record object per item (1 M: ~0.5 GB)
        self.utterances = (utterances if isinstance(utterances, UtteranceTable)
                           else list(utterances))
        self.tokenizer = tokenizer
        self.video_transform = video_transform
        self.audio_transform = audio_transform
        self.modalities = modalities
        self.noise = noise
        self.max_bad_fraction = max_bad_fraction
        self.min_items_for_check = min_items_for_check
        self.max_av_mismatch_s = max_av_mismatch_s
        self.max_text_overrun_s = max_text_overrun_s
        self.cache = cache
        self.require_text = require_text
        self.text_as_reference = text_as_reference
        self._cache: dict[int, tuple[Tensor | None, Tensor | None] | MediaError] = {}
        self.report = SkipReport()
        self._pending: list[dict[str, str]] = []  # skips since the last collate, this process
        if tokenizer is not None and getattr(tokenizer, "unk_id", None) is not None:
            self._count_unknown_text(unknown_fraction)

    def _count_unknown_text(self, max_fraction: float) -> None:
        """Count transcripts with ``<unk>`` tokens once, here: the count does not depend on
        workers or epochs, and a sentence encodes in microseconds (~1 s per 100k)."""
        utts = self.utterances
        pairs = (zip(utts.ids, utts.texts) if isinstance(utts, UtteranceTable)  # no records
                 else ((u.id, u.text) for u in utts))
        found = unknown_text(pairs, self.tokenizer, max_fraction=max_fraction)
        self.report.unknown_text = found
        key = (repr(self.tokenizer), len(self.utterances), *found["first_ids"])
        if not found["utterances"] or key in _WARNED_UNKNOWN:
            return
        _WARNED_UNKNOWN.add(key)
        log.warning(
            "%d of %d transcripts hold characters the tokenizer does not know (trained and "
            "scored as <unk>): first %s; %d are over %.0f%% <unk> tokens: %s",
            found["utterances"], len(self.utterances), found["first_ids"][:5],
            found["mostly_unknown"], 100 * max_fraction, found["mostly_unknown_ids"][:5])

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def skipped(self) -> dict[str, Any]:
        """Skip summary of this process (see :meth:`SkipReport.summary`)."""
        return self.report.summary()

    def _decode(self, utt: Utterance) -> tuple[Tensor | None, Tensor | None]:
        video = audio = None
        if "video" in self.modalities and utt.video_path is not None:
            video = load_video(utt.video_path)
        if "audio" in self.modalities and utt.audio_path is not None:
            audio = load_audio(utt.audio_path)
        return video, audio

    def load_media(self, index: int) -> tuple[Tensor | None, Tensor | None]:
        """Decoded (video (T, H, W) uint8, audio (S,) float32) of item ``index``, cached.

        Raises:
            MediaError: from :mod:`avsr.data.io` (also replayed from the cache).
        """
        if not self.cache:
            return self._decode(self.utterances[index])
        hit = self._cache.get(index)
        if hit is None:
            try:
                hit = self._decode(self.utterances[index])
            except MediaError as e:
                hit = e
            self._cache[index] = hit
        if isinstance(hit, MediaError):
            raise hit
        return hit

    def preload(self) -> None:
        """Decode every item into the cache now (needs ``cache=True``)."""
        if not self.cache:
            raise RuntimeError("preload() needs cache=True")
        for i in range(len(self)):
            try:
                self.load_media(i)
            except MediaError:
                pass  # replayed and reported when the item is requested

    def _skip(self, utt: Utterance, path: str | None, problem: str) -> None:
        path = path or utt.video_path or utt.audio_path or utt.id
        if self.report.record(utt.id, path, problem):
            log.warning("skipping %s: %s (%s)", utt.id, problem, path)
        self._pending.append({"id": utt.id, "path": path, "problem": problem})
        return None

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | None:
        """One item, or None when it is skipped.

        ``index`` may be ``(index, seed)`` (:class:`avsr.data.loading.SeededBatchSampler`):
        the item's random draws then come from a torch RNG seeded with ``seed``.

        Returns:
            dict with ``id``, ``text`` (normalised), ``tokens`` long (L,), ``video`` float
            (T, 1, H, W) or None, ``audio`` float (S,) or None (S = T × 640 when both exist);
            with ``text_as_reference``, ``text`` empty, no tokens and ``reference_text``.
        """
        if isinstance(index, tuple):  # worker-independent augmentation, see avsr.data.loading
            index, seed = index
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                item = self[index]
            if item is not None:  # device augmentation draws from it (batch["seeds"])
                item["seed"] = seed
            return item
        utt = self.utterances[index]
        self.report.seen += 1
        item = self._item(utt, index)
        self.report.check(self.max_bad_fraction, self.min_items_for_check)
        return item

    def _item(self, utt: Utterance, index: int) -> dict[str, Any] | None:
        text = normalize_text(utt.text)
        if self.tokenizer is not None and not text and self.require_text:
            media = utt.video_path or utt.audio_path
            txt = Path(media).with_suffix(".txt") if media else None
            # the corpus reader gave empty text; say why (missing, empty, no Text: line)
            problem = transcript_problem(txt) if txt is not None else "missing transcript"
            return self._skip(utt, str(txt) if txt else None, problem)
        try:
            video, audio = self.load_media(index)
        except MediaError as e:
            return self._skip(utt, e.path, e.problem)
        if video is None and audio is None:
            return self._skip(utt, None, f"none of the modalities {self.modalities}")
        if video is not None and audio is not None:
            video_s, audio_s = video.shape[0] / FPS, audio.numel() / SAMPLE_RATE
            limit = self.max_av_mismatch_s
            if limit is not None and abs(video_s - audio_s) > limit:
                return self._skip(utt, utt.video_path, "audio/video length mismatch "
                                  f"(audio {audio_s:.2f} s, video {video_s:.2f} s)")
        if self.tokenizer is not None and text and utt.num_frames is not None and (
                self.max_text_overrun_s is not None):  # timings matter only for used labels
            media_s = (video.shape[0] / FPS if video is not None
                       else audio.numel() / SAMPLE_RATE)
            text_s = utt.num_frames / FPS
            if text_s - media_s > self.max_text_overrun_s:
                return self._skip(utt, utt.video_path or utt.audio_path,
                                  "media shorter than transcript (words end at "
                                  f"{text_s:.2f} s, media has {media_s:.2f} s)")
        if video is not None and audio is not None:
            # the model pairs 640 samples with each frame: cut the codec tail or pad with silence
            target = video.shape[0] * SAMPLES_PER_FRAME
            audio = audio[:target] if audio.numel() >= target else torch.nn.functional.pad(
                audio, (0, target - audio.numel()))
        if audio is not None:
            if self.noise is not None:
                audio = self.noise(audio, key=utt.id)
            if self.audio_transform is not None:
                audio = self.audio_transform(audio)
        if video is not None:
            video = (self.video_transform(video) if self.video_transform is not None
                     else video.float().div(255.0).unsqueeze(1))
        if self.text_as_reference:  # a reference to score against, never a label
            return {"id": utt.id, "text": "", "tokens": torch.zeros(0, dtype=torch.long),
                    "reference_text": text, "video": video, "audio": audio}
        tokens = self.tokenizer.encode(text) if self.tokenizer is not None and text else []
        return {"id": utt.id, "text": text, "tokens": torch.tensor(tokens, dtype=torch.long),
                "video": video, "audio": audio}

    def collate(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        """:func:`collate_fn` plus ``skipped``: the items of this batch skipped in this process.

        Runs in the process that fetched the items (a worker, or the main process), right after
        them, so the pending skips are exactly this batch's.
        """
        batch = collate_fn(items)
        batch["skipped"], self._pending = self._pending, []
        if self.text_as_reference:  # also when every item of the batch was skipped
            batch.setdefault("reference_text", [])
        return batch


def _pad_stack(tensors: list[Tensor | None], lengths: list[int]) -> Tensor | None:
    """Stack (T, ...) tensors into (B, T_max, ...) zero-padded; None entries stay zero."""
    present = [t for t in tensors if t is not None]
    if not present:
        return None
    tail = present[0].shape[1:]
    for t in present:
        if t.shape[1:] != tail:
            raise ValueError(f"cannot batch items of shapes {tuple(present[0].shape)} and "
                             f"{tuple(t.shape)}")
    out = present[0].new_zeros((len(tensors), max(lengths), *tail))
    for b, t in enumerate(tensors):
        if t is not None:
            out[b, : t.shape[0]] = t
    return out


def collate_fn(items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Batch items of :class:`AVDataset`, dropping skipped ones (None).

    Returns:
        dict with ``video`` float (B, T, 1, H, W) or None when no item has video,
        ``video_lengths`` long (B,) (0 where absent), ``audio`` float (B, S) or None,
        ``audio_lengths`` long (B,), ``tokens`` long (B, L) padded with 0, ``token_lengths``
        long (B,), ``ids`` and ``texts`` (lists of B str), ``skipped`` (empty list here;
        :meth:`AVDataset.collate` fills it), when every item came with its loader seed,
        ``seeds`` long (B,), and when the items carry one, ``reference_text`` (list of B str;
        transcripts that are not labels, see ``text_as_reference``). B may be 0 when every
        item was skipped.
    """
    kept = [x for x in items if x is not None]
    videos = [x["video"] for x in kept]
    audios = [x["audio"] for x in kept]
    tokens = [x["tokens"] for x in kept]
    video_lengths = [0 if v is None else v.shape[0] for v in videos]
    audio_lengths = [0 if a is None else a.shape[0] for a in audios]
    token_lengths = [t.numel() for t in tokens]
    token_batch = _pad_stack(tokens, token_lengths) if tokens else None
    return {
        "video": _pad_stack(videos, video_lengths),
        "video_lengths": torch.tensor(video_lengths, dtype=torch.long),
        "audio": _pad_stack(audios, audio_lengths),
        "audio_lengths": torch.tensor(audio_lengths, dtype=torch.long),
        "tokens": token_batch if token_batch is not None else torch.zeros(0, 0, dtype=torch.long),
        "token_lengths": torch.tensor(token_lengths, dtype=torch.long),
        "ids": [x["id"] for x in kept],
        "texts": [x["text"] for x in kept],
        "skipped": [],
        **({"seeds": torch.tensor([x["seed"] for x in kept], dtype=torch.long)}
           if kept and all("seed" in x for x in kept) else {}),
        **({"reference_text": [x.get("reference_text", "") for x in kept]}
           if any("reference_text" in x for x in kept) else {}),
    }
