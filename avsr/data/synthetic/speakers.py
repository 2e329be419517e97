"""Speakers of the synthetic corpus: a voice (espeak variant, pitch, rate) and an appearance.

All speakers come from the same families of voices, the ordinary formant variants of espeak's
English voices. Variants that change the synthesis method (whisper, the klatt family) or add
effects are excluded: a model trained on ordinary variants does not transfer to them, so an
unseen speaker must be a new person, not a new species. Training speakers cycle through every
variant; validation and test speakers reuse the variants seen in training with new pitch, rate,
intonation range and appearance, and no two speakers share a voice parameter combination.

Speakers of different splits must be different people even to a model that has heard every
utterance of training: every speaker of a held-out split (val, test, babble) is further than
the per-utterance jitter from every speaker of every other split (:func:`voice_distance`), so
no utterance of a test speaker can be said with the variant, pitch and rate of some training
utterance. Test and babble speakers can be drawn from a seed of their own (``test_seed``),
keeping training and validation speakers unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["BASE_VOICES", "VARIANTS", "HELDOUT_SPLITS", "PITCH_JITTER", "RATE_JITTER", "Voice",
           "Appearance", "Speaker", "voice_distance", "sample_speakers"]

BASE_VOICES = ("en-us", "en")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
HELDOUT_SPLITS = ("val", "test", "babble")

# Per-utterance jitter of a speaker's voice (generate.synthesize_utterance draws within it):
# pitch + an integer in [-PITCH_JITTER, PITCH_JITTER], rate x U(1 - RATE_JITTER, 1 + RATE_JITTER).
PITCH_JITTER = 3
RATE_JITTER = 0.05
_MAX_REDRAWS = 10_000

# Skin tones from light to dark (RGB); a speaker's tone interpolates between neighbours.
_SKIN_RAMP = np.array([
    [236, 204, 180], [222, 180, 150], [198, 150, 116], [168, 118, 86], [128, 86, 60],
    [92, 62, 45],
], dtype=np.float32)


@dataclass(frozen=True)
class Voice:
    """espeak settings of a speaker."""

    name: str          # e.g. "en-us+f3"
    pitch: int         # 0..100
    rate: int          # words per minute
    pitch_range: int   # 0..100


@dataclass(frozen=True)
class Appearance:
    """How a speaker's mouth region looks (pixels refer to a 96x96 frame at scale 1)."""

    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    teeth: tuple[float, float, float]
    tongue: tuple[float, float, float]
    cavity: tuple[float, float, float]
    center: tuple[float, float]   # mouth centre (x, y) in pixels
    scale: float                  # overall mouth scale
    half_width: float             # mouth half width at neutral width (px)
    max_open: float               # inner aperture half height when fully open (px)
    upper_lip: float              # upper lip thickness (px)
    lower_lip: float              # lower lip thickness (px)
    bow: float                    # cupid's bow depth, 0..1
    smile: float                  # corner curvature (px at the corners, + = up)
    shade: float                  # strength of the skin's shading
    light_angle: float            # direction the light comes from (radians)
    stubble: float                # density of facial hair dots, 0..1
    gains: tuple[float, float, float, float, float]  # articulation style (see visemes)
    noise: float                  # sensor noise std (8-bit levels)


@dataclass(frozen=True)
class Speaker:
    """A synthetic person."""

    id: str
    split: str
    voice: Voice
    appearance: Appearance

    def to_dict(self) -> dict:
        """JSON-friendly description (written to corpus.json)."""
        return asdict(self)


def _appearance(rng: np.random.Generator) -> Appearance:
    pos = rng.uniform(0, len(_SKIN_RAMP) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(_SKIN_RAMP) - 1)
    skin = _SKIN_RAMP[lo] + (pos - lo) * (_SKIN_RAMP[hi] - _SKIN_RAMP[lo])
    skin = np.clip(skin * rng.uniform(0.92, 1.08) + rng.normal(0, 5, 3), 20, 250)
    # Lips: darker and redder than the skin, by a speaker-specific amount (some have
    # low-contrast lips, as real people do).
    darken = rng.uniform(0.62, 0.9)
    lip = np.clip(skin * darken + np.array([rng.uniform(5, 40), -rng.uniform(0, 25),
                                            -rng.uniform(0, 15)]), 10, 250)
    teeth = np.clip(np.array([228, 222, 205]) * rng.uniform(0.85, 1.0)
                    + np.array([0, 0, -rng.uniform(0, 25)]), 0, 255)
    tongue = np.clip(np.array([190, 90, 100]) * rng.uniform(0.8, 1.05), 0, 255)
    cavity = np.array([45, 14, 20]) * rng.uniform(0.6, 1.3)
    gains = (rng.uniform(0.75, 1.2), rng.uniform(0.7, 1.3), rng.uniform(0.75, 1.2),
             rng.uniform(0.8, 1.1), rng.uniform(0.7, 1.1))

    def f(x: float) -> float:
        return round(float(x), 4)

    return Appearance(
        skin=tuple(f(x) for x in skin), lip=tuple(f(x) for x in lip),
        teeth=tuple(f(x) for x in teeth), tongue=tuple(f(x) for x in tongue),
        cavity=tuple(f(x) for x in cavity),
        center=(f(48 + rng.uniform(-5, 5)), f(50 + rng.uniform(-5, 5))),
        scale=f(rng.uniform(0.9, 1.15)), half_width=f(rng.uniform(27, 34)),
        max_open=f(rng.uniform(11, 16)), upper_lip=f(rng.uniform(4.0, 7.5)),
        lower_lip=f(rng.uniform(5.0, 9.0)), bow=f(rng.uniform(0.1, 0.6)),
        smile=f(rng.uniform(-2.5, 2.5)), shade=f(rng.uniform(0.05, 0.25)),
        light_angle=f(rng.uniform(0, 2 * np.pi)),
        stubble=f(rng.uniform(0.0, 0.6) if rng.random() < 0.3 else 0.0),
        gains=tuple(f(x) for x in gains), noise=f(rng.uniform(1.0, 4.0)),
    )


