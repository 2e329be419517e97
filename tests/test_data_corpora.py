"""Corpus readers (LRS3 / LRS2 layouts) and PyAV decoding of generated clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, make_lrs3_tree, write_clip

from avsr.data.corpora import LRS2, LRS3, Utterance, normalize_text, read_transcript
from avsr.data.io import SAMPLES_PER_FRAME, load_audio, load_video, probe


def test_normalize_text() -> None:
    assert normalize_text("  hello {LG}  World\t{NS} ") == "HELLO WORLD"
    assert normalize_text("{LG}") == ""


def test_lrs3_splits(lrs3_root: Path) -> None:
    corpus = LRS3(lrs3_root)
    trainval = corpus.utterances("trainval")
    assert len(trainval) == 8
    assert [u.id for u in trainval] == sorted(u.id for u in trainval)
    u = trainval[0]
    assert isinstance(u, Utterance) and u.id == "trainval/spk001/00000"
    assert u.text == SENTENCES[0]
    assert u.video_path == u.audio_path == str(lrs3_root / "trainval/spk001/00000.mp4")
    assert Path(u.video_path).is_absolute()
    # timings end at the last frame of the clip
    assert u.num_frames == probe(u.video_path)["num_frames"]
    train, val = corpus.utterances("train"), corpus.utterances("val")
    assert [v.id for v in val] == ["trainval/spk003/00000", "trainval/spk003/00001"]
    assert len(train) == 6 and not {t.id for t in train} & {v.id for v in val}
    assert len(corpus.utterances("test")) == 3
    with pytest.raises(ValueError, match="unknown LRS3 split"):
        corpus.utterances("dev")
    with pytest.raises(FileNotFoundError, match="pretrain"):
        corpus.utterances("pretrain")


def test_lrs3_val_list_and_wav(tmp_path: Path) -> None:
    make_lrs3_tree(tmp_path, {"trainval/a": SENTENCES[:2], "trainval/b": SENTENCES[2:3]}, wav=True)
    corpus = LRS3(tmp_path)
    with pytest.raises(FileNotFoundError, match="val_ids.txt"):
        corpus.utterances("train")
    assert len(corpus.utterances("trainval")) == 3
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists/val.txt").write_text("# held out\ntrainval/b/00000.mp4\n\n")
    corpus = LRS3(tmp_path, val_list="lists/val.txt")
    assert [u.id for u in corpus.utterances("val")] == ["trainval/b/00000"]
    u = corpus.utterances("train")[0]
    assert u.audio_path.endswith(".wav") and u.video_path.endswith(".mp4")
    assert load_audio(u.audio_path).shape[0] == u.num_frames * SAMPLES_PER_FRAME
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        LRS3(tmp_path, val_list="nope.txt")
    with pytest.raises(FileNotFoundError, match="LRS3 root"):
        LRS3(tmp_path / "missing")


def test_lrs2_layout(tmp_path: Path) -> None:
    main = {"5535415699068794046/00001": "HELLO THERE",
            "5535415699068794046/00002": "GOOD {LG} DAY",
            "6000000000000000000/00001": "SEE YOU"}
    for i, (uid, text) in enumerate(main.items()):
        write_clip(tmp_path / "main" / f"{uid}.mp4", 8, seed=i)
        (tmp_path / "main" / f"{uid}.txt").write_text(f"Text:  {text}\nConf:  4\n")
    write_clip(tmp_path / "pretrain/7000000000000000000/00001.mp4", 10)
    (tmp_path / "pretrain/7000000000000000000/00001.txt").write_text(
        "Text:  A LONGER ONE\nConf: 3\n\nWORD START END ASDSCORE\nA 0.0 0.1 1\nLONGER 0.1 0.3 1\n"
        "ONE 0.3 0.4 1\n")
    (tmp_path / "train.txt").write_text("5535415699068794046/00002\n5535415699068794046/00001\n")
    (tmp_path / "val.txt").write_text("6000000000000000000/00001\n")
    (tmp_path / "test.txt").write_text("6000000000000000000/00001 NF\n9999/00001 NF\n")
    (tmp_path / "pretrain.txt").write_text("7000000000000000000/00001\n")
    corpus = LRS2(tmp_path)
    train = corpus.utterances("train")
    assert [u.id for u in train] == ["main/5535415699068794046/00001",
                                     "main/5535415699068794046/00002"]
    assert train[1].text == "GOOD DAY" and train[1].num_frames is None
    test = corpus.utterances("test")  # the second listed id has no media: left out, warned
    assert [u.id for u in test] == ["main/6000000000000000000/00001"]
    (pre,) = corpus.utterances("pretrain")
    assert pre.id == "pretrain/7000000000000000000/00001" and pre.num_frames == 10
    (tmp_path / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val.txt"):
        corpus.utterances("val")


def test_read_transcript_requires_text(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("Conf: 1\n")
    with pytest.raises(ValueError, match="x.txt"):
        read_transcript(tmp_path / "x.txt")


def test_pyav_decode_shapes(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "a.mp4", 14)
    video, audio = load_video(path), load_audio(path)
    assert video.shape == (14, 96, 96) and video.dtype == torch.uint8
    assert audio.dtype == torch.float32 and audio.ndim == 1
    # AAC adds a codec tail; the dataset trims to frames x 640
    assert abs(audio.shape[0] - 14 * SAMPLES_PER_FRAME) <= 1024
