"""AVDataset: decoding, alignment, collate, skipping of bad items, cache, noise."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, write_clip, write_lrs3_txt

from avsr.data import dataset as dataset_module
from avsr.data.corpora import LRS3, Utterance
from avsr.data.loader import AVDataLoader
from avsr.data.dataset import AVDataset, TooManyBadItemsError, collate_fn
from avsr.data.io import SAMPLES_PER_FRAME
from avsr.data.noise import FixedNoiseMixer, WhiteNoise
from avsr.data.sampler import FrameBudgetBatchSampler
from avsr.data.tokenizer import Tokenizer, train_tokenizer
from avsr.data.transforms import AudioTransform, VideoTransform


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer(train_tokenizer(SENTENCES, tmp_path_factory.mktemp("tok") / "spm", 40))


def _dataset(utts: list[Utterance], tokenizer: Tokenizer, **kw) -> AVDataset:
    return AVDataset(utts, tokenizer, VideoTransform(train=False), AudioTransform(train=False),
                     **kw)


def test_items_and_collate(lrs3_root: Path, tokenizer: Tokenizer) -> None:
    utts = LRS3(lrs3_root).utterances("test")
    ds = _dataset(utts, tokenizer)
    items = [ds[i] for i in range(len(ds))]
    for item, utt in zip(items, utts):
        t = utt.num_frames
        assert item["video"].shape == (t, 1, 88, 88)
        assert item["audio"].shape == (t * SAMPLES_PER_FRAME,)  # aligned to the video
        assert item["tokens"].tolist() == tokenizer.encode(utt.text) and item["text"] == utt.text
    batch = ds.collate(items)
    B = len(utts)
    t_max = max(u.num_frames for u in utts)
    assert batch["video"].shape == (B, t_max, 1, 88, 88) and batch["video"].dtype == torch.float32
    assert batch["audio"].shape == (B, t_max * SAMPLES_PER_FRAME)
    assert batch["video_lengths"].tolist() == [u.num_frames for u in utts]
    assert batch["audio_lengths"].tolist() == [u.num_frames * SAMPLES_PER_FRAME for u in utts]
    L = batch["token_lengths"]
    assert batch["tokens"].shape == (B, int(L.max())) and batch["tokens"].dtype == torch.long
    for b in range(B):
        assert (batch["tokens"][b, L[b]:] == 0).all()
        assert (batch["video"][b, batch["video_lengths"][b]:] == 0).all()
    assert batch["ids"] == [u.id for u in utts] and batch["texts"] == [u.text for u in utts]
    assert batch["skipped"] == []


def test_absent_modality(lrs3_root: Path, tokenizer: Tokenizer) -> None:
    utts = LRS3(lrs3_root).utterances("test")
    audio_only = Utterance(utts[0].id, None, utts[0].audio_path, utts[0].text, None)
    ds = _dataset([audio_only, utts[1]], tokenizer)
    batch = collate_fn([ds[0], ds[1]])
    assert batch["video_lengths"][0] == 0 and batch["video_lengths"][1] == utts[1].num_frames
    assert batch["audio_lengths"][0] > 0 and (batch["video"][0] == 0).all()
    only_audio = _dataset(utts, tokenizer, modalities=("audio",))
    batch = collate_fn([only_audio[0]])
    assert batch["video"] is None and batch["video_lengths"].tolist() == [0]
    only_video = _dataset(utts, tokenizer, modalities=["video"])
    assert collate_fn([only_video[0]])["audio"] is None
    empty = collate_fn([None, None])
    assert empty["ids"] == [] and empty["video"] is None and empty["tokens"].shape == (0, 0)


@pytest.fixture
def bad_corpus(tmp_path: Path, lrs3_root: Path) -> list[Utterance]:
    """Two good utterances and four bad ones, in LRS3 layout."""
    spk = tmp_path / "test" / "spk1"
    spk.mkdir(parents=True)
    for i, src in enumerate(sorted((lrs3_root / "test" / "spk009").glob("*.mp4"))[:2]):
        shutil.copy(src, spk / f"good{i}.mp4")
        shutil.copy(src.with_suffix(".txt"), spk / f"good{i}.txt")
    data = (spk / "good0.mp4").read_bytes()
    (spk / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (spk / "text.mp4").write_text("this is not a video\n")
    write_clip(spk / "silent.mp4", 10, audio=False)
    write_clip(spk / "empty.mp4", 10)
    for name in ("truncated", "text", "silent"):
        write_lrs3_txt(spk / f"{name}.txt", SENTENCES[0], 10)
    write_lrs3_txt(spk / "empty.txt", "{LG}", 10)
    return LRS3(tmp_path).utterances("test")


def test_bad_items_are_skipped_counted_and_named(
    bad_corpus: list[Utterance], tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _dataset(bad_corpus, tokenizer, max_bad_fraction=1.0)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    good = {u.id for u, x in zip(bad_corpus, items) if x is not None}
    assert good == {"test/spk1/good0", "test/spk1/good1"}
    for name in ("truncated.mp4", "text.mp4", "silent.mp4", "empty.txt"):
        assert name in caplog.text
    batch = ds.collate(items)
    assert batch["ids"] == sorted(good) and len(batch["video_lengths"]) == 2
    assert sorted(s["id"].split("/")[-1] for s in batch["skipped"]) == [
        "empty", "silent", "text", "truncated"]
    summary = ds.skipped
    assert summary["seen"] == 6 and summary["skipped"] == 4
    assert summary["by_problem"]["no audio stream"] == 1
    assert summary["by_problem"]["empty transcript"] == 1
    assert any(f.endswith("truncated.mp4") for f in summary["files"])
    # video-only: the mp4 without audio is fine
    video_only = _dataset(bad_corpus, tokenizer, modalities=("video",), max_bad_fraction=1.0)
    assert video_only[2] is not None


def test_too_many_bad_items_raise(bad_corpus: list[Utterance], tokenizer: Tokenizer) -> None:
    ds = _dataset(bad_corpus, tokenizer, max_bad_fraction=0.25, min_items_for_check=4)
    with pytest.raises(TooManyBadItemsError, match="max_bad_fraction"):
        for i in range(len(ds)):
            ds[i]
    # a small set that never reaches the minimum is judged at the end of the loader
    ds = _dataset(bad_corpus, tokenizer, max_bad_fraction=0.25, min_items_for_check=100)
    loader = AVDataLoader(ds, batch_sampler=FrameBudgetBatchSampler([10] * 6, 20, shuffle=False),
                          collate_fn=ds.collate, consumer_prefetch=0)
    with pytest.raises(TooManyBadItemsError):
        list(loader)


def test_skips_reach_main_process_with_workers(bad_corpus: list[Utterance],
                                               tokenizer: Tokenizer) -> None:
    ds = _dataset(bad_corpus, tokenizer, max_bad_fraction=1.0)
    loader = AVDataLoader(ds, batch_sampler=FrameBudgetBatchSampler([10] * 6, 20, shuffle=False),
                          collate_fn=ds.collate, num_workers=2, consumer_prefetch=0)
    batches = list(loader)
    assert sum(len(b["ids"]) for b in batches) == 2
    summary = ds.skipped  # the main-process copy never decoded anything itself
    assert summary["skipped"] == 4 and summary["seen"] == 6 and len(summary["files"]) == 4


def test_cache_decodes_once(lrs3_root: Path, tokenizer: Tokenizer,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    utts = LRS3(lrs3_root).utterances("test")
    ds = _dataset(utts, tokenizer, cache=True)
    first = ds[0]
    calls = []
    monkeypatch.setattr(dataset_module, "load_video", lambda p: calls.append(p))
    second = ds[0]
    assert not calls and torch.equal(first["video"], second["video"])
    assert torch.equal(first["audio"], second["audio"])


def test_noise_is_applied_before_normalisation(lrs3_root: Path, tokenizer: Tokenizer) -> None:
    utts = LRS3(lrs3_root).utterances("test")
    clean = _dataset(utts, tokenizer)[0]["audio"]
    mixer = FixedNoiseMixer(WhiteNoise(), snr_db=0.0, seed=1)
    noisy = _dataset(utts, tokenizer, noise=mixer)[0]["audio"]
    again = _dataset(utts, tokenizer, noise=mixer)[0]["audio"]
    assert not torch.allclose(clean, noisy) and torch.equal(noisy, again)
    assert abs(noisy.std(unbiased=False).item() - 1) < 1e-3  # z-normalised after mixing
