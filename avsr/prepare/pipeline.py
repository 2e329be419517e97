"""Raw video -> stored form: 96 x 96 gray mouth crops at 25 fps (mp4), 16 kHz mono wav, LRS
``.txt``, in the official layout under the output root, one clip per worker task.

Per clip: landmarks read, gaps interpolated, smoothed; frames warped to the mean face and
cropped (:mod:`avsr.prepare.crop`); ``pretrain`` utterances cut at word gaps
(:mod:`avsr.prepare.segments`); each piece written as ``<id>.wav``, ``<id>.txt`` and, last,
``<id>.mp4``, every file under a temporary name then renamed, so a piece whose mp4 exists is
complete. A rerun skips complete pieces (resumable, idempotent). Clips whose landmarks cover
too few frames are skipped and counted, never cropped at a guessed place.

A clip without a landmark file is detected when ``PrepareOptions.detector`` names a backend
(:mod:`avsr.prepare.detect`): the detected landmarks are cached as ``<out>/<id>.landmarks.npy``
((T, 68, 2), NaN rows where no face was found, readable by
:func:`~avsr.prepare.landmarks.read_landmarks`), so a rerun does not detect again, and then
go through the same gap filling, smoothing and crop as landmarks read from a file.

Every output path is checked to resolve inside the output root before anything is written
(:class:`~avsr.prepare.sources.UnsafePathError` stops the run): the sources already refuse ids
that could leave it, this is the last line of defence (e.g. a link inside ``out``).

The run writes ``<out>/index.tsv`` (id, split, frames, samples, text of every stored piece;
the manifests are built from it) and ``<out>/prepare_summary.json``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import wave
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from avsr.data.io import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, MediaError, load_audio, load_video
from avsr.data.io import probe, write_mp4
from avsr.prepare.crop import crop_mouths
from avsr.prepare.detect.base import frame_ranges
from avsr.prepare.landmarks import interpolate_landmarks, mean_face, read_landmarks
from avsr.prepare.landmarks import smooth_landmarks
from avsr.prepare.segments import MAX_DURATION, MIN_GAP, Segment, Transcript
from avsr.prepare.segments import format_transcript, read_timed_transcript, split_long
from avsr.prepare.sources import LONG_SPLITS, Clip, UnsafePathError, check_relative_id
from avsr.prepare.sources import is_within, list_clips

__all__ = ["PrepareOptions", "Piece", "ClipResult", "prepare_clip", "prepare_corpus",
           "read_index", "write_wav"]

log = logging.getLogger(__name__)

STATUSES = ("written", "exists", "too_few_landmarks", "no_landmarks", "failed")


@dataclass
class PrepareOptions:
    """Settings of the mouth-ROI pipeline (defaults: auto_avsr / AV-HuBERT values).

    Attributes:
        mean_face: (68, 2) reference face in a 256 x 256 frame (None: avsr's
            :func:`~avsr.prepare.landmarks.mean_face`).
        crop_size: side of the stored crop (96).
        smooth_window: landmark smoothing window in frames (12).
        min_landmark_fraction: a clip whose frames have landmarks less often than this is
            skipped as ``too_few_landmarks`` (ours; auto_avsr only drops clips with none).
        max_duration, min_gap: the long-utterance rule of :func:`split_long`.
        split_long_splits: splits whose utterances are cut (``pretrain``).
        detector: landmark detector for clips without a landmark file (a name of
            :data:`avsr.prepare.detect.DETECTORS`, e.g. ``"mediapipe"``); None: such clips are
            skipped as ``no_landmarks``.
    """

    mean_face: np.ndarray | None = None
    crop_size: int = 96
    smooth_window: int = 12
    min_landmark_fraction: float = 0.5
    max_duration: float = MAX_DURATION
    min_gap: float = MIN_GAP
    split_long_splits: tuple[str, ...] = LONG_SPLITS
    detector: str | None = None


@dataclass(frozen=True)
class Piece:
    """A stored utterance: its id, split, video frames, audio samples and text."""

    id: str
    split: str
    frames: int
    samples: int
    text: str


@dataclass
class ClipResult:
    clip: str
    status: str
    pieces: list[Piece] = field(default_factory=list)
    message: str = ""


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM mono wav atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".part")
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _segments(clip: Clip, opts: PrepareOptions) -> tuple[Transcript | None, list[Segment]]:
    if clip.transcript is None:
        return None, [Segment("", 0.0, None, "")]
    tr = read_timed_transcript(clip.transcript)
    if clip.split in opts.split_long_splits:
        return tr, split_long(tr, opts.max_duration, opts.min_gap)
    return tr, [Segment("", 0.0, None, tr.text, tr.words)]


def output_stem(out: Path, piece_id: str) -> Path:
    """``<out>/<piece_id>``, the stem of a piece's files, proven to stay inside ``out``.

    Raises:
        UnsafePathError: ``piece_id`` is not a plain relative path, or the stem resolves
            (through a symbolic link) outside ``out``.
    """
    check_relative_id(piece_id, f"output id under {out}")
    stem = out / piece_id
    target = stem.resolve()
    if not is_within(target, out.resolve()):
        raise UnsafePathError(f"output {stem} resolves to {target}, outside --out {out}")
    return stem


def _existing(out: Path, clip: Clip, segments: list[Segment]) -> list[Piece] | None:
    pieces = []
    for seg in segments:
        stem = output_stem(out, f"{clip.id}{seg.suffix}")
        mp4, wav = stem.with_suffix(".mp4"), stem.with_suffix(".wav")
        if not (mp4.is_file() and wav.is_file()):
            return None
        with wave.open(str(wav), "rb") as w:
            samples = w.getnframes()
        pieces.append(Piece(f"{clip.id}{seg.suffix}", clip.split,
                            samples // SAMPLES_PER_FRAME, samples, seg.text))
    return pieces


def _read_frames(path: Path) -> np.ndarray:
    frames = load_video(path, expected_fps=None).numpy()  # (T, H, W) gray
    fps = probe(path).get("fps") or FPS
    if abs(fps - FPS) > 0.01:  # nearest source frame for every 25 fps instant
        n = int(len(frames) * FPS / fps)
        frames = frames[np.minimum(np.round(np.arange(n) * fps / FPS).astype(int),
                                   len(frames) - 1)]
    return frames


def _detected_landmarks(clip: Clip, out: Path, opts: PrepareOptions
                        ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Gray frames at 25 fps and their detected landmarks, from the cache when present."""
    from avsr.prepare.detect import detect_video

    stem = output_stem(out, clip.id)
    cache = stem.with_name(stem.name + ".landmarks.npy")
    if cache.is_file():
        frames = _read_frames(clip.video)
        return frames, read_landmarks(cache)
    frames, marks, _ = detect_video(clip.video, opts.detector)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".part")
    with tmp.open("wb") as f:  # np.save on a name would append ".npy" to the temporary name
        np.save(f, np.stack([np.full((68, 2), np.nan) if m is None else m for m in marks]))
    tmp.replace(cache)
    return frames, marks


