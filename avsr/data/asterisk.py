"""Reader for the Asterisk core sound prompts: real recorded English speech, one speaker.

Debian's ``asterisk-core-sounds-en-wav`` installs 568 prompts recorded by Allison Smith
(CC-BY-SA 3.0) as 8 kHz mono 16-bit WAV under ``/usr/share/asterisk/sounds/en/`` (``<name>.wav``
and ``<group>/<name>.wav``); ``asterisk-core-sounds-en`` ships their script,
``core-sounds-en.txt.gz``, one ``name: text`` line per prompt. This reader turns them into an
audio-only corpus for :class:`~avsr.data.datamodule.AVDataModule`:

- transcripts are rewritten into spoken words by :func:`avsr.data.prompt_text.normalize_prompt`
  (digits to number words, ``*``/``#`` to STAR/POUND, notes such as ``[beep]`` removed);
- each prompt is resampled once from its own rate to 16 kHz with torchaudio and cached as a
  16-bit WAV under ``cache_dir`` (the Debian directory stays untouched);
- the split is by prompt text: the distinct texts, sorted, are shuffled with ``seed`` and cut
  into test, val and train, so one text never sits in two splits and the split depends only on
  the script, the seed and the fractions (not on which audio files are present or how long).

Nothing bad passes silently. A missing root or script is a ``FileNotFoundError`` naming it.
Everything else is a counted skip, recorded in :attr:`AsteriskPrompts.skipped` (prompt ->
reason) and summarised in one warning: a script line without ``name:``, a prompt without a
WAV, a WAV without a script line, an unreadable or empty WAV, a prompt with no spoken words
left after normalisation (tones, silence), a prompt longer than ``max_seconds``. The characters
that normalisation removed are counted in :attr:`AsteriskPrompts.dropped` and logged once.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import random
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from avsr.data.corpora import Utterance
from avsr.data.io import FPS, SAMPLE_RATE
from avsr.data.prompt_text import normalize_prompt

__all__ = ["AsteriskPrompts", "read_script", "read_wav", "write_wav"]

log = logging.getLogger(__name__)


def read_script(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """Parse a ``core-sounds-<lang>.txt`` script (plain or ``.gz``).

    Returns:
        ``(texts, bad)``: prompt name -> written text, and ``"<path>:<line>"`` -> problem for
        lines that are neither blank, a ``;`` comment nor ``name: text``.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Asterisk prompt script not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    texts: dict[str, str] = {}
    bad: dict[str, str] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith(";"):
                continue
            name, colon, text = stripped.partition(":")
            name = name.strip()
            if not colon or not name or " " in name:
                bad[f"{path}:{number}"] = "script line without 'name: text'"
                continue
            texts[name] = text.strip()
    return texts, bad