def _variant(voice: Voice) -> str:
    return voice.name.partition("+")[2]


def voice_distance(a: Voice, b: Voice) -> float:
    """How far apart two voices are, in units of what per-utterance jitter can bridge.

    Voices of different espeak variants (formant sets) are different people: ``inf``. The
    base language (``en`` / ``en-us``) is ignored, so an accent alone never makes two voices
    distinct. Otherwise the distance is ``max(|pitch_a - pitch_b| / (2 * PITCH_JITTER),
    |ln(rate_a / rate_b)| / ln((1 + RATE_JITTER) / (1 - RATE_JITTER)))``: at most 1 exactly
    when the pitch ranges and the rate ranges of the two speakers' utterances both overlap,
    i.e. when one utterance of each can have the same variant, pitch and rate. ``pitch_range``
    is not jittered and left out (leaving a dimension out only makes voices closer).
    """
    if _variant(a) != _variant(b):
        return float("inf")
    pitch = abs(a.pitch - b.pitch) / (2 * PITCH_JITTER)
    rate = abs(np.log(a.rate / b.rate)) / np.log((1 + RATE_JITTER) / (1 - RATE_JITTER))
    return float(max(pitch, rate))


def _voice(rng: np.random.Generator, variant: str, taken: set[tuple],
           far_from: list[Voice]) -> Voice:
    for _ in range(_MAX_REDRAWS):
        base = BASE_VOICES[int(rng.integers(len(BASE_VOICES)))]
        name = f"{base}+{variant}" if variant else base
        voice = Voice(name=name, pitch=int(rng.integers(25, 76)), rate=int(rng.integers(135, 206)),
                      pitch_range=int(rng.integers(30, 81)))
        key = (voice.name, voice.pitch, voice.rate)
        # distinct people: never the same settings twice, and a held-out speaker beyond the
        # jitter of every speaker of the other splits
        if key not in taken and all(voice_distance(voice, v) > 1.0 for v in far_from):
            taken.add(key)
            return voice
    raise ValueError(f"no voice of variant {variant!r} is further than the jitter from the "
                     f"{len(far_from)} speakers of other splits: too many speakers requested")


def sample_speakers(seed: int, num_train: int, num_val: int, num_test: int,
                    num_babble: int = 0, *, test_seed: int | None = None
                    ) -> dict[str, list[Speaker]]:
    """Draw the speakers of each split, deterministically from ``seed``.

    Speaker ids are global (``spk0000`` ...): train, val, test, then babble (the speakers of
    the test babble), so ids never collide across splits. Every val, test and babble speaker
    is further than the jitter (:func:`voice_distance` > 1) from every speaker of another
    split; voices are redrawn until they are.

    Args:
        seed: seed of the training and validation speakers (and of the others by default).
        num_train, num_val, num_test, num_babble: speakers per split.
        test_seed: seed of the test and babble speakers; None: ``seed``. Training and
            validation speakers do not depend on it.

    Returns:
        ``{"train": [...], "val": [...], "test": [...], "babble": [...]}``.
    """
    if num_train < 1 or min(num_val, num_test, num_babble) < 0:
        raise ValueError(f"need >= 1 train speaker and >= 0 val/test/babble speakers, got "
                         f"{num_train}/{num_val}/{num_test}/{num_babble}")
    rng = np.random.default_rng([seed, 0x5BEA])
    taken: set[tuple] = set()
    order = list(rng.permutation(len(VARIANTS)))
    train_variants = [VARIANTS[order[i % len(VARIANTS)]] for i in range(num_train)]
    seen = sorted(set(train_variants), key=VARIANTS.index)
    out: dict[str, list[Speaker]] = {"train": [], "val": [], "test": [], "babble": []}
    k = 0
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test),
                         ("babble", num_babble)):
        if split == "test" and test_seed is not None:
            rng = np.random.default_rng([test_seed, 0x5BEA, 1])
        others = [s.voice for other, spk in out.items() if other != split for s in spk]
        for i in range(count):
            variant = train_variants[i] if split == "train" else seen[int(rng.integers(len(seen)))]
            voice = _voice(rng, variant, taken, [] if split == "train" else others)
            out[split].append(Speaker(f"spk{k:04d}", split, voice, _appearance(rng)))
            k += 1
    return out
