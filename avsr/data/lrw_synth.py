"""The synthetic word-level corpus: LRW-layout clips cut from the synthetic sentence corpus.

Every clip is ``num_frames`` (29) frames centred on one word of a sentence utterance, found
through the word timings of the LRS3-style ``.txt`` (``WORD START END ASDSCORE`` rows), and is
written with :func:`~avsr.data.io.write_mp4` as ``<out>/<WORD>/<split>/<WORD>_<NNNNN>.{mp4,txt}``
(the LRW layout, read by :class:`avsr.data.lrw.LRW`). Like LRW clips, a clip holds the
neighbouring words too; frames before the start or past the end of the utterance repeat its
first / last frame (the synthetic speakers are silent and still there) and the audio is padded
with silence.

The speaker split is kept: LRW ``train`` clips come from the sentence corpus's ``train`` split
(``trainval`` minus the validation speakers), ``val`` from ``val`` and ``test`` from ``test``,
so test words are spoken by unseen speakers.

Command line: ``python -m avsr.data.lrw_synth --source data/synthetic/grid --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from avsr.data.corpora import LRS3, Utterance
from avsr.data.io import FPS, SAMPLES_PER_FRAME, load_audio, load_video, write_mp4
from avsr.data.lrw import LRW, LRW_FRAMES, WordClip, clip_window

__all__ = ["read_word_timings", "extract_clip", "cut_word_corpus", "SyntheticWords", "main"]

_WORD = re.compile(r"^[A-Z]+$")  # folder-safe words only (no apostrophes)
_SPLITS = ("train", "val", "test")
_VERSION = 1


def read_word_timings(path: str | Path) -> list[tuple[str, float, float]]:
    """``(word, start_s, end_s)`` rows of an LRS3-style ``.txt`` (empty without a table)."""
    rows, in_table = [], False
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if line.strip().upper().startswith("WORD START END"):
            in_table = True
        elif in_table and len(fields) >= 3:
            try:
                rows.append((fields[0].upper(), float(fields[1]), float(fields[2])))
            except ValueError:
                continue
    return rows


def extract_clip(video: torch.Tensor | None, audio: torch.Tensor | None, start_s: float,
                 end_s: float, num_frames: int = LRW_FRAMES
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """Cut the ``num_frames`` window centred on the word ``[start_s, end_s]``.

    Args:
        video: (T, H, W) uint8 or None.
        audio: (S,) float at 16 kHz or None.
        start_s, end_s: word timing in seconds.
        num_frames: clip length (29 in LRW).

    Returns:
        (video (num_frames, H, W), audio (num_frames × 640,), first frame): out-of-range
        frames repeat the nearest frame, out-of-range audio is zero.
    """
    if end_s < start_s:
        raise ValueError(f"word ends ({end_s}) before it starts ({start_s})")
    first = clip_window((start_s + end_s) / 2.0, num_frames)
    clip_v = clip_a = None
    if video is not None:
        if video.ndim != 3:
            raise ValueError(f"video must be (T, H, W), got {tuple(video.shape)}")
        index = torch.arange(first, first + num_frames).clamp(0, video.shape[0] - 1)
        clip_v = video.index_select(0, index)
    if audio is not None:
        s0, n = first * SAMPLES_PER_FRAME, num_frames * SAMPLES_PER_FRAME
        clip_a = audio.new_zeros(n)
        lo, hi = max(0, s0), min(audio.numel(), s0 + n)
        if hi > lo:
            clip_a[lo - s0:hi - s0] = audio[lo:hi]
    return clip_v, clip_a, first


def _occurrences(corpus: LRS3, split: str) -> list[tuple[Utterance, int, str, float, float]]:
    out = []
    for utt in corpus.utterances(split):
        media = utt.video_path or utt.audio_path
        for k, (word, s, e) in enumerate(read_word_timings(Path(media).with_suffix(".txt"))):
            if _WORD.match(word) and e > s:
                out.append((utt, k, word, s, e))
    return out


def _write_txt(path: Path, word: str, duration: float, source: str, start: float,
               end: float) -> None:
    # LRW's line order: the Duration line is the 5th (mpc001's loaders read line index 4)
    path.write_text(f"Text: {word}\nConf: 5\n\nSource: {source} {start:.2f} {end:.2f}\n"
                    f"Duration: {duration:.2f} seconds\n")


def cut_word_corpus(source: str | Path, out_dir: str | Path, *, num_frames: int = LRW_FRAMES,
                    max_per_word: dict[str, int] | None = None, min_train_per_word: int = 10,
                    seed: int = 0, verbose: bool = False) -> dict[str, Any]:
    """Cut (or find complete) the word corpus of ``source`` into ``out_dir``.

    Args:
        source: root of a sentence corpus in LRS3 layout with word timings and a
            ``val_ids.txt`` (the synthetic corpus).
        out_dir: LRW-layout output root; ``corpus.json`` is written last (complete marker).
        num_frames: frames per clip.
        max_per_word: clips per word and split, drawn at random over the occurrences (so
            over speakers); default train 100, val 20, test 30.
        min_train_per_word: words with fewer training occurrences are not classes.
        seed: occurrence sampling seed.
        verbose: progress on stderr.

    Returns:
        The summary written to ``corpus.json`` (config, words, clip counts).

    Raises:
        ValueError: ``out_dir`` holds a word corpus cut with other arguments.
    """
    out = Path(out_dir)
    caps = {"train": 100, "val": 20, "test": 30, **(max_per_word or {})}
    config = {"version": _VERSION, "source": str(Path(source).resolve()), "seed": seed,
              "num_frames": num_frames, "max_per_word": caps,
              "min_train_per_word": min_train_per_word}
    meta = out / "corpus.json"
    if meta.is_file():
        summary = json.loads(meta.read_text())
        if summary.get("config") != config:
            raise ValueError(f"{out} holds a word corpus cut with {summary.get('config')}; "
                             f"requested {config}. Use another directory or delete it.")
        return summary
    start = time.time()
    corpus = LRS3(source)
    rng = random.Random(seed)
    found = {split: _occurrences(corpus, split) for split in _SPLITS}
    train_counts: dict[str, int] = defaultdict(int)
    for occ in found["train"]:
        train_counts[occ[2]] += 1
    words = sorted(w for w, n in train_counts.items() if n >= min_train_per_word)
    if not words:
        raise ValueError(f"{source}: no word has {min_train_per_word} training occurrences")
    chosen: list[tuple[str, Utterance, int, str, float, float]] = []
    for split in _SPLITS:
        by_word: dict[str, list] = defaultdict(list)
        for occ in found[split]:
            by_word[occ[2]].append(occ)
        for word in words:
            occs = by_word.get(word, [])
            rng.shuffle(occs)
            chosen += [(split, *o) for o in occs[:caps[split]]]
    marker = out / ".cutting"
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise ValueError(f"{out} exists and is not a word corpus: refusing to write there")
        shutil.rmtree(out)  # an interrupted cut (no corpus.json): start over
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()
    by_utt: dict[str, list] = defaultdict(list)
    for c in chosen:
        by_utt[c[1].id].append(c)
    numbers: dict[tuple[str, str], int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for k, uid in enumerate(sorted(by_utt)):
        utt = by_utt[uid][0][1]
        video = load_video(utt.video_path) if utt.video_path else None
        audio = load_audio(utt.audio_path) if utt.audio_path else None
        for split, _, _, word, s, e in sorted(by_utt[uid], key=lambda c: c[2]):
            clip_v, clip_a, _ = extract_clip(video, audio, s, e, num_frames)
            numbers[(word, split)] += 1
            stem = out / word / split / f"{word}_{numbers[(word, split)]:05d}"
            write_mp4(stem.with_suffix(".mp4"), clip_v, clip_a)
            _write_txt(stem.with_suffix(".txt"), word, e - s, uid, s, e)
            counts[split] += 1
        if verbose and (k + 1) % 200 == 0:
            print(f"[lrw_synth] {k + 1}/{len(by_utt)} utterances, {sum(counts.values())} "
                  f"clips, {time.time() - start:.1f} s", file=sys.stderr, flush=True)
    summary = {"config": config, "complete": True, "words": words,
               "counts": {s: counts[s] for s in _SPLITS}, "utterances_read": len(by_utt),
               "fps": FPS, "elapsed_s": round(time.time() - start, 1)}
    meta.write_text(json.dumps(summary, indent=1))
    marker.unlink()
    return summary


class SyntheticWords:
    """Corpus object of the synthetic word corpus: cut on :meth:`prepare`, then an :class:`LRW`.

    Args:
        root: the synthetic SENTENCE corpus (LRS3 layout) the words are cut from.
        out_dir: where the LRW-layout word corpus goes (default ``<root>_words<num_frames>``).
        **cut_kwargs: :func:`cut_word_corpus` arguments.
    """

    def __init__(self, root: str | Path, out_dir: str | Path | None = None,
                 **cut_kwargs: Any) -> None:
        self.root = Path(root)
        frames = cut_kwargs.get("num_frames", LRW_FRAMES)
        self.out_dir = Path(out_dir) if out_dir else self.root.with_name(
            f"{self.root.name}_words{frames}")
        self.cut_kwargs = cut_kwargs
        self._lrw: LRW | None = None

    def prepare(self) -> None:
        """Cut the clips unless the word corpus is complete (idempotent)."""
        if self._lrw is None:
            cut_word_corpus(self.root, self.out_dir, **self.cut_kwargs)
            self._lrw = LRW(self.out_dir, self.cut_kwargs.get("num_frames", LRW_FRAMES))

    def words(self) -> list[str]:
        self.prepare()
        return self._lrw.words()

    def utterances(self, split: str) -> list[WordClip]:
        self.prepare()
        return self._lrw.utterances(split)


def main(argv: list[str] | None = None) -> int:
    """``python -m avsr.data.lrw_synth --source DIR --out DIR``: cut the word corpus."""
    p = argparse.ArgumentParser(
        prog="python -m avsr.data.lrw_synth",
        description="Cut LRW-layout word clips (29 frames centred on a word) from the synthetic "
                    "sentence corpus, keeping its speaker split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", required=True, help="sentence corpus root (LRS3 layout)")
    p.add_argument("--out", required=True, help="word corpus root (LRW layout)")
    p.add_argument("--frames", type=int, default=LRW_FRAMES, help="frames per clip")
    p.add_argument("--train-per-word", type=int, default=100)
    p.add_argument("--val-per-word", type=int, default=20)
    p.add_argument("--test-per-word", type=int, default=30)
    p.add_argument("--min-train-per-word", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    summary = cut_word_corpus(
        args.source, args.out, num_frames=args.frames, seed=args.seed,
        max_per_word={"train": args.train_per_word, "val": args.val_per_word,
                      "test": args.test_per_word},
        min_train_per_word=args.min_train_per_word, verbose=True)
    print(json.dumps({"out": args.out, "words": len(summary["words"]), **summary["counts"],
                      "elapsed_s": summary.get("elapsed_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
