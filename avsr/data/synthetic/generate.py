"""Orchestration: plan the corpus, synthesise utterances, write them in LRS3 layout.

Every utterance is a pure function of ``(seed, split, index)`` and the speakers (themselves a
function of the seed and the speaker counts), so the corpus does not depend on the number of
workers or their scheduling, and an interrupted run resumes where it stopped: an utterance
whose ``.mp4`` and ``.txt`` both exist is skipped (the ``.txt`` is written last, atomically).

The evaluation protocol the corpus enforces (benchmarks/README.md, "Protocol"; checks in
:mod:`.protocol`): held-out speakers beyond the jitter of training speakers, no val/test
sentence in training (training is generated first; such sentences are redrawn), a ``babble/``
split of other speakers for the test babble, and ``test_seed`` for a fresh held-out test set.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, write_mp4
from .engine import get_engine
from .render import render_frames, sample_motion
from .protocol import link_reused, protocol_summary, write_json, write_wav
from .speakers import PITCH_JITTER, RATE_JITTER, Speaker, sample_speakers
from .text import DOMAINS, Sentence, sample_sentence
from .visemes import trajectory

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "SyntheticUtterance",
    "PlannedUtterance",
    "plan_corpus",
    "synthesize_utterance",
    "format_transcript",
    "generate_corpus",
]

# 2: babble/ split, held-out speakers beyond the jitter, test/val sentences not in training
GENERATOR_VERSION = 2
SPLITS = ("train", "val", "test", "babble")
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3, "babble": 4}
_SPLIT_DIR = {"train": "trainval", "val": "trainval", "test": "test", "babble": "babble"}
_MAX_TEXT_TRIES = 20
_MAX_EXCLUDED = 10_000  # redraws of sentences already in training before giving up
_PENDING = "corpus.pending.json"


@dataclass(frozen=True)
class PlannedUtterance:
    """Where one utterance goes: its split, index within the split, speaker and id."""

    split: str
    index: int
    speaker: Speaker
    id: str  # "trainval/spk0003/00012"


@dataclass(frozen=True)
class SyntheticUtterance:
    """One generated utterance before encoding.

    Attributes:
        id: corpus id (path without suffix relative to the root).
        sentence: the spoken sentence.
        video: (T, 96, 96, 3) uint8 RGB frames at 25 fps.
        audio: (T * 640,) float32 at 16 kHz.
        words: (word, start s, end s) per transcript word, relative to the clip start.
        phonemes: (mnemonic, start s, end s) relative to the clip start, pauses included.
        params: (T, 5) articulation parameters the frames were drawn from.
    """

    id: str
    sentence: Sentence
    video: np.ndarray
    audio: np.ndarray
    words: list[tuple[str, float, float]]
    phonemes: list[tuple[str, float, float]]
    params: np.ndarray

    @property
    def num_frames(self) -> int:
        """T, the number of video frames."""
        return int(self.video.shape[0])


def plan_corpus(seed: int, num_train: int, num_val: int, num_test: int,
                speakers: dict[str, list[Speaker]], num_babble: int = 0
                ) -> list[PlannedUtterance]:
    """Assign every utterance of every split to a speaker (round robin) and an id."""
    plan = []
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test),
                         ("babble", num_babble)):
        spk = speakers.get(split, [])
        if count > 0 and not spk:
            raise ValueError(f"{count} {split} utterances requested but no {split} speakers")
        for i in range(count):
            s = spk[i % len(spk)]
            uid = f"{_SPLIT_DIR[split]}/{s.id}/{i // len(spk):05d}"
            plan.append(PlannedUtterance(split, i, s, uid))
    return plan


_RESAMPLERS: dict[tuple[int, int], object] = {}


def _resample(audio: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Band-limited (windowed sinc) resampling; the kernel is built once per rate pair."""
    import torch
    import torchaudio.transforms as AT

    if (orig, new) not in _RESAMPLERS:
        _RESAMPLERS[(orig, new)] = AT.Resample(orig, new)
    with torch.no_grad():
        out = _RESAMPLERS[(orig, new)](torch.from_numpy(np.ascontiguousarray(audio)))
    return out.numpy().astype(np.float32, copy=False)