def read_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a 16-bit PCM WAV as mono float32 in [-1, 1] and its sample rate.

    Raises:
        ValueError: not a 16-bit PCM WAV, unreadable, or no samples; the message names the
            file and the problem.
    """
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        raise ValueError(f"{path}: unreadable WAV ({e})") from e
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    samples = np.frombuffer(frames, dtype="<i2")
    if samples.size < channels or samples.size % channels:
        raise ValueError(f"{path}: no complete samples")
    audio = torch.from_numpy(samples.reshape(-1, channels).astype(np.float32) / 32768.0)
    return audio.mean(dim=1), rate


def write_wav(path: str | Path, audio: torch.Tensor, rate: int) -> None:
    """Write mono float audio as 16-bit PCM, atomically (a killed run leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (audio.clamp(-1.0, 32767 / 32768) * 32768.0).round().to(torch.int16).numpy()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    tmp.replace(path)


def _wav_header(path: Path) -> tuple[float, int]:
    """(seconds, sample rate) of a WAV from its header."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate(), w.getframerate()


def _category(reason: str) -> str:
    """The kind of a skip reason, without the file name and details it carries."""
    if ".wav: " in reason:  # "<path>.wav: unreadable WAV (...)"
        reason = reason.split(".wav: ", 1)[1]
    return reason.split(" (")[0].split(" /")[0]


class AsteriskPrompts:
    """The Asterisk core sound prompts as an audio-only corpus (see the module docstring).

    Args:
        root: directory of the prompt WAVs (``<name>.wav``, ``<group>/<name>.wav``).
        script: the prompt script, ``core-sounds-en.txt`` or ``.txt.gz``.
        cache_dir: where the 16 kHz copies are written (``<cache_dir>/<name>.wav``).
        val_fraction: share of the distinct prompt texts held out for validation.
        test_fraction: share held out for test.
        seed: seed of the split.
        max_seconds: prompts longer than this are skipped (counted); None keeps all.
        sample_rate: rate of the cached copies (the models' 16 kHz).

    Splits: ``train``, ``val``, ``test`` and ``all``.

    Attributes:
        skipped: prompt (or WAV path, or script line) -> reason, for everything left out.
        dropped: characters (and ``"note"`` for bracketed notes) removed by normalisation.
    """

    SPLITS = ("train", "val", "test", "all")

    def __init__(
        self,
        *,
        root: str | Path,
        script: str | Path,
        cache_dir: str | Path,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        max_seconds: float | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Asterisk prompt directory not found: {self.root} (install "
                                    "the Debian package asterisk-core-sounds-en-wav)")
        self.script = Path(script).expanduser()
        if not self.script.is_file():
            raise FileNotFoundError(f"Asterisk prompt script not found: {self.script} (install "
                                    "the Debian package asterisk-core-sounds-en)")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} "
                             "must be >= 0 and sum to less than 1")
        self.cache_dir = Path(cache_dir).expanduser()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.max_seconds = max_seconds
        self.sample_rate = sample_rate
        self.skipped: dict[str, str] = {}
        self.dropped: Counter[str] = Counter()
        self._splits: dict[str, list[Utterance]] | None = None

    def __repr__(self) -> str:
        return (f"AsteriskPrompts(root={str(self.root)!r}, script={str(self.script)!r}, "
                f"seed={self.seed})")

    def utterances(self, split: str) -> list[Utterance]:
        """Records of ``split``, sorted by id; the first call converts the audio.

        Raises:
            ValueError: unknown split name, or no usable prompt at all.
        """
        if split not in self.SPLITS:
            raise ValueError(f"unknown Asterisk split {split!r}; expected one of {self.SPLITS}")
        if self._splits is None:
            self._splits = self._build()
        if split == "all":
            return sorted((u for us in self._splits.values() for u in us), key=lambda u: u.id)
        return list(self._splits[split])

    def split_of_texts(self, texts: list[str]) -> dict[str, str]:
        """Normalised text -> split name, from the distinct ``texts`` (exact sizes)."""
        distinct = sorted(set(texts))
        random.Random(self.seed).shuffle(distinct)
        n = len(distinct)

        def size(fraction: float) -> int:
            # never round a requested held-out split down to nothing on a small script
            return 0 if fraction == 0 else max(1, round(fraction * n))

        n_test, n_val = size(self.test_fraction), size(self.val_fraction)
        if n_test + n_val >= n:
            raise ValueError(f"{self.script}: {n} distinct prompt texts are too few for "
                             f"val_fraction {self.val_fraction} and test_fraction "
                             f"{self.test_fraction}")
        names = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        return dict(zip(distinct, names))

    def _build(self) -> dict[str, list[Utterance]]:
        written, bad_lines = read_script(self.script)
        self.skipped.update(bad_lines)
        wavs = {p.relative_to(self.root).with_suffix("").as_posix(): p
                for p in sorted(self.root.rglob("*.wav"))}
        spoken: dict[str, str] = {}
        for name, text in written.items():
            words, dropped = normalize_prompt(text)
            self.dropped.update(dropped)
            if words:
                spoken[name] = words
            else:
                self.skipped[name] = "no spoken words in transcript"
        for name in sorted(set(wavs) - set(written)):
            self.skipped[str(wavs[name])] = "WAV without a transcript line"
        split_of = self.split_of_texts(list(spoken.values()))
        splits: dict[str, list[Utterance]] = {"train": [], "val": [], "test": []}
        for name, words in sorted(spoken.items()):
            if name not in wavs:
                self.skipped[name] = f"missing WAV {self.root / name}.wav"
                continue
            utt = self._utterance(name, wavs[name], words)
            if utt is not None:
                splits[split_of[words]].append(utt)
        self._report()
        if not any(splits.values()):
            raise ValueError(f"no usable Asterisk prompt in {self.root} with {self.script}: "
                             f"{len(self.skipped)} skipped")
        return splits

    def _utterance(self, name: str, source: Path, words: str) -> Utterance | None:
        target = self.cache_dir / f"{name}.wav"
        try:
            # a copy older than its source, or made for another rate, is made again
            fresh = (target.is_file() and target.stat().st_mtime >= source.stat().st_mtime
                     and _wav_header(target)[1] == self.sample_rate)
            if not fresh:
                audio, rate = read_wav(source)
                if rate != self.sample_rate:
                    audio = AF.resample(audio, rate, self.sample_rate)
                write_wav(target, audio, self.sample_rate)
            seconds = _wav_header(target)[0]
        except (ValueError, wave.Error, EOFError, OSError) as e:
            self.skipped[name] = str(e)
            return None
        if self.max_seconds is not None and seconds > self.max_seconds:
            self.skipped[name] = f"longer than max_seconds ({seconds:.1f} s > {self.max_seconds})"
            return None
        return Utterance(id=name, video_path=None, audio_path=str(target), text=words,
                         num_frames=max(1, math.ceil(seconds * FPS)))

    def _report(self) -> None:
        if self.skipped:
            reasons = Counter(_category(r) for r in self.skipped.values())
            first = next(iter(sorted(self.skipped.items())))
            log.warning("Asterisk prompts: %d skipped %s (first: %s: %s)", len(self.skipped),
                        dict(sorted(reasons.items())), *first)
        if self.dropped:
            log.info("Asterisk prompts: normalisation removed %s",
                     dict(self.dropped.most_common()))