def prepare_clip(clip: Clip, out: str | Path, opts: PrepareOptions) -> ClipResult:
    """Prepare one raw clip into its stored piece(s) under ``out``; never raises for a bad
    clip (the result says what happened).

    Raises:
        UnsafePathError: an output path would leave ``out`` (never a per-clip failure).
    """
    out = Path(out)
    try:
        transcript, segments = _segments(clip, opts)
        done = _existing(out, clip, segments)
        if done is not None:
            return ClipResult(clip.id, "exists", done)
        if clip.landmarks is not None:
            frames = _read_frames(clip.video)
            marks = read_landmarks(clip.landmarks)
        elif opts.detector is not None:
            frames, marks = _detected_landmarks(clip, out, opts)
        else:
            return ClipResult(clip.id, "no_landmarks", message="no landmark file")
        n = len(frames)
        marks = (marks + [None] * n)[:n]  # a detector may have stopped a frame early
        found = sum(m is not None for m in marks)
        if found == 0 or found < opts.min_landmark_fraction * n:
            missing = frame_ranges([m is None for m in marks])
            return ClipResult(clip.id, "too_few_landmarks",
                              message=f"landmarks in {found} of {n} frames (none in frames "
                                      f"{missing})")
        dense = smooth_landmarks(interpolate_landmarks(marks), opts.smooth_window)
        reference = opts.mean_face if opts.mean_face is not None else mean_face()
        crops = crop_mouths(frames, dense, reference, size=opts.crop_size)
        audio = load_audio(clip.video, SAMPLE_RATE).numpy()
        audio = np.pad(audio, (0, max(0, n * SAMPLES_PER_FRAME - len(audio))))
        pieces = []
        for seg in segments:
            f0 = int(seg.start * FPS)
            f1 = n if seg.end is None else min(int(seg.end * FPS), n)
            if f1 <= f0:
                continue
            stem = output_stem(out, f"{clip.id}{seg.suffix}")
            stem.parent.mkdir(parents=True, exist_ok=True)
            samples = audio[f0 * SAMPLES_PER_FRAME:f1 * SAMPLES_PER_FRAME]
            write_wav(stem.with_suffix(".wav"), samples)
            if transcript is not None:
                _write_text(stem.with_suffix(".txt"),
                            format_transcript(seg.text, transcript.conf, seg.words))
            write_mp4(stem.with_suffix(".mp4"), crops[f0:f1])  # last: marks the piece done
            pieces.append(Piece(f"{clip.id}{seg.suffix}", clip.split, f1 - f0, len(samples),
                                seg.text))
        return ClipResult(clip.id, "written", pieces)
    except UnsafePathError:
        raise  # hostile input, not a bad clip: stop the run
    except (MediaError, ValueError, OSError) as e:
        return ClipResult(clip.id, "failed", message=str(e))