def synthesize_utterance(speaker: Speaker, *, seed: int, split: str, index: int,
                         domain: str = "mixed", utt_id: str = "",
                         exclude: frozenset[str] = frozenset(), video: bool = True
                         ) -> SyntheticUtterance:
    """Synthesise one aligned audio-visual utterance, deterministically.

    Args:
        speaker: who speaks (voice and appearance).
        seed: corpus seed.
        split: ``train``, ``val``, ``test`` or ``babble`` (part of the random stream's key).
        index: utterance index within the split (part of the key).
        domain: ``grid``, ``open`` or ``mixed``.
        utt_id: id to record in the result.
        exclude: transcripts (``Sentence.text``) never to say: a sentence drawn from it is
            redrawn (the training sentences, for val and test).
        video: render the frames; False leaves ``video`` and ``params`` with 0 frames (the
            audio-only babble split).

    Returns:
        The utterance with frames, 16 kHz audio of exactly ``T * 640`` samples, and timings.
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    streams = np.random.SeedSequence([seed, _SPLIT_CODE[split], index]).spawn(4)
    text_rng, voice_rng, motion_rng, noise_rng = (np.random.default_rng(s) for s in streams)
    v = speaker.voice
    # Within-speaker variation: nobody says two sentences at exactly the same rate and pitch.
    rate = int(round(v.rate * voice_rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER)))
    pitch = int(np.clip(v.pitch + voice_rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 100))
    engine_seed = int(voice_rng.integers(1, 2**31 - 1))  # espeak's breath noise
    engine = get_engine()
    failed = excluded = 0
    while True:
        sentence = sample_sentence(text_rng, domain)
        if sentence.text in exclude:
            excluded += 1
            if excluded > _MAX_EXCLUDED:
                raise RuntimeError(f"{speaker.id} {split} {index}: {_MAX_EXCLUDED} sentences "
                                   f"drawn were all training sentences (domain {domain!r})")
            continue
        syn = engine.synthesize(sentence.espeak_text, voice=v.name, rate=rate, pitch=pitch,
                                pitch_range=v.pitch_range, seed=engine_seed)
        # Every transcript word must map to exactly one timed word event.
        if len(syn.words) == len(sentence.words) and all(w.end > w.start for w in syn.words):
            break
        failed += 1
        if failed >= _MAX_TEXT_TRIES:
            raise RuntimeError(f"espeak did not align words for {speaker.id} {split} {index}")

    speech = _resample(syn.audio, syn.sample_rate, SAMPLE_RATE)
    peak = float(np.abs(speech).max()) or 1.0
    speech = speech * (voice_rng.uniform(0.3, 0.85) / peak)  # recording level varies
    lead = float(voice_rng.uniform(0.1, 0.3))
    trail = float(voice_rng.uniform(0.1, 0.3))
    lead_samples = int(round(lead * SAMPLE_RATE))
    total = lead_samples + len(speech) + trail * SAMPLE_RATE
    num_frames = int(np.ceil(total / SAMPLES_PER_FRAME))
    audio = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
    audio[lead_samples:lead_samples + len(speech)] = speech
    # A faint microphone noise floor (-70..-55 dBFS): real recordings are never digital zero.
    floor = 10 ** (voice_rng.uniform(-70, -55) / 20)
    audio += voice_rng.standard_normal(len(audio), dtype=np.float32) * np.float32(floor)
    offset = lead_samples / SAMPLE_RATE

    if video:
        params = trajectory(syn.phonemes, num_frames, fps=FPS, offset=offset,
                            gains=np.asarray(speaker.appearance.gains, np.float32))
        frames = render_frames(params, speaker.appearance,
                               sample_motion(motion_rng, num_frames), noise_rng)
    else:
        params = np.zeros((0, 5), np.float32)
        frames = np.zeros((0, 96, 96, 3), np.uint8)
    words = [(w, round(t.start + offset, 3), round(t.end + offset, 3))
             for w, t in zip(sentence.words, syn.words)]
    phonemes = [(p.symbol, round(p.start + offset, 3), round(p.end + offset, 3))
                for p in syn.phonemes]
    return SyntheticUtterance(utt_id, sentence, frames, audio, words, phonemes, params)


def format_transcript(words: list[tuple[str, float, float]]) -> str:
    """The LRS3 ``.txt`` body: ``Text:``, ``Conf:``, then one timed line per word."""
    lines = ["Text:  " + " ".join(w for w, _, _ in words), "Conf:  5", "",
             "WORD START END ASDSCORE"]
    lines += [f"{w} {s:.2f} {e:.2f} 1.0" for w, s, e in words]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- writing, pool, summary

_WORKER: dict = {}


def _init_worker(out_dir: str, seeds: dict, domain: str, exclude: frozenset[str],
                 pool_worker: bool = True) -> None:
    if pool_worker:  # one thread per worker process: the pool is the parallelism
        import torch

        torch.set_num_threads(1)
    _WORKER.update(out=Path(out_dir), seeds=seeds, domain=domain, exclude=exclude)
    get_engine()  # start this process's espeak helper before the first task


def _produce(item: PlannedUtterance) -> dict:
    out, domain = _WORKER["out"], _WORKER["domain"]
    media = out / f"{item.id}{'.wav' if item.split == 'babble' else '.mp4'}"
    txt = out / f"{item.id}.txt"
    record = {"id": item.id, "split": item.split, "speaker": item.speaker.id}
    if media.is_file() and txt.is_file():
        text = txt.read_text().splitlines()[0].removeprefix("Text:").strip()
        return {**record, "text": text, "skipped": True}
    # val and test never say a training sentence; babble and training may say anything
    exclude = _WORKER["exclude"] if item.split in ("val", "test") else frozenset()
    utt = synthesize_utterance(item.speaker, seed=_WORKER["seeds"][item.split], split=item.split,
                               index=item.index, domain=domain, utt_id=item.id, exclude=exclude,
                               video=item.split != "babble")
    media.parent.mkdir(parents=True, exist_ok=True)
    if item.split == "babble":
        write_wav(media, utt.audio, SAMPLE_RATE)
    else:
        write_mp4(media, utt.video, utt.audio)
    tmp = txt.with_name(txt.name + ".part")
    tmp.write_text(format_transcript(utt.words))
    tmp.replace(txt)  # last: an utterance is complete once its .txt exists
    return {**record, "text": utt.sentence.text, "num_frames": len(utt.audio) // SAMPLES_PER_FRAME,
            "domain": utt.sentence.domain, "skipped": False}


def _run(plan: list[PlannedUtterance], out: Path, seeds: dict, domain: str,
         exclude: frozenset[str], workers: int, verbose: bool, start: float) -> list[dict]:
    records: list[dict] = []
    if workers == 1 or len(plan) <= 1:
        _init_worker(str(out), seeds, domain, exclude, pool_worker=False)
        for k, item in enumerate(plan):
            records.append(_produce(item))
            _progress(verbose, k + 1, len(plan), start)
        return records
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited espeak/torch state
    init_args = (str(out), seeds, domain, exclude)
    with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        chunk = max(1, min(16, len(plan) // (workers * 8)))
        for k, rec in enumerate(pool.imap_unordered(_produce, plan, chunksize=chunk)):
            records.append(rec)
            _progress(verbose, k + 1, len(plan), start)
    return records


def generate_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_train: int = 1600,
    num_val: int = 200,
    num_test: int = 200,
    domain: str = "mixed",
    num_train_speakers: int = 24,
    num_val_speakers: int = 4,
    num_test_speakers: int = 6,
    num_babble: int = 32,
    num_babble_speakers: int = 4,
    test_seed: int | None = None,
    reuse_train_from: str | Path | None = None,
    workers: int | None = None,
    verbose: bool = False,
) -> dict:
    """Generate (or complete) a synthetic audio-visual corpus in LRS3 layout.

    Writes ``<out>/trainval/<spk>/<NNNNN>.{mp4,txt}``, ``<out>/test/...``, ``<out>/val_ids.txt``
    (validation speakers live under ``trainval/``, as in LRS3), ``<out>/babble/<spk>/
    <NNNNN>.{wav,txt}`` (audio-only speech of speakers of no other split: the test babble)
    and, last, ``<out>/corpus.json`` (so its presence means the corpus is complete).
    Re-running with the same arguments skips finished utterances and completes an
    interrupted run. Training is generated first; val and test sentences that are training
    sentences are redrawn.

    Args:
        out_dir: corpus root.
        seed: everything is derived from it; the same seed gives the same corpus.
        num_train, num_val, num_test: utterances per split.
        domain: ``grid``, ``open`` or ``mixed``.
        num_train_speakers, num_val_speakers, num_test_speakers: disjoint speakers per split.
        num_babble, num_babble_speakers: utterances and speakers of the babble split.
        test_seed: seed of the test and babble splits (speakers, sentences, audio); None:
            ``seed``. Another value gives a held-out test set for the same training data.
        reuse_train_from: a complete corpus of the same seed and training/validation
            arguments whose training and validation files are linked instead of generated.
        workers: processes (default: CPU count); 1 runs in this process.
        verbose: print progress to stderr.

    Returns:
        The summary also written to ``corpus.json``.

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds a corpus made with other arguments.
        RuntimeError: the finished corpus breaks the protocol (never expected).
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if min(num_train, num_val, num_test, num_babble) < 0:
        raise ValueError("utterance counts must be >= 0")
    start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"generator_version": GENERATOR_VERSION, "seed": seed, "num_train": num_train,
              "num_val": num_val, "num_test": num_test, "domain": domain,
              "num_train_speakers": num_train_speakers, "num_val_speakers": num_val_speakers,
              "num_test_speakers": num_test_speakers, "num_babble": num_babble,
              "num_babble_speakers": num_babble_speakers, "test_seed": test_seed}
    # corpus.json appears only when the corpus is complete (callers may test for it); while
    # generating, the arguments live in a pending file so a resumed run can check them.
    meta_path, pending_path = out / "corpus.json", out / _PENDING
    for path in (meta_path, pending_path):
        if path.is_file():
            previous = json.loads(path.read_text()).get("config")
            if previous != config:
                raise ValueError(f"{out} holds a corpus generated with {previous}; requested "
                                 f"{config}. Use another directory or delete it.")
    speakers = sample_speakers(seed, num_train_speakers, num_val_speakers, num_test_speakers,
                               num_babble_speakers if num_babble else 0, test_seed=test_seed)
    plan = plan_corpus(seed, num_train, num_val, num_test, speakers, num_babble)
    summary = {"config": config, "complete": False,
               "speakers": {k: [s.to_dict() for s in v] for k, v in speakers.items()}}
    if not meta_path.is_file():
        write_json(pending_path, summary)
    held_seed = seed if test_seed is None else test_seed
    seeds = {"train": seed, "val": seed, "test": held_seed, "babble": held_seed}
    reused = 0
    if reuse_train_from is not None:
        reused = link_reused(reuse_train_from, out, config,
                             [p for p in plan if p.split in ("train", "val")])

    workers = max(1, int(workers or os.cpu_count() or 1))
    # training first: its sentences are what val and test must not say
    train = _run([p for p in plan if p.split == "train"], out, seeds, domain, frozenset(),
                 workers, verbose, start)
    exclude = frozenset(r["text"] for r in train)
    records = train + _run([p for p in plan if p.split != "train"], out, seeds, domain, exclude,
                           workers, verbose, start)
    records.sort(key=lambda r: r["id"])
    protocol = protocol_summary(records, speakers, test_seed)

    val_ids = sorted(r["id"] for r in records if r["split"] == "val")
    (out / "val_ids.txt").write_text("".join(i + "\n" for i in val_ids))
    new = [r for r in records if not r["skipped"]]
    frames = sum(r["num_frames"] for r in new)
    summary.update({
        "complete": True,
        "counts": {s: sum(r["split"] == s for r in records) for s in ("train", "val", "test")},
        "babble_count": sum(r["split"] == "babble" for r in records),
        "generated": len(new),
        "skipped_existing": len(records) - len(new),
        "reused": reused,
        "generated_hours": round(frames / FPS / 3600, 4),
        "vocabulary_size": len({w for r in records if r["split"] != "babble"
                                for w in r["text"].split()}),
        "elapsed_s": round(time.time() - start, 2),
        "workers": workers,
        "protocol": protocol,
        "layout": {"train": "trainval/ minus val_ids.txt", "val": "val_ids.txt",
                   "test": "test/", "babble": "babble/ (.wav + .txt, test babble only)"},
    })
    write_json(meta_path, summary)
    pending_path.unlink(missing_ok=True)
    return summary


def _progress(verbose: bool, done: int, total: int, start: float) -> None:
    if verbose and (done == total or done % max(1, total // 20) == 0):
        print(f"[synthetic] {done}/{total} utterances, {time.time() - start:.1f} s",
              file=sys.stderr, flush=True)
