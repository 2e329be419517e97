"""Manifests as corpora: AV-HuBERT tsv/wrd and auto_avsr csv, read back from what
``avsr.prepare manifests`` writes and in the original repositories' own forms."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTENCES, write_clip

from avsr.data.dataset import AVDataset
from avsr.data.manifests import AutoAVSRManifest, AVHuBERTManifest, ManifestError
from avsr.data.table import PackedStrings, UtteranceTable
from avsr.data.units_tokenizer import UnitsTokenizer
from avsr.prepare.manifests import write_manifests
from avsr.prepare.pipeline import write_wav


def _prepared(root: Path, pieces: list[tuple[str, str, str]], seed: int) -> None:
    """A prepared corpus as avsr.prepare crop leaves it: mp4 + wav per piece, index.tsv."""
    lines = ["id\tsplit\tframes\tsamples\ttext"]
    for k, (uid, split, text) in enumerate(pieces):
        n = 10 + 2 * (k % 3)
        write_clip(root / f"{uid}.mp4", n, seed=seed + k)
        write_wav(root / f"{uid}.wav", 0.1 * np.sin(np.arange(n * 640) / 7.0))
        lines.append(f"{uid}\t{split}\t{n}\t{n * 640}\t{text}")
    (root / "index.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> UnitsTokenizer:
    """USR-style units (no SentencePiece model): letters and the word mark."""
    path = tmp_path_factory.mktemp("units") / "units.txt"
    chars = string.ascii_uppercase + "'"
    path.write_text("<unk> 1\n\u2581 2\n" + "".join(f"{c} {i + 3}\n" for i, c in
                                                     enumerate(chars)))
    return UnitsTokenizer(path)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory, units: UnitsTokenizer
              ) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("prepared")
    lrs3, vox2 = base / "lrs3", base / "vox2"
    _prepared(lrs3, [("pretrain/spk1/00001_00", "pretrain", SENTENCES[0]),
                     ("trainval/spk2/00001", "trainval", SENTENCES[1]),
                     ("trainval/spk2/00002", "trainval", SENTENCES[2]),
                     ("test/spk9/00001", "test", SENTENCES[3])], seed=0)
    _prepared(vox2, [("dev/mp4/id00001/vidA/00001", "dev", ""),
                     ("dev/mp4/id00002/vidB/00003", "dev", "")], seed=10)
    val = base / "val.txt"
    val.write_text("trainval/spk2/00002\n")
    out = base / "manifests"
    write_manifests({"lrs3": lrs3, "vox2": vox2}, out, ["lrs3_vox2_1759h"], val_list=val,
                    tokenizer=units)
    return out / "lrs3_vox2_1759h", lrs3, vox2


TRAIN_IDS = ["lrs3/pretrain/spk1/00001_00", "lrs3/trainval/spk2/00001",
             "vox2/dev/mp4/id00001/vidA/00001", "vox2/dev/mp4/id00002/vidB/00003"]


def test_avhubert_manifest_reads_prepare_output(manifests) -> None:
    folder, _, _ = manifests
    corpus = AVHuBERTManifest(folder)
    train = corpus.utterances("train")
    assert isinstance(train, UtteranceTable)
    assert [u.id for u in train] == TRAIN_IDS
    assert [u.text for u in train] == [SENTENCES[0], SENTENCES[1], "", ""]  # .wrd is lower
    assert all(Path(u.video_path).is_file() and u.audio_path.endswith(".wav")
               and Path(u.audio_path).is_file() for u in train)
    assert [u.num_frames for u in train] == [10, 12, 10, 12]
    assert [u.id for u in corpus.utterances("valid")] == ["lrs3/trainval/spk2/00002"]
    assert [u.id for u in corpus.utterances("test")] == ["lrs3/test/spk9/00001"]
    # the media decode: a real item through the dataset
    item = AVDataset(train, None)[1]
    assert item["video"].shape[0] == 12 and item["audio"].numel() == 12 * 640


def test_auto_avsr_manifest_reads_prepare_output(manifests, units) -> None:
    folder, lrs3, vox2 = manifests
    corpus = AutoAVSRManifest(labels_dir=folder, roots={"lrs3": lrs3, "vox2": vox2},
                              tokenizer=units)
    train = corpus.utterances("train")
    assert [u.id for u in train] == TRAIN_IDS
    assert [u.text for u in train] == [SENTENCES[0], SENTENCES[1], "", ""]
    assert [Path(u.video_path) for u in train][:2] == [
        lrs3 / "pretrain/spk1/00001_00.mp4", lrs3 / "trainval/spk2/00001.mp4"]
    assert all(Path(u.audio_path).is_file() for u in train)
    # without the tokenizer: media only (unlabelled use)
    assert AutoAVSRManifest(labels_dir=folder, roots={"lrs3": lrs3, "vox2": vox2}
                            ).utterances("train")[0].text == ""


def test_original_repository_forms(tmp_path: Path, units) -> None:
    """AV-HuBERT: '/' then absolute paths into separate video/ and audio/ trees; auto_avsr:
    <root>/<dataset>/<path> with <root>/labels/<name>.csv."""
    for fid, n in (("trainval/a/00001", 10), ("trainval/b/00002", 12)):
        write_clip(tmp_path / "lrs3" / "video" / f"{fid}.mp4", n)
        wav = tmp_path / "lrs3" / "audio" / f"{fid}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_wav(wav, np.zeros(n * 640))
    data = tmp_path / "433h_data"
    data.mkdir()
    (data / "train.tsv").write_text("/\n" + "".join(
        f"{fid}\t{tmp_path}/lrs3/video/{fid}.mp4\t{tmp_path}/lrs3/audio/{fid}.wav\t{n}\t{n * 640}"
        "\n" for fid, n in (("trainval/a/00001", 10), ("trainval/b/00002", 12))))
    (data / "train.wrd").write_text("place blue at f two now\nbin red by g nine soon\n")
    train = AVHuBERTManifest(data).utterances("train")
    assert [u.text for u in train] == [SENTENCES[0], SENTENCES[1]]
    assert [Path(u.audio_path).is_file() for u in train] == [True, True]
    # the data moved: media_root replaces the first line (paths relative to it)
    (data / "moved.tsv").write_text("/old/place\ntrainval/a/00001\tvideo/trainval/a/00001.mp4"
                                    "\taudio/trainval/a/00001.wav\t10\t6400\n")
    moved = AVHuBERTManifest(data, label=None, media_root=tmp_path / "lrs3")
    assert Path(moved.utterances("moved")[0].video_path).is_file()

    root = tmp_path / "auto_avsr"
    write_clip(root / "lrs3" / "lrs3_video_seg16s" / "trainval" / "a" / "00001.mp4", 10)
    (root / "labels").mkdir()
    ids = " ".join(map(str, units.encode(SENTENCES[4])))
    (root / "labels" / "lrs3_train_transcript_lengths_seg16s.csv").write_text(
        f"lrs3,lrs3_video_seg16s/trainval/a/00001.mp4,10,{ids}\n")
    utt = AutoAVSRManifest(root, tokenizer=units).utterances(
        "lrs3_train_transcript_lengths_seg16s")[0]
    assert utt.text == SENTENCES[4] and Path(utt.video_path).is_file()
    assert utt.audio_path == utt.video_path[:-4] + ".wav"  # auto_avsr's sibling rule


def test_bad_manifest_lines_are_named_or_counted(tmp_path: Path, units,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    rows = [f"u{k}\tv{k}.mp4\ta{k}.wav\t{10 + k}\t{(10 + k) * 640}" for k in range(4)]
    rows[2] = "u2\tv2.mp4\ta2.wav\tten\t6400"
    (tmp_path / "train.tsv").write_text("/media\n" + "\n".join(rows) + "\n")
    (tmp_path / "train.wrd").write_text("a\nb\nc\nd\n")
    with pytest.raises(ManifestError, match=r"train.tsv:4: .*positive integer \('ten'\)"):
        AVHuBERTManifest(tmp_path).utterances("train")
    lenient = AVHuBERTManifest(tmp_path, max_bad_fraction=0.25)
    assert [u.text for u in lenient.utterances("train")] == ["A", "B", "D"]  # wrd stays aligned
    assert lenient.bad_lines["train"][0][0] == 4 and "skipped 1 of 4" in caplog.text
    (tmp_path / "short.tsv").write_text("/media\n" + "\n".join(rows[:2]) + "\n")
    (tmp_path / "short.wrd").write_text("a\n")
    with pytest.raises(ManifestError, match=r"short.wrd ends at line 1 .*short.tsv"):
        AVHuBERTManifest(tmp_path).utterances("short")
    with pytest.raises(FileNotFoundError, match="label file of split 'nolabel'"):
        (tmp_path / "nolabel.tsv").write_text("/media\n" + rows[0] + "\n")
        AVHuBERTManifest(tmp_path).utterances("nolabel")
    (tmp_path / "empty.tsv").write_text("/media\n")
    with pytest.raises(ManifestError, match="empty.tsv: no usable utterance"):
        AVHuBERTManifest(tmp_path, label=None).utterances("empty")
    with pytest.raises(FileNotFoundError, match="manifest of split 'nope' not found"):
        AVHuBERTManifest(tmp_path, label=None).utterances("nope")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "t.csv").write_text("lrs3,a.mp4,10,1 2 3\nlrs3,b.mp4,10,x y\nlrs3,c.mp4\n")
    with pytest.raises(ManifestError, match=r"2 of 3 lines .*t.csv:2: token ids must be"):
        AutoAVSRManifest(tmp_path, tokenizer=units).utterances("t")
    with pytest.raises(ManifestError, match=r"t.csv:1: dataset 'lrs3' has no media"):
        AutoAVSRManifest(labels_dir=labels).utterances("t")


def test_packed_strings_and_table_round_trip() -> None:
    words = ["", "a", "héllo", "xyz", ""]
    packed = PackedStrings.from_strings(words)
    assert list(packed) == words
    assert list(packed.take(np.array([2, 0, 4, 2]))) == ["héllo", "", "", "héllo"]
    assert list(PackedStrings.concat([packed, packed.take(np.array([3]))])) == words + ["xyz"]
    from avsr.data.corpora import Utterance

    utts = [Utterance(f"s/{k}", f"/m/{k}.mp4", None if k else "/m/0.wav", "T" * k,
                      None if k == 2 else k + 1) for k in range(4)]
    table = UtteranceTable.from_utterances(utts)
    assert list(table) == utts and table[-1] == utts[-1]
    both = UtteranceTable.concat([table, table.take([1])])
    assert list(both) == utts + [utts[1]] and list(table[1:3]) == utts[1:3]
    # compact: a few arrays, no object per utterance
    big = UtteranceTable.from_columns([f"dev/mp4/id{k:05d}/v/00001" for k in range(20000)],
                                      [""] * 20000, [f"{k}.mp4" for k in range(20000)],
                                      [f"{k}.wav" for k in range(20000)], [50] * 20000, "/d")
    size = sum(c.data.nbytes + c.offsets.nbytes for c in (big.ids, big.texts, big.video,
                                                           big.audio))
    assert (size + big.num_frames.nbytes + big.base.nbytes) / len(big) < 100
