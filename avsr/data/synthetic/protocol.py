"""The honest-evaluation checks of the synthetic corpus, and the babble split's files.

:func:`protocol_summary` is what ``corpus.json`` records under ``protocol`` (and what the
generator refuses to finish without): no val or test sentence verbatim in training, and
every held-out speaker (val, test, babble) beyond the per-utterance jitter of every training
speaker. :func:`link_reused` lets a held-out test seed reuse an existing corpus's training and
validation utterances (they are the same files, a pure function of the seed).
"""

from __future__ import annotations

import json
import os
import shutil
import wave
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .speakers import HELDOUT_SPLITS, Speaker, voice_distance

__all__ = ["write_wav", "write_json", "protocol_summary", "min_distances", "link_reused",
           "REUSE_KEYS"]

# corpus.json config entries that fix the training and validation utterances
REUSE_KEYS = ("generator_version", "seed", "num_train", "num_val", "domain",
              "num_train_speakers", "num_val_speakers")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (S,) float audio in [-1, 1] as 16-bit mono PCM (atomically: ``.part`` then rename)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    tmp.replace(path)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON atomically (``.part`` then rename)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def min_distances(speakers: dict[str, Sequence[Speaker]]) -> dict[str, float | None]:
    """Per held-out split, the smallest :func:`voice_distance` of its speakers to any training
    speaker (None: no speaker shares a variant with training, every distance is infinite)."""
    out: dict[str, float | None] = {}
    for split in HELDOUT_SPLITS:
        d = min((voice_distance(a.voice, b.voice) for a in speakers.get(split, ())
                 for b in speakers["train"]), default=float("inf"))
        out[split] = None if d == float("inf") else round(d, 4)
    return out


def protocol_summary(records: Iterable[dict], speakers: dict[str, Sequence[Speaker]],
                     test_seed: int | None) -> dict:
    """Check the protocol on the finished corpus and describe it for ``corpus.json``.

    Args:
        records: one dict per utterance with ``split``, ``speaker`` and ``text``.
        speakers: the speakers of every split.
        test_seed: the seed of the test and babble splits (None: the corpus seed).

    Raises:
        RuntimeError: a val or test sentence is a training sentence, a held-out speaker is
            within the jitter of a training speaker, or a babble utterance's speaker is a
            speaker of another split.
    """
    records = list(records)
    train_text = {r["text"] for r in records if r["split"] == "train"}
    leaked = {s: sorted({r["text"] for r in records
                         if r["split"] == s and r["text"] in train_text}) for s in ("val", "test")}
    dist = min_distances(speakers)
    other_ids = {s.id for split in ("train", "val", "test") for s in speakers[split]}
    babble_spk = {r["speaker"] for r in records if r["split"] == "babble"}
    problems = [f"{len(v)} {s} sentences are training sentences (e.g. {v[0]!r})"
                for s, v in leaked.items() if v]
    problems += [f"a {s} speaker is within the jitter of a training speaker (distance {d})"
                 for s, d in dist.items() if d is not None and d <= 1.0]
    if babble_spk & other_ids:
        problems.append(f"babble speakers {sorted(babble_spk & other_ids)} speak in other splits")
    if problems:
        raise RuntimeError("synthetic corpus breaks the evaluation protocol: "
                           + "; ".join(problems))
    return {
        "val_sentences_in_train": 0,
        "test_sentences_in_train": 0,
        "min_speaker_distance_to_train": dist,
        "speaker_distance": "same espeak variant: max(|d pitch| / 6, |ln(rate ratio)| / "
                            "ln(1.05 / 0.95)), > 1 = beyond the per-utterance jitter; other "
                            "variant: infinite",
        "babble_speakers": sorted(babble_spk),
        "test_seed": test_seed,
    }


def link_reused(source: str | Path, out: Path, config: dict, items: Iterable) -> int:
    """Hard-link (or copy) the training and validation utterances of corpus ``source``.

    Args:
        source: a complete corpus made with the same :data:`REUSE_KEYS` as ``config``.
        out: the new corpus root.
        config: the new corpus's config (as in ``corpus.json``).
        items: planned utterances (``split`` and ``id``) of the train and val splits.

    Returns:
        Utterances linked (those already in ``out`` are left alone).

    Raises:
        FileNotFoundError: ``source`` is not a complete corpus.
        ValueError: it was made with other training or validation arguments.
    """
    src = Path(source)
    meta = src / "corpus.json"
    if not meta.is_file():
        raise FileNotFoundError(f"reuse_train_from: {src} holds no complete corpus "
                                "(no corpus.json)")
    theirs = json.loads(meta.read_text()).get("config", {})
    diff = {k: (theirs.get(k), config[k]) for k in REUSE_KEYS if theirs.get(k) != config[k]}
    if diff:
        raise ValueError(f"reuse_train_from: {meta} differs in {diff} (theirs, requested): its "
                         "training utterances are not this corpus's")
    linked = 0
    for item in items:
        for suffix in (".mp4", ".txt"):  # .txt last: it marks the utterance complete
            a, b = src / f"{item.id}{suffix}", out / f"{item.id}{suffix}"
            if b.exists() or not a.is_file():
                continue
            b.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(a, b)
            except OSError:  # another file system, or links not allowed
                shutil.copy2(a, b)
            linked += suffix == ".txt"
    return linked
