"""Pre-decoded shards: written by ``python -m avsr.prepare shards`` from real mp4s, read by the
data module with ``storage="shards"``; damaged shards are counted, named skips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, make_lrs3_tree

from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule
from avsr.data.io import load_audio
from avsr.data.shards import ShardDataset, ShardIndex, shard_dataset
from avsr.prepare.__main__ import main as prepare_main
from avsr.utils.runtime import skip_totals


def _write(root: Path, out: Path, *extra: str) -> Path:
    prepare_main(["shards", "--root", str(root), "--out", str(out), *extra])
    return out


@pytest.fixture(scope="module")
def shards_f32(lrs3_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # two small shards so that items come from more than one file
    return _write(lrs3_root, tmp_path_factory.mktemp("sh") / "f32", "--audio-dtype", "float32",
                  "--shard-mb", "0.3")


def _dm(root: Path, tmp_path: Path, **kw) -> AVDataModule:
    args = dict(corpus=LRS3(root), tokenizer_path=tmp_path / "tok" / "spm.model", vocab_size=40,
                max_frames=40, seed=0, noise=None)
    return AVDataModule(**{**args, **kw})


def _epoch(dm: AVDataModule) -> list[dict]:
    dm.setup("fit")
    torch.manual_seed(5)  # augmentation draws from the global RNG without workers
    return list(dm.train_dataloader())


def test_shard_items_equal_the_decoded_mp4_items(lrs3_root: Path, shards_f32: Path,
                                                 tmp_path: Path) -> None:
    index = ShardIndex(shards_f32)
    assert len(index) == 11 and not index.bad_lines  # 8 trainval (val included) + 3 test
    assert len(list(shards_f32.glob("shard-*.bin"))) >= 2
    media = _epoch(_dm(lrs3_root, tmp_path))
    dm = _dm(lrs3_root, tmp_path, storage="shards", shards_dir=shards_f32)
    stored = _epoch(dm)
    assert isinstance(dm.datasets["train"], ShardDataset)
    assert [b["ids"] for b in stored] == [b["ids"] for b in media]
    for a, b in zip(media, stored):
        for key in ("video", "audio", "tokens", "video_lengths", "audio_lengths"):
            assert torch.equal(a[key], b[key]), key


def test_int16_audio_is_within_one_step_and_workers_read_shards(lrs3_root: Path, tmp_path: Path
                                                                ) -> None:
    out = _write(lrs3_root, tmp_path / "i16", "--splits", "train")
    index = ShardIndex(out)
    uid = "trainval/spk001/00000"
    video, audio = index.read(uid)
    wave = load_audio(lrs3_root / f"{uid}.mp4")
    assert audio.dtype == torch.float32 and audio.shape == wave.shape
    assert (audio - wave.clamp(-1, 1)).abs().max() <= 1 / 32768
    dm = _dm(lrs3_root, tmp_path, storage="shards", shards_dir=out, num_workers=2)
    dm.setup("fit")
    ids = [i for b in dm.train_dataloader() for i in b["ids"]]
    assert sorted(ids) == sorted(u.id for u in dm.corpus.utterances("train"))
    assert dm.skip_summary()["train"]["skipped"] == 0


def _damage(shards: Path, out: Path) -> dict[str, str]:
    """A copy of ``shards`` with one truncated shard, one flipped member byte and one unparsable
    index line; returns the damaged ids by problem."""
    shutil.copytree(shards, out)
    lines = (out / "index.jsonl").read_text().splitlines()
    entries = [json.loads(x) for x in lines[1:]]
    train = [e for e in entries if e["split"] == "train"]
    by_shard: dict[str, list[dict]] = {}
    for e in train:
        by_shard.setdefault(e["shard"], []).append(e)
    first, last = sorted(by_shard)[0], sorted(by_shard)[-1]
    cut = by_shard[last][-1]  # the last member of the last shard loses its tail
    path = out / last
    path.write_bytes(path.read_bytes()[: cut["video"][0] + 100])
    flipped = by_shard[first][0]
    data = bytearray((out / first).read_bytes())
    data[flipped["video"][0] + 7] ^= 0xFF
    (out / first).write_bytes(bytes(data))
    garbled = by_shard[first][1]
    number = lines.index(json.dumps(garbled))
    lines[number] = lines[number][:25]
    (out / "index.jsonl").write_text("\n".join(lines) + "\n")
    return {"truncated shard": cut["id"], "bad member": flipped["id"], "bad index": garbled["id"]}


def test_damaged_shards_are_counted_and_named_in_the_run_summary(
        lrs3_root: Path, shards_f32: Path, tmp_path: Path, caplog) -> None:
    damaged = _damage(shards_f32, tmp_path / "damaged")
    assert len(set(damaged.values())) == 3
    dm = _dm(lrs3_root, tmp_path, storage="shards", shards_dir=tmp_path / "damaged",
             max_bad_fraction=1.0, num_workers=2)
    dm.setup("fit")
    ids = [i for b in dm.train_dataloader() for i in b["ids"]]
    assert set(ids) == {u.id for u in dm.corpus.utterances("train")} - set(damaged.values())
    summary = dm.skip_summary()["train"]  # merged from the workers' reports
    assert summary["skipped_unique"] == 3
    assert summary["by_problem"] == {problem: 1 for problem in damaged}
    assert any(f.endswith("index.jsonl") for f in summary["files"])
    assert sum(f.endswith(".bin") for f in summary["files"]) == 2
    total = skip_totals(dm.skip_summary())
    assert total["total"] == 3
    assert "index lines cannot be parsed" in caplog.text


def test_undecodable_mp4_is_stored_as_an_error_and_skipped_with_its_file(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_lrs3_tree(root, {"trainval/spk001": SENTENCES[:3], "trainval/spk002": SENTENCES[3:4],
                          "test/spk009": SENTENCES[4:5]})
    (root / "val_ids.txt").write_text("trainval/spk002/00000\n")
    bad = root / "trainval" / "spk001" / "00001.mp4"
    bad.write_bytes(bad.read_bytes()[:300])  # cut inside the header: cannot be opened
    out = _write(root, tmp_path / "sh")
    dm = _dm(root, tmp_path, storage="shards", shards_dir=out, max_bad_fraction=1.0)
    dm.setup("fit")
    ids = [i for b in dm.train_dataloader() for i in b["ids"]]
    assert sorted(ids) == ["trainval/spk001/00000", "trainval/spk001/00002"]
    summary = dm.skip_summary()["train"]
    assert summary["files"] == [str(bad)]  # the original mp4, as without shards
    assert "corrupt or truncated file" in summary["by_problem"]


def test_storage_options_fail_early_with_clear_errors(lrs3_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shards_dir"):
        _dm(lrs3_root, tmp_path, storage="shards")
    with pytest.raises(ValueError, match="storage must be one of"):
        _dm(lrs3_root, tmp_path, storage="tar")
    with pytest.raises(FileNotFoundError, match="avsr.prepare shards"):
        _dm(lrs3_root, tmp_path, storage="shards", shards_dir=tmp_path / "none")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "index.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"junk/index.jsonl: first line is not"):
        _dm(lrs3_root, tmp_path, storage="shards", shards_dir=tmp_path / "junk")
    from avsr.data.lrw import WordDataset

    with pytest.raises(ValueError, match="not WordDataset"):
        shard_dataset(WordDataset)


def test_missing_shard_file_is_a_named_skip(lrs3_root: Path, shards_f32: Path,
                                            tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(shards_f32, copy)
    index = ShardIndex(copy)
    uid = next(iter(index.entries))
    (copy / index.entries[uid]["shard"]).unlink()
    utts = index.resolve([u for u in LRS3(lrs3_root).utterances("trainval") if u.id == uid])
    dataset = ShardDataset(utts, None, max_bad_fraction=1.0)
    assert dataset[0] is None
    assert dataset.skipped["by_problem"] == {"missing shard file": 1}
    assert dataset.skipped["files"] == [str(copy / index.entries[uid]["shard"])]


def test_a_failed_rewrite_leaves_the_previous_shards_readable(lrs3_root: Path,
                                                               tmp_path: Path) -> None:
    from avsr.prepare.shards import corpus_utterances, write_shards

    out = _write(lrs3_root, tmp_path / "sh", "--splits", "train", "--shard-mb", "0.2")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing():
        items = corpus_utterances("lrs3", lrs3_root, ["train"])
        yield from [next(items), next(items)]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_shards(failing(), out, shard_mb=0.2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary left
    index = ShardIndex(out)
    assert all(index.read(uid)[0] is not None for uid in index.entries)
