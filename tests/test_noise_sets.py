"""Noise sets from a MUSAN-like folder: categories, leak-free splits, babble of N speakers,
and their use in training augmentation and the evaluation matrix."""

from __future__ import annotations

import wave
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from avsr.data.noise import NoiseAugment
from avsr.data.noise_sets import NoiseChoice, folder_noise, noise_files

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
SR = 16000
N = 4000  # 0.25 s files: FFT bins of 4 Hz


def _write(path: Path, freq: float) -> None:
    """A pure tone: the file is recognisable in any mixture by its FFT peak."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.round(8000 * np.sin(2 * np.pi * freq * np.arange(N) / SR)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(x.tobytes())


@pytest.fixture(scope="module")
def musan(tmp_path_factory) -> tuple[Path, dict[Path, float]]:
    """MUSAN layout, every file a distinct tone (multiples of 100 Hz: exact FFT bins)."""
    root = tmp_path_factory.mktemp("musan")
    freqs = {}
    k = 1
    for cat, source, count in (("music", "fma", 12), ("noise", "free-sound", 12),
                               ("speech", "librivox", 30)):
        for i in range(count):
            path = root / cat / source / f"{cat}-{source}-{i:04d}.wav"
            _write(path, 100.0 * k)
            freqs[path] = 100.0 * k
            k += 1
    for chunk in range(3):  # 10 s chunks of one recording, AV-HuBERT's "<recording>-<i>.wav"
        path = root / "speech" / "chunks" / f"speech-long-0000-{chunk}.wav"
        _write(path, 100.0 * k)
        freqs[path] = 100.0 * k
        k += 1
    return root, freqs


def _peaks(x: torch.Tensor) -> set[float]:
    # any window of a tone repeated from a random offset keeps its one spectral line
    spec = np.abs(np.fft.rfft(x.numpy()[:N].astype(np.float64)))
    freqs = np.fft.rfftfreq(N, 1 / SR)
    return {round(float(f)) for f in freqs[spec > 0.2 * spec.max()]}


def test_splits_partition_each_category_and_are_stable(musan) -> None:
    root, _ = musan
    for cat in ("music", "noise", "speech"):
        parts = {s: set(noise_files(root, cat, s)) for s in ("train", "valid", "test")}
        assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["valid"])
        assert set.union(*parts.values()) == set(noise_files(root, cat, None))
        assert parts["train"] and parts["test"]  # both splits are used
    assert noise_files(root, "music", "test") == noise_files(root, "music", "test")
    # a recording's chunks share a split only when grouped
    grouped = {s for s in ("train", "valid", "test")
               for p in noise_files(root, "speech", s, group_regex=r"(.*-\d+)-\d+")
               if p.parent.name == "chunks"}
    assert len(grouped) == 1
    with pytest.raises(FileNotFoundError):
        noise_files(root, "nature", "train")


def test_training_noise_never_draws_a_test_file(musan) -> None:
    root, freqs = musan
    train = {freqs[p] for p in noise_files(root, "music", "train")}
    test = {freqs[p] for p in noise_files(root, "music", "test")}
    src, g = folder_noise(root, "music", "train"), torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(60):
        x = src.sample(N, g)
        peaks = _peaks(x)
        assert len(peaks) == 1 and peaks <= train, peaks
        assert abs(float(x.pow(2).mean()) - 1.0) < 1e-3  # unit power, ready for mix_at_snr
        seen |= peaks
    assert len(seen) > len(train) // 2 and not seen & test


def test_babble_mixes_n_training_speakers(musan) -> None:
    root, freqs = musan
    train = {freqs[p] for p in noise_files(root, "speech", "train")}
    babble = folder_noise(root, "babble", "train", num_speakers=5)
    counts = []
    for i in range(10):
        peaks = _peaks(babble.sample(N, torch.Generator().manual_seed(i)))
        assert peaks <= train
        counts.append(len(peaks))
    assert max(counts) <= 5 and np.mean(counts) > 3  # 5 talkers (a repeat now and then)
    assert folder_noise(root, "babble", "test").num_speakers == 30  # AV-HuBERT's default


def test_noise_choice_picks_categories_by_weight(musan) -> None:
    root, freqs = musan
    music = {freqs[p] for p in noise_files(root, "music", "train")}
    choice = NoiseChoice({"music": folder_noise(root, "music"),
                          "noise": folder_noise(root, "noise")}, weights=[3, 1])
    g = torch.Generator().manual_seed(0)
    hits = sum(bool(_peaks(choice.sample(N, g)) <= music) for _ in range(200))
    assert 130 < hits < 170  # ~150 of 200 draws are music
    aug = NoiseAugment(choice, snrs=[0.0], generator=torch.Generator().manual_seed(1))
    speech = torch.randn(N)
    assert not torch.equal(aug(speech), speech)


def test_musan_config_in_training_and_in_the_evaluation_matrix(musan, lrs3_root, tmp_path
                                                              ) -> None:
    root, freqs = musan
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=lrs3", f"data.corpus.root={lrs3_root}", "data.vocab_size=30",
            f"data.corpus.val_list={lrs3_root}/val_ids.txt",
            f"data.tokenizer_path={tmp_path}/spm.model", "data.num_workers=0",
            "+data/noise=musan", f"musan_root={root}", f"paths.output_dir={tmp_path}"])
    assert list(cfg.eval.noise.types) == ["babble", "babble_musan", "music", "noise"]
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm.noise.noise, NoiseChoice) and not dm.noise.needs_babble
    assert set(dm.test_noise) == {"babble_musan", "music", "noise"}
    test_music = {freqs[p] for p in noise_files(root, "music", "test")}

    def first_audio(kind, snr):
        batch = next(iter(dm.test_dataloader_for(kind, snr)))
        return batch["ids"], batch["audio"]

    ids, clean = first_audio(None, None)
    ids2, noisy = first_audio("music", -20.0)
    _, again = first_audio("music", -20.0)
    assert ids == ids2 and torch.equal(noisy, again)  # the noisy test set is fixed
    assert not torch.allclose(noisy, clean)
    n = int(dm.datasets["test/music/-20.0"].utterances[0].num_frames or 0)
    # at -20 dB the test music dominates: its tone is the strongest line of the mixture
    spec = np.abs(np.fft.rfft(noisy[0].numpy()[:N].astype(np.float64)))
    assert round(float(np.fft.rfftfreq(N, 1 / SR)[spec.argmax()])) in test_music, n
    with pytest.raises(ValueError, match="music"):
        dm.test_dataloader_for("traffic", 0.0)
