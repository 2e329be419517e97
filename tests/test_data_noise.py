"""Noise mixing at a target SNR, babble from an explicit source list, deterministic test mixing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import write_clip

from avsr.data.noise import (
    BabbleNoise,
    FixedNoiseMixer,
    NoiseAugment,
    WhiteNoise,
    active_power,
    mix_at_snr,
)


def _speech(n: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    x = 0.4 * torch.sin(2 * math.pi * 220 * t) * (1 + 0.3 * torch.randn(n, generator=g))
    x[: n // 4] = 0  # leading silence must not count as speech
    return x


def _snr(clean: torch.Tensor, mixed: torch.Tensor) -> float:
    return 10 * math.log10(active_power(clean) / (mixed.double() - clean.double()).pow(2).mean())


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
def test_mix_hits_target_snr(snr: float) -> None:
    speech = _speech()
    noise = torch.randn(speech.numel(), generator=torch.Generator().manual_seed(1))
    mixed = mix_at_snr(speech, noise, snr)
    assert not torch.equal(mixed, speech)  # 0 dB is a real SNR, not "unset"
    assert abs(_snr(speech, mixed) - snr) < 0.1


def test_clean_and_power_definition() -> None:
    speech, noise = _speech(), torch.randn(16000)
    assert mix_at_snr(speech, noise, None) is speech
    assert mix_at_snr(speech, noise, math.inf) is speech
    with pytest.raises(ValueError):
        mix_at_snr(speech, noise, float("nan"))
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(speech, noise[:10], 5.0)
    # the active power ignores the silent quarter; the plain mean power does not
    plain = active_power(speech, threshold_db=None)
    assert abs(10 * math.log10(active_power(speech) / plain) - 10 * math.log10(4 / 3)) < 0.05


def test_white_noise_is_seeded() -> None:
    a = WhiteNoise().sample(100, torch.Generator().manual_seed(0))
    assert torch.equal(a, WhiteNoise().sample(100, torch.Generator().manual_seed(0)))


def _is_segment_of(out: torch.Tensor, sources: list[torch.Tensor]) -> int | None:
    """Index of the source that ``out`` is a normalised cyclic segment of, else None."""
    for k, s in enumerate(sources):
        rep = s.double().repeat(4)
        for off in range(s.numel()):
            seg = rep[off:off + out.numel()]
            if torch.allclose(out.double(), seg / seg.pow(2).mean().sqrt(), atol=1e-5):
                return k
    return None


def test_babble_uses_only_the_given_sources() -> None:
    g = torch.Generator().manual_seed(0)
    sources = [torch.randn(37, generator=g) for _ in range(3)]
    babble = BabbleNoise(sources, num_speakers=1, seed=0)
    seen = set()
    for seed in range(12):
        out = babble.sample(60, torch.Generator().manual_seed(seed))  # longer than a source
        k = _is_segment_of(out, sources)
        assert k is not None
        seen.add(k)
    assert seen == {0, 1, 2}
    for seed in range(6):  # exclusion by key (index keys for tensors)
        out = babble.sample(20, torch.Generator().manual_seed(seed), exclude="#1")
        assert _is_segment_of(out, sources) != 1
    many = BabbleNoise(sources, num_speakers=5, seed=0).sample(50)
    assert many.shape == (50,) and torch.isfinite(many).all()


def test_babble_from_files_and_bad_sources(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.mp4", 10)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    babble = BabbleNoise([bad, good], num_speakers=3, seed=0)
    out = babble.sample(8000, torch.Generator().manual_seed(0))
    assert out.shape == (8000,) and out.abs().max() > 0
    with pytest.raises(RuntimeError, match="no usable"):
        BabbleNoise([bad], num_speakers=1).sample(100)
    with pytest.raises(ValueError):
        BabbleNoise([])


def test_fixed_mixer_is_deterministic_per_utterance() -> None:
    speech = _speech()
    sources = [torch.randn(5000, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    mix = FixedNoiseMixer(BabbleNoise(sources, num_speakers=2, seed=3), snr_db=0.0, seed=7)
    again = FixedNoiseMixer(BabbleNoise(sources, num_speakers=2, seed=3), snr_db=0.0, seed=7)
    a = mix(speech, key="test/spk1/00001")
    assert torch.equal(a, again(speech, key="test/spk1/00001"))
    assert not torch.equal(a, mix(speech, key="test/spk1/00002"))
    assert abs(_snr(speech, a)) < 0.1
    assert FixedNoiseMixer(WhiteNoise(), snr_db=None)(speech, key="x") is speech


def test_noise_augment() -> None:
    speech = _speech()
    g = torch.Generator().manual_seed(0)
    assert NoiseAugment(WhiteNoise(), prob=0.0, generator=g)(speech) is speech
    assert NoiseAugment(WhiteNoise(), snrs=[None], generator=g)(speech) is speech
    out = NoiseAugment(WhiteNoise(), snrs=[0], prob=1.0, generator=g)(speech, key="u")
    assert abs(_snr(speech, out)) < 0.1


def test_noise_augment_babble_placeholder() -> None:
    aug = NoiseAugment("babble", snrs=[0.0])
    assert aug.needs_babble
    with pytest.raises(RuntimeError, match="bind"):
        aug(_speech())
    aug.bind(BabbleNoise([torch.randn(3000)], num_speakers=1))
    assert abs(_snr(_speech(), aug(_speech(), key="u"))) < 0.1
    assert isinstance(NoiseAugment("white").noise, WhiteNoise)
    with pytest.raises(ValueError, match="white"):
        NoiseAugment("pink")


def test_wrapped_slice_equals_repeat_then_slice():
    from avsr.data.noise import _wrapped_slice

    audio = torch.arange(7.0)
    for offset in range(7):
        for n in (0, 3, 7, 16):
            reps = -(-(offset + n) // 7)
            assert torch.equal(_wrapped_slice(audio, offset, n), audio.repeat(reps)[offset:offset + n])