def read_index(root: str | Path) -> list[Piece]:
    """The pieces recorded in ``<root>/index.tsv``.

    Raises:
        UnsafePathError: an id is not a plain relative path (names the file and line).
    """
    path = Path(root) / "index.tsv"
    pieces = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], 2):
        pid, split, frames, samples, text = line.split("\t")
        check_relative_id(pid, f"{path}:{n}")
        pieces.append(Piece(pid, split, int(frames), int(samples), text))
    return pieces


def prepare_corpus(
    corpus: str,
    src: str | Path,
    out: str | Path,
    *,
    landmarks: str | Path | None = None,
    splits: list[str] | None = None,
    id_list: str | Path | None = None,
    workers: int = 1,
    options: PrepareOptions | None = None,
    progress: bool = True,
) -> dict:
    """Prepare every clip of a raw corpus in parallel (``workers`` processes) with a progress
    bar; returns (and writes) the summary: counts per status and the skipped clips.

    Raises:
        UnsafePathError: an id or output path that would leave ``out``, found before any clip
            is written (see :func:`~avsr.prepare.sources.list_clips`).
    """
    from tqdm import tqdm

    out = Path(out)
    opts = options or PrepareOptions()
    clips = list_clips(corpus, src, landmarks, splits, id_list)  # checks every id first
    out.mkdir(parents=True, exist_ok=True)
    for c in clips:  # and every destination, before the first write
        output_stem(out, c.id)
    job = partial(prepare_clip, out=out, opts=opts)
    results: list[ClipResult] = []
    bar = tqdm(total=len(clips), desc=f"prepare {corpus}", unit="clip", disable=not progress)
    if workers > 1:
        # fork: workers inherit the imported modules (spawn re-imports torch per worker)
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            for r in pool.imap_unordered(job, clips, chunksize=4):
                results.append(r)
                bar.update()
    else:
        for c in clips:
            results.append(job(c))
            bar.update()
    bar.close()
    results.sort(key=lambda r: r.clip)
    pieces = [p for r in results for p in r.pieces]
    lines = ["id\tsplit\tframes\tsamples\ttext"]
    lines += [f"{p.id}\t{p.split}\t{p.frames}\t{p.samples}\t{p.text}" for p in pieces]
    _write_text(out / "index.tsv", "\n".join(lines) + "\n")
    if corpus == "lrs2":  # the official list files, with the ids of the stored pieces
        for split in sorted({p.split for p in pieces}):
            ids = [p.id.split("/", 1)[1] for p in pieces if p.split == split]
            _write_text(out / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    counts = Counter(r.status for r in results)
    summary = {
        "corpus": corpus, "clips": len(clips), "pieces": len(pieces),
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "hours": round(sum(p.frames for p in pieces) / FPS / 3600, 3),
        "skipped": [{"clip": r.clip, "status": r.status, "message": r.message}
                    for r in results if r.status not in ("written", "exists")],
        "options": {k: v for k, v in asdict(opts).items() if k != "mean_face"},
    }
    _write_text(out / "prepare_summary.json", json.dumps(summary, indent=2))
    bad = len(summary["skipped"])
    log.info("prepared %d clips (%s); %d skipped, see %s", len(clips), summary["counts"], bad,
             out / "prepare_summary.json")
    return summary
