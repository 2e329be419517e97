"""Word-level lip reading: LRW reader, synthetic word clips, word stage, export -> init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides, write_clip
from hydra import compose, initialize_config_dir

from avsr.data.corpora import LRS3
from avsr.data.io import load_audio, load_video
from avsr.data.lrw import (LRW, WordDataModule, WordVocabulary, read_word_info,
                           word_boundary)
from avsr.data.lrw_synth import cut_word_corpus, extract_clip, read_word_timings
from avsr.export_frontend import export_frontend
from avsr.models.word_backend import TemporalConvEncoder, WordHead
from avsr.train import train
from avsr.checkpoints.weights import apply_init, load_weights

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
WORDS = ["ABOUT", "BLUE", "WORLD"]


def _write_lrw_txt(path: Path, word: str, duration: float) -> None:
    path.write_text(f"Text: {word}\nConf: 5\n\nSource: x\nDuration: {duration:.2f} seconds\n")


@pytest.fixture(scope="module")
def lrw_root(tmp_path_factory) -> Path:
    """<root>/<WORD>/{train,val,test}/<WORD>_<id>.{mp4,txt}: 3 words, 2/1/1 clips each."""
    root = tmp_path_factory.mktemp("lrw")
    k = 0
    for word in WORDS:
        for split, n in (("train", 2), ("val", 1), ("test", 1)):
            for i in range(1, n + 1):
                stem = root / word / split / f"{word}_{i:05d}"
                write_clip(stem.with_suffix(".mp4"), 29, seed=k)
                _write_lrw_txt(stem.with_suffix(".txt"), word, 0.2 + 0.1 * (k % 3))
                k += 1
    return root


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides))


# ---------------------------------------------------------------------------- reader
def test_reader_lists_the_official_layout(lrw_root):
    lrw = LRW(lrw_root)
    assert lrw.words() == WORDS
    train = lrw.utterances("train")
    assert [c.id for c in train[:2]] == ["ABOUT/train/ABOUT_00001", "ABOUT/train/ABOUT_00002"]
    assert len(train) == 6 and len(lrw.utterances("test")) == 3
    assert {c.text for c in train} == set(WORDS)
    assert train[1].duration == pytest.approx(0.3) and train[1].num_frames == 29
    with pytest.raises(ValueError, match="split"):
        lrw.utterances("pretrain")


def test_reader_rejects_a_transcript_of_another_word(tmp_path):
    stem = tmp_path / "ABOUT" / "train" / "ABOUT_00001"
    write_clip(stem.with_suffix(".mp4"), 29)
    _write_lrw_txt(stem.with_suffix(".txt"), "BLUE", 0.3)
    with pytest.raises(ValueError, match="BLUE"):
        LRW(tmp_path).utterances("train")
    assert read_word_info(stem.with_suffix(".txt")) == ("BLUE", 0.3)


def test_word_boundary_matches_the_lrw_convention():
    # duration 0.4 s: half width int(0.2 * 25) = 5 frames around index 14, plus one each side
    expected = torch.zeros(29)
    expected[8:20] = 1
    assert torch.equal(word_boundary(0.4, 29), expected)
    assert word_boundary(None, 29).sum() == 29
    assert word_boundary(5.0, 29).sum() == 29  # longer than the clip: clipped


def test_datamodule_batches_labels_boundaries_and_transformed_video(lrw_root):
    dm = WordDataModule(corpus=LRW(lrw_root), modalities=("audio", "video"), max_frames=29 * 4,
                        max_batch_size=4, num_buckets=1, noise=None)
    vocab = dm.load_tokenizer()
    assert vocab.vocab_size == 3 and vocab.decode(vocab.encode("blue")) == "BLUE"
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (3, 29, 1, 88, 88)  # 96 px stored, 88 px centre crop
    assert batch["audio"].shape == (3, 29 * 640)
    labels = [WORDS.index(i.split("/")[0]) for i in batch["ids"]]
    assert batch["labels"].tolist() == labels
    assert batch["boundaries"].shape == (3, 29)
    durations = {c.id: c.duration for c in LRW(lrw_root).utterances("val")}
    for row, uid in zip(batch["boundaries"], batch["ids"]):
        assert torch.equal(row, word_boundary(durations[uid], 29))
    with pytest.raises(ValueError, match="expected 500"):
        WordDataModule(corpus=LRW(lrw_root), vocab_size=500).load_tokenizer()


def test_vocabulary_rejects_unknown_words():
    with pytest.raises(KeyError):
        WordVocabulary(["A", "B"]).encode("C")


# ---------------------------------------------------------------------------- clip cutting
def test_extract_clip_is_centred_on_the_word():
    video = torch.arange(60, dtype=torch.uint8).view(60, 1, 1).expand(60, 4, 4).contiguous()
    audio = torch.arange(60 * 640, dtype=torch.float32)
    # word 0.80-1.20 s: centre 1.0 s is frame 25, the middle (index 14) of 29 frames
    clip_v, clip_a, first = extract_clip(video, audio, 0.80, 1.20)
    assert first == 11 and clip_v.shape == (29, 4, 4)
    assert clip_v[14, 0, 0] == 25 and clip_v[:, 0, 0].tolist() == list(range(11, 40))
    assert torch.equal(clip_a, audio[11 * 640:40 * 640])
    # near the start: frames before 0 repeat frame 0, audio before 0 is silence
    clip_v, clip_a, first = extract_clip(video, audio, 0.10, 0.30)
    assert first == -9 and clip_v[14, 0, 0] == 5
    assert clip_v[:10, 0, 0].tolist() == [0] * 10 and clip_v[10, 0, 0] == 1
    assert clip_a[:9 * 640].abs().sum() == 0 and clip_a[9 * 640] == 0.0
    assert clip_a[9 * 640 + 1] == 1.0


@pytest.fixture(scope="module")
def words_root(tiny_synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("words") / "grid_words29"
    cut_word_corpus(tiny_synth_root, out, max_per_word={"train": 3, "val": 2, "test": 2},
                    min_train_per_word=2)
    return out


def test_cut_clips_are_29_frames_centred_on_their_word(tiny_synth_root, words_root):
    summary = json.loads((words_root / "corpus.json").read_text())
    assert summary["complete"] and summary["words"]
    lrw = LRW(words_root)
    assert lrw.words() == summary["words"]
    sentences = LRS3(tiny_synth_root)
    speakers = {s: {u.id.rsplit("/", 1)[0] for u in sentences.utterances(s)}
                for s in ("train", "val", "test")}
    clips = lrw.utterances("test")[:3] + lrw.utterances("train")[:3]
    for clip in clips:
        lines = Path(clip.video_path).with_suffix(".txt").read_text().splitlines()
        assert lines[4].startswith("Duration:")  # LRW's line order
        source, start, end = lines[3].split()[1:]
        split = clip.id.split("/")[1]
        assert source.rsplit("/", 1)[0] in speakers[split]  # the speaker split is kept
        timings = read_word_timings(tiny_synth_root / f"{source}.txt")
        word = [w for w, s, e in timings if f"{s:.2f}" == start and f"{e:.2f}" == end]
        assert word == [clip.text]  # the label is the word at that time in the sentence
        video = load_video(clip.video_path)
        assert video.shape[0] == 29 and load_audio(clip.audio_path).numel() >= 28 * 640
        # the middle frame is the source frame at the word's centre (h264 re-encoded)
        src = load_video(tiny_synth_root / f"{source}.mp4").float()
        centre = int((float(start) + float(end)) / 2 * 25)
        centre = min(centre, src.shape[0] - 1)
        err = (video[14].float() - src[centre]).abs().mean()
        assert err < 4.0, err
    # test speakers are unseen in training
    train_sources = {p.read_text().splitlines()[3].split()[1].rsplit("/", 1)[0]
                     for p in words_root.glob("*/train/*.txt")}
    assert not train_sources & speakers["test"] and not train_sources & speakers["val"]
    # re-running with the same arguments finds the complete corpus; other arguments refuse
    again = cut_word_corpus(tiny_synth_root, words_root, max_per_word={"train": 3, "val": 2,
                                                                       "test": 2},
                            min_train_per_word=2)
    assert again == summary
    with pytest.raises(ValueError, match="cut with"):
        cut_word_corpus(tiny_synth_root, words_root, min_train_per_word=2)


# ---------------------------------------------------------------------------- model parts
def test_temporal_conv_padding_does_not_change_a_row():
    torch.manual_seed(0)
    enc = TemporalConvEncoder(d_model=12, num_layers=2, dropout=0.0).eval()
    head = WordHead(12, 5, hidden_dim=8)
    x = torch.randn(2, 9, 12)
    lengths = torch.tensor([9, 6])
    y, out_len = enc(x, lengths)
    alone, _ = enc(x[1:, :6], lengths[1:])
    torch.testing.assert_close(y[1, :6], alone[0])
    assert y[1, 6:].abs().sum() == 0 and torch.equal(out_len, lengths)
    torch.testing.assert_close(head(y, lengths)[1], head(alone, lengths[1:])[0])
    with pytest.raises(ValueError, match=r"\(B, T, 12\)"):
        enc(torch.randn(2, 9, 10))


def test_init_strict_and_prefix(tmp_path):
    src, dst = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save({"state_dict": {f"net.{k}": v for k, v in src.state_dict().items()}},
               tmp_path / "w.pt")
    path = str(tmp_path / "w.pt")
    report = load_weights(dst, {"path": path, "format": "weights", "prefix": "net."})
    assert report["loaded"] == ["bias", "weight"] and torch.equal(dst.weight, src.weight)
    with pytest.raises(ValueError, match="missing"):
        load_weights(torch.nn.Linear(3, 4), {"path": path, "format": "weights", "prefix": "net."})
    with pytest.raises(ValueError, match="no weights under"):
        load_weights(dst, {"path": path, "format": "weights", "prefix": "other."})
    with pytest.raises(AttributeError):
        apply_init(dst, [{"path": path, "format": "weights", "target": "nope"}])


# ---------------------------------------------------------------------------- end to end
def _word_overrides(root: Path, out: Path, words: Path) -> list[str]:
    # the sentence-model shrinking of tiny_overrides minus the decoder (the word model has none)
    # and the transformer's keys (the back-end here is the temporal convolution encoder)
    keep = [o for o in tiny_overrides(root, out)
            if not o.startswith(("model.decoder.", "model.encoder."))]
    return [*keep, "data.vocab_size=null", "data.corpus.min_train_per_word=2",
            "data.corpus.max_per_word={train: 3, val: 2, test: 2}", "model.encoder.d_model=12",
            "model.encoder.num_layers=1", f"data.corpus.out_dir={words}"]


class _FrontendProbe(pl.Callback):
    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.weights = {k: v.clone() for k, v in
                        pl_module.model.video_frontend.state_dict().items()}


def test_synth_words_trains_exports_and_initialises_a_sentence_run(tiny_synth_root, words_root,
                                                                  tmp_path):
    out = tmp_path / "words_run"
    cfg = _compose("+experiment=synth_words", *_word_overrides(tiny_synth_root, out, words_root),
                   "trainer.max_steps=2", "trainer.max_time=null", "stage.objective.mixup_alpha=0.4",
                   "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
                   "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1")
    summary = train(cfg)
    assert summary["global_step"] == 2
    assert 0.0 <= summary["test"]["test/acc_video"] <= 1.0
    assert "val/acc_video" in summary["metrics"]
    frontend = tmp_path / "frontend.pt"
    exported = export_frontend(out / "checkpoints" / "last.ckpt", frontend)
    assert exported["config"]["widths"] == [4, 4, 8, 8]

    probe = _FrontendProbe()
    sentence = _compose("+experiment=synth_grid", "debug=fdr", "stage.objective.modalities=[video]",
                        *tiny_overrides(tiny_synth_root, tmp_path / "sentence"),
                        f"init=[{{format: weights, path: '{frontend}', target: video_frontend}}]")
    train(sentence, extra_callbacks=[probe])
    assert probe.weights.keys() == exported["state_dict"].keys()
    for k, v in exported["state_dict"].items():
        assert torch.equal(probe.weights[k], v), k


def test_synth_words_fast_dev_run_audiovisual(tiny_synth_root, words_root, tmp_path):
    cfg = _compose("+experiment=synth_words",
                   *_word_overrides(tiny_synth_root, tmp_path, words_root),
                   "debug=fdr", "stage.objective.modalities=[audio,video,audiovisual]",
                   "data.modalities=[audio,video]")
    summary = train(cfg)
    assert summary["global_step"] == 1
    assert {"test/acc_audio", "test/acc_video", "test/acc_audiovisual"} <= set(summary["test"])
