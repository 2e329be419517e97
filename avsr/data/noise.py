"""Additive noise at a given SNR: white and babble sources, training augmentation, test mixing.

SNR is power based: ``10 log10(P_speech / P_noise)`` where ``P_speech`` is the mean power of
the *active* speech (frames within ``active_threshold_db`` of the loudest frame), so leading and
trailing silence in a clip does not make the noise quieter than asked. ``snr_db=0`` means
0 dB (auto_avsr's ``AddNoise`` treated 0 as "unset"); ``None`` or ``inf`` means clean.

Babble must be made from training utterances only (Pan et al. drew it from all splits, test
included, which leaks test speech into the noise). :class:`BabbleNoise` therefore takes its
source list explicitly; :class:`avsr.data.datamodule.AVDataModule` passes the training split.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from avsr.data.corpora import Utterance
from avsr.data.io import SAMPLE_RATE, MediaError, load_audio

__all__ = [
    "NoiseSource",
    "WhiteNoise",
    "BabbleNoise",
    "NoiseAugment",
    "FixedNoiseMixer",
    "active_power",
    "mix_at_snr",
    "stable_seed",
    "evaluation_mixer",
]

log = logging.getLogger(__name__)


def active_power(x: Tensor, frame_length: int = 400, threshold_db: float | None = -40.0) -> Tensor:
    """Mean power of the active part of a waveform.

    Args:
        x: waveform of shape (S,).
        frame_length: analysis frame in samples (25 ms at 16 kHz).
        threshold_db: frames whose power is more than this many dB below the loudest frame
            are silence and left out; None gives the plain mean power.

    Returns:
        Scalar tensor (float64).
    """
    x = x.double()
    if threshold_db is None or x.numel() < 2 * frame_length:
        return x.pow(2).mean()
    n = x.numel() // frame_length * frame_length
    frame_power = x[:n].reshape(-1, frame_length).pow(2).mean(dim=1)
    active = frame_power >= frame_power.max() * 10.0 ** (threshold_db / 10.0)
    return frame_power[active].mean()


def mix_at_snr(
    speech: Tensor, noise: Tensor, snr_db: float | None, threshold_db: float | None = -40.0
) -> Tensor:
    """Add ``noise`` scaled so that active speech power / noise power equals ``snr_db``.

    Args:
        speech: (S,) waveform.
        noise: (S,) noise of the same length.
        snr_db: target SNR in dB; 0 is a valid target (equal powers). None or +inf: clean.
        threshold_db: speech activity threshold of :func:`active_power`.

    Returns:
        (S,) float32 mixture (not clipped: the audio transform z-normalises it afterwards).
    """
    if snr_db is None or snr_db == math.inf:
        return speech
    if math.isnan(snr_db) or snr_db == -math.inf:
        raise ValueError(f"snr_db must be finite, +inf or None, got {snr_db}")
    if noise.shape != speech.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != speech shape {tuple(speech.shape)}")
    p_speech = active_power(speech, threshold_db=threshold_db)
    p_noise = noise.double().pow(2).mean()
    if p_speech <= 0 or p_noise <= 0:  # silence or empty noise: there is no SNR to set
        return speech
    scale = torch.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (speech.double() + scale * noise.double()).to(torch.float32)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` that is the same in every process and run.

    Python's ``hash`` of a string changes with every interpreter (PYTHONHASHSEED), so it cannot
    make a noisy test set reproducible.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class NoiseSource(Protocol):
    """Something that draws a noise waveform of a requested length."""

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               exclude: str | None = None) -> Tensor:  # pragma: no cover - protocol
        ...


class WhiteNoise:
    """Gaussian white noise of unit variance."""

    def __repr__(self) -> str:
        return "WhiteNoise()"

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               exclude: str | None = None) -> Tensor:
        """Return (num_samples,) float32 noise; ``exclude`` is ignored."""
        return torch.randn(num_samples, generator=generator)


class BabbleNoise:
    """Babble: the sum of ``num_speakers`` random segments of other utterances.

    Build it from TRAINING utterances only; the caller guarantees it (the data module passes
    the training split). Each segment is scaled to unit power before summing so every talker is
    equally loud, then the sum goes through :func:`mix_at_snr`.

    Sources are decoded lazily and kept in memory. At most ``pool_size`` of them are used, a
    subset chosen once from ``seed``, so memory and decoding time stay bounded on big corpora
    and the babble of a given seed is the same in every process.

    Args:
        utterances: audio tensors (S,) at ``sample_rate``, paths of media files, or
            :class:`~avsr.data.corpora.Utterance` records (their ``audio_path``).
        num_speakers: talkers summed per babble draw.
        seed: chooses the pool.
        pool_size: largest number of source utterances used.
        sample_rate: rate of decoded audio.
    """

    def __init__(
        self,
        utterances: Sequence[Tensor | str | Path | Utterance],
        *,
        num_speakers: int = 30,
        seed: int = 0,
        pool_size: int = 256,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {num_speakers}")
        sources: list[tuple[str, Tensor | str]] = []
        for i, u in enumerate(utterances):
            if isinstance(u, Tensor):
                sources.append((f"#{i}", u.reshape(-1).float()))
            elif isinstance(u, Utterance):
                if u.audio_path is not None:
                    sources.append((u.id, u.audio_path))
            else:
                sources.append((str(u), str(u)))
        if not sources:
            raise ValueError("BabbleNoise needs at least one source utterance with audio")
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(sources), generator=g)[:pool_size].sort().values.tolist()
        self._keys = [sources[i][0] for i in keep]
        self._items: list[Tensor | str] = [sources[i][1] for i in keep]
        self.num_speakers = num_speakers
        self.sample_rate = sample_rate
        self.seed = seed
        self._bad: set[int] = set()

    def __repr__(self) -> str:
        return f"BabbleNoise(pool={len(self._items)}, num_speakers={self.num_speakers})"

    def __len__(self) -> int:
        return len(self._items)

    def _audio(self, i: int) -> Tensor | None:
        item = self._items[i]
        if i in self._bad:
            return None
        if isinstance(item, Tensor):
            return item
        try:
            audio = load_audio(item, self.sample_rate)
        except MediaError as e:
            log.warning("babble source skipped: %s", e)
            self._bad.add(i)
            return None
        self._items[i] = audio  # decoded once per process
        return audio

    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               exclude: str | None = None) -> Tensor:
        """Draw (num_samples,) babble; ``exclude`` is a source key (utterance id) to avoid.

        A source shorter than ``num_samples`` is repeated from a random offset.
        """
        out = torch.zeros(num_samples, dtype=torch.float64)
        if num_samples == 0:
            return out.float()
        # known-bad sources stay candidates and are dropped when drawn, so the draws of a
        # seeded generator do not depend on what this process happened to decode before
        candidates = [i for i in range(len(self._items)) if self._keys[i] != exclude]
        used = 0
        while used < self.num_speakers and candidates:
            j = int(torch.randint(len(candidates), (1,), generator=generator))
            audio = self._audio(candidates[j])
            if audio is None or audio.numel() == 0 or float(audio.abs().max()) == 0.0:
                candidates.pop(j)
                continue
            offset = int(torch.randint(audio.numel(), (1,), generator=generator))
            seg = _wrapped_slice(audio, offset, num_samples).double()
            out += seg / seg.pow(2).mean().clamp_min(1e-12).sqrt()
            used += 1
        if used == 0:
            raise RuntimeError("BabbleNoise: no usable source utterance")
        return out.float()


def _wrapped_slice(audio: Tensor, offset: int, num_samples: int) -> Tensor:
    """``num_samples`` samples of ``audio`` repeated end to end, from ``offset`` (only the
    samples needed are copied: babble is drawn for every training utterance)."""
    if offset + num_samples <= audio.numel():
        return audio[offset:offset + num_samples]
    pieces, need, start = [], num_samples, offset
    while need > 0:
        piece = audio[start:start + need]
        pieces.append(piece)
        need -= piece.numel()
        start = 0
    return torch.cat(pieces)


class NoiseAugment:
    """Training augmentation: with probability ``prob`` add noise at an SNR drawn from ``snrs``.

    auto_avsr draws uniformly from {-5, 0, 5, 10, 15, 20} dB plus "clean"; ``None`` in
    ``snrs`` is the clean choice.

    Args:
        noise: a noise source (:class:`WhiteNoise`, :class:`BabbleNoise`, anything with
            ``sample``), or the name ``"white"`` or ``"babble"``. A config cannot list the
            training utterances, so ``"babble"`` is a placeholder that
            :class:`~avsr.data.datamodule.AVDataModule` replaces (:meth:`bind`) with babble
            built from its training split.
        snrs: candidate SNRs in dB (None = clean).
        prob: probability of considering noise at all.
        generator: RNG; None uses the global torch RNG (right with DataLoader workers).
    """

    def __init__(
        self,
        noise: NoiseSource | str,
        *,
        snrs: Sequence[float | None] = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, None),
        prob: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not snrs:
            raise ValueError("snrs must not be empty")
        if isinstance(noise, str) and noise not in ("white", "babble"):
            raise ValueError(f"noise name must be 'white' or 'babble', got {noise!r}")
        self.noise: NoiseSource | str = WhiteNoise() if noise == "white" else noise
        self.snrs = [None if s is None else float(s) for s in snrs]
        self.prob = prob
        self.generator = generator

    def __repr__(self) -> str:
        return f"NoiseAugment({self.noise!r}, snrs={self.snrs}, prob={self.prob})"

    @property
    def needs_babble(self) -> bool:
        """True while the source is the ``"babble"`` placeholder."""
        return self.noise == "babble"

    def bind(self, noise: NoiseSource) -> NoiseAugment:
        """Replace the source (the data module binds babble from the training split)."""
        self.noise = noise
        return self

    def __call__(self, audio: Tensor, key: str | None = None) -> Tensor:
        """Return noisy (S,) audio; ``key`` (the utterance id) is excluded from babble."""
        if isinstance(self.noise, str):
            raise RuntimeError("NoiseAugment('babble') has no source yet: build babble from the "
                               "training utterances and call bind(), or use AVDataModule")
        if self.prob <= 0 or float(torch.rand((), generator=self.generator)) >= self.prob:
            return audio
        snr = self.snrs[int(torch.randint(len(self.snrs), (1,), generator=self.generator))]
        if snr is None:
            return audio
        return mix_at_snr(audio, self.noise.sample(audio.numel(), self.generator, key), snr)


class FixedNoiseMixer:
    """Deterministic evaluation mixer: one SNR, noise seeded by (seed, utterance id).

    The noisy version of an utterance is the same in every run, process and worker order, so
    noisy test WERs are comparable between runs.

    Args:
        noise: the noise source (build babble from TRAINING utterances).
        snr_db: target SNR in dB (None/inf: clean).
        seed: base seed combined with each utterance id.
    """

    def __init__(self, noise: NoiseSource, *, snr_db: float | None, seed: int = 0) -> None:
        self.noise = noise
        self.snr_db = snr_db
        self.seed = seed

    def __repr__(self) -> str:
        return f"FixedNoiseMixer({self.noise!r}, snr_db={self.snr_db}, seed={self.seed})"

    def __call__(self, audio: Tensor, key: str | None = None) -> Tensor:
        """Return (S,) audio mixed with the noise of utterance ``key``."""
        if self.snr_db is None or self.snr_db == math.inf:
            return audio
        if key is None:
            raise ValueError("FixedNoiseMixer needs the utterance id as key")
        g = torch.Generator().manual_seed(stable_seed(self.seed, key))
        return mix_at_snr(audio, self.noise.sample(audio.numel(), g, key), self.snr_db)


def evaluation_mixer(noise_type: str | None, snr: float | None,
                     named: Mapping[str, NoiseSource], babble: Callable[[], NoiseSource],
                     seed: int) -> FixedNoiseMixer | None:
    """The mixer of one cell of the noisy test matrix, or None for the clean set.

    Args:
        noise_type: a name of ``named`` (e.g. the protocol's held-out babble, MUSAN music),
            ``"babble"`` (``babble()``, built on first use), ``"white"``, or None (clean).
        snr: SNR in dB, or None (clean).
        named: the data module's ``test_noise`` sources; a name here wins over the built-ins.
        babble: builds the built-in babble source.
        seed: the mixer's seed: each utterance's noise is seeded by (seed, utterance id), so
            the noisy test set is identical in every run.

    Raises:
        ValueError: an unknown ``noise_type`` (the message lists the known ones).
    """
    if noise_type is None or snr is None:
        return None
    if noise_type in named:
        return FixedNoiseMixer(named[noise_type], snr_db=snr, seed=seed)
    if noise_type == "babble":
        return FixedNoiseMixer(babble(), snr_db=snr, seed=seed)
    if noise_type == "white":
        return FixedNoiseMixer(WhiteNoise(), snr_db=snr, seed=seed)
    names = sorted({"babble", "white", *named})
    raise ValueError(f"noise_type must be one of {names} or None, got {noise_type!r}")
