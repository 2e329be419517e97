"""Training sets as compositions of corpus parts: pools, weights, transcripts, bad input,
and the Hydra configs that compose them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import hydra
import numpy as np
import pytest
from conftest import SENTENCES, make_lrs3_tree, write_clip
from hydra import compose, initialize_config_dir

from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule
from avsr.data.parts import TrainPart
from avsr.data.sampler import FrameBudgetBatchSampler
from avsr.data.table import UtteranceTable
from avsr.data.voxceleb2 import VoxCeleb2
from avsr.prepare.pipeline import write_wav

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def lrs3_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LRS3 with pretrain (4), trainval (6, 2 of them validation) and test (2)."""
    root = tmp_path_factory.mktemp("lrs3_parts")
    make_lrs3_tree(root, {"pretrain/spk101": SENTENCES[:4], "trainval/spk001": SENTENCES[:3],
                          "trainval/spk002": SENTENCES[3:6], "test/spk009": SENTENCES[:2]})
    (root / "val_ids.txt").write_text("trainval/spk002/00000\ntrainval/spk002/00001\n")
    return root


@pytest.fixture(scope="module")
def vox2_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared VoxCeleb2 (no transcripts) with the index.tsv that avsr.prepare crop writes."""
    root = tmp_path_factory.mktemp("vox2")
    lines = ["id\tsplit\tframes\tsamples\ttext"]
    for k in range(5):
        uid = f"dev/mp4/id0000{k % 2}/vid{k}/0000{k}"
        write_clip(root / f"{uid}.mp4", 10 + k, seed=20 + k)
        t = np.arange((10 + k) * 640) / 16000
        write_wav(root / f"{uid}.wav", 0.2 * np.sin(2 * np.pi * 300 * t))
        lines.append(f"{uid}\tdev\t{10 + k}\t{(10 + k) * 640}\t")
    (root / "index.tsv").write_text("\n".join(lines) + "\n")
    return root


def _dm(root: Path, tmp_path: Path, **kw) -> AVDataModule:
    args = dict(corpus=LRS3(root), tokenizer_path=tmp_path / "spm.model", vocab_size=40,
                max_frames=60, seed=0)
    return AVDataModule(**{**args, **kw})


def _part(**kw) -> TrainPart:
    return TrainPart(**kw)


def _seen(loader) -> Counter:
    return Counter(i for b in loader for i in b["ids"])


def test_parts_compose_into_one_training_set(lrs3_parts: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_parts, tmp_path, train_sets={"pretrain": _part(split="pretrain"),
                                               "trainval": _part(split="train")})
    dm.setup("fit")
    corpus = LRS3(lrs3_parts)
    expected = {u.id for s in ("pretrain", "train") for u in corpus.utterances(s)}
    assert len(expected) == 8
    seen = _seen(dm.train_dataloader())
    assert set(seen) == expected and set(seen.values()) == {1}  # each once per epoch
    # validation and test stay the corpus's splits; the tokenizer saw both parts' text
    assert sum(len(b["ids"]) for b in dm.val_dataloader()) == 2
    assert dm.composition().names == ["pretrain", "trainval"]


def test_default_is_the_single_split(lrs3_parts: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_parts, tmp_path)
    dm.setup("fit")
    assert {u.id for u in dm.datasets["train"].utterances} == {
        u.id for u in LRS3(lrs3_parts).utterances("train")}
    with pytest.raises(RuntimeError, match="no data.train_sets"):
        dm.composition()


def test_weights_draw_parts_more_or_less_often(lrs3_parts: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # one bucket: a share is drawn from the part's members of a bucket (4 here)
    dm = _dm(lrs3_parts, tmp_path, max_frames=1000, num_buckets=1,
             train_sets={"pretrain": _part(split="pretrain", weight=2.0),
                         "trainval": _part(split="train", weight=0.5)})
    dm.setup("fit")
    loader = dm.train_dataloader()
    pre = {u.id for u in LRS3(lrs3_parts).utterances("pretrain")}
    counts, lengths, halves = [], [], []
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        seen = _seen(loader)
        counts.append(seen)
        lengths.append(len(loader))
        assert all(seen[i] == 2 for i in pre)  # weight 2: twice per epoch
        half = {i for i in seen if i not in pre}
        assert len(half) == 2 and all(seen[i] == 1 for i in half)  # 0.5 of 4
        halves.append(frozenset(half))
    assert len(set(lengths)) == 1  # the same batch count every epoch (Lightning's len)
    assert len(set(halves)) > 1  # another half in another epoch
    # one bucket per utterance: no share to draw, the same half every epoch: a warning
    lengths = [10, 12, 14, 16, 10, 12, 14, 16]
    FrameBudgetBatchSampler(lengths, 100, groups=[0, 0, 0, 0, 1, 1, 1, 1],
                            group_weights=[2.0, 0.5], num_buckets=4)
    assert "part 1 (weight 0.5): 4 of its 4 items lie in length buckets too small" in caplog.text


def test_unit_weights_leave_the_batches_unchanged() -> None:
    lengths = np.random.default_rng(0).integers(5, 120, 300)
    groups = np.arange(300) % 3
    plain = FrameBudgetBatchSampler(lengths, 400, seed=3)
    weighted = FrameBudgetBatchSampler(lengths, 400, seed=3, groups=groups,
                                       group_weights=[1, 1.0, 1])
    assert list(plain) == list(weighted)
    with pytest.raises(ValueError, match="group_weights must be positive"):
        FrameBudgetBatchSampler(lengths, 400, groups=groups, group_weights=[1, 0, 1])


def test_labelled_and_unlabelled_pools(lrs3_parts: Path, vox2_root: Path, tmp_path: Path
                                       ) -> None:
    parts = {"trainval": _part(split="train"),
             "vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev", labelled=False)}
    dm = _dm(lrs3_parts, tmp_path, train_sets=parts, train_data="labelled+unlabelled")
    dm.setup("fit")
    labelled = {u.id for u in dm.datasets["train"].utterances}
    unlabelled = {u.id for u in dm.datasets["unlabelled"].utterances}
    assert labelled == {u.id for u in LRS3(lrs3_parts).utterances("train")}
    assert unlabelled == labelled | {u.id for u in VoxCeleb2(vox2_root).utterances("dev")}
    loaders = dm.train_dataloader()
    assert set(_seen(loaders["unlabelled"])) == unlabelled  # media of every part load
    # self-supervised pre-training: every part
    ssl = _dm(lrs3_parts, tmp_path, train_sets=parts, train_data="all")
    ssl.setup("fit")
    assert len(ssl.datasets["train"]) == 9
    # low resource: labelled_fraction draws from the labelled parts only
    low = _dm(lrs3_parts, tmp_path, train_sets=parts, train_data="labelled+unlabelled",
              labelled_fraction=0.5)
    low.setup("fit")
    assert len(low.datasets["train"]) == 2 and len(low.datasets["unlabelled"]) == 9
    assert {u.id for u in low.datasets["train"].utterances} <= labelled


def test_transcripts_file_labels_a_part(lrs3_parts: Path, vox2_root: Path, tmp_path: Path
                                        ) -> None:
    ids = [u.id for u in VoxCeleb2(vox2_root).utterances("dev")]
    text = tmp_path / "whisper.txt"
    text.write_text("".join(f"{uid} {SENTENCES[k].lower()}\n" for k, uid in enumerate(ids)))
    parts = {"vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev", transcripts=text)}
    dm = _dm(lrs3_parts, tmp_path, train_sets=parts)
    dm.setup("fit")
    batch_texts = {i: t for b in dm.train_dataloader() for i, t in zip(b["ids"], b["texts"])}
    assert batch_texts == {uid: SENTENCES[k].upper() for k, uid in enumerate(ids)}
    # one utterance without a transcript: refused at 0, left out and counted at 0.25
    text.write_text("".join(f"{uid} word\n" for uid in ids[1:]))
    strict = _dm(lrs3_parts, tmp_path, train_sets=parts, max_bad_fraction=0.0)
    with pytest.raises(ValueError, match=r"train_sets.vox2: 1 of 5 .*no transcript.*whisper"):
        strict.setup("fit")
    lenient = _dm(lrs3_parts, tmp_path, train_sets=parts, max_bad_fraction=0.25)
    lenient.setup("fit")
    assert len(lenient.datasets["train"]) == 4
    assert lenient.composition().missing_text == {"vox2": 1}
    summary = lenient.skip_summary()["train_sets"]  # reaches the run summary
    assert summary["skipped"] == 1 and summary["files"] == [str(text)]


def test_bad_parts_are_named(lrs3_parts: Path, vox2_root: Path, tmp_path: Path) -> None:
    def setup(parts, **kw):
        _dm(lrs3_parts, tmp_path, train_sets=parts, **kw).setup("fit")

    missing = tmp_path / "no_such_corpus"
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match=r"train_sets.extra .*'trainval' not found"):
        setup({"main": _part(split="train"), "extra": _part(corpus=LRS3(missing),
                                                            split="trainval")})
    # the root is checked when listed: a stored run config still instantiates without it
    absent = VoxCeleb2(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"train_sets.vox2 .*VoxCeleb2 root not found"):
        setup({"main": _part(split="train"), "vox2": _part(corpus=absent, split="dev")})
    with pytest.raises(ValueError, match=r"train_sets.vox2.*labelled false|no transcript"):
        setup({"vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev")})
    with pytest.raises(ValueError, match="share 4 utterances"):
        setup({"a": _part(split="train"), "b": _part(split="trainval")})
    with pytest.raises(ValueError, match="no id of .* is an utterance"):
        other = tmp_path / "other.txt"
        other.write_text("somebody/else hello\n")
        setup({"vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev", transcripts=other)})
    with pytest.raises(ValueError, match="labelled pool is empty"):
        setup({"vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev", labelled=False)})
    with pytest.raises(ValueError, match="has no part"):
        _dm(lrs3_parts, tmp_path, train_sets={"gone": None})
    with pytest.raises(ValueError, match="weight must be a positive number"):
        TrainPart(split="train", weight=0)
    bad = tmp_path / "bad.txt"
    bad.write_text("dev/mp4/id00000/vid0/00000\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: .* has no transcript"):
        setup({"vox2": _part(corpus=VoxCeleb2(vox2_root), split="dev", transcripts=bad)})


def test_voxceleb2_lists_from_its_index_or_walks(vox2_root: Path, tmp_path: Path) -> None:
    table = VoxCeleb2(vox2_root).utterances("dev")
    assert isinstance(table, UtteranceTable) and len(table) == 5
    u = table[0]
    assert u.id == "dev/mp4/id00000/vid0/00000" and u.num_frames == 10 and u.text == ""
    assert Path(u.video_path).is_file()
    walked = VoxCeleb2(vox2_root, index="absent.tsv").utterances("dev")
    assert [x.id for x in walked] == [x.id for x in table] and walked[0].num_frames is None
    broken = tmp_path / "v"
    broken.mkdir()
    (broken / "index.tsv").write_text("id\tsplit\tframes\tsamples\ttext\nx\tdev\tzero\t1\t\n")
    with pytest.raises(ValueError, match=r"index.tsv:2: .*positive integer"):
        VoxCeleb2(broken).utterances("dev")
    with pytest.raises(ValueError, match="unknown VoxCeleb2 split"):
        VoxCeleb2(vox2_root).utterances("train")


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_hydra_configs_compose_parts(lrs3_parts: Path, vox2_root: Path, tmp_path: Path
                                     ) -> None:
    base = [f"paths.output_dir={tmp_path}", f"data.corpus.root={lrs3_parts}",
            f"data.corpus.val_list={lrs3_parts}/val_ids.txt",
            f"data.tokenizer_path={tmp_path}/spm.model", "data.vocab_size=40"]
    cfg = _compose(["data=lrs3_vox2", f"data.train_sets.vox2.corpus.root={vox2_root}",
                    "data.train_sets.vox2.weight=0.5", *base])
    dm = hydra.utils.instantiate(cfg.data)
    assert [(n, p.split, p.weight, p.labelled) for n, p in dm.train_parts] == [
        ("pretrain", "pretrain", 1.0, True), ("trainval", "train", 1.0, True),
        ("vox2", "dev", 0.5, False)]
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 8  # VoxCeleb2 is unlabelled
    # an experiment drops an inherited part
    cfg = _compose(["data=lrs3_vox2", "~data.train_sets.vox2", *base])
    assert [n for n, _ in hydra.utils.instantiate(cfg.data).train_parts] == [
        "pretrain", "trainval"]
    cfg = _compose(["data=lrs3", *base])
    assert cfg.data.train_sets is None and hydra.utils.instantiate(cfg.data).train_parts is None


def test_semi_supervised_run_on_a_composition(tiny_synth_root: Path, vox2_root: Path,
                                              tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The recipe's ratio with parts: the synthetic labelled split + VoxCeleb2 unlabelled, one
    real training step of the semi-supervised stage through avsr.train."""
    from conftest import tiny_overrides

    from avsr.train import train

    parts = ("data.train_sets={main:{_target_:avsr.data.parts.TrainPart,split:train},"
             "vox2:{_target_:avsr.data.parts.TrainPart,labelled:false,split:dev,"
             f"corpus:{{_target_:avsr.data.voxceleb2.VoxCeleb2,root:'{vox2_root}'}}}}}}")
    cfg = _compose(["+experiment=synth_low_semi", "debug=fdr", parts,
                    *tiny_overrides(tiny_synth_root, tmp_path)])
    with caplog.at_level("INFO", logger="avsr.data.datamodule"):
        summary = train(cfg)
    assert summary["global_step"] == 1
    # 10% of the 24 synthetic utterances labelled; all 24 + VoxCeleb2's 5 unlabelled
    assert "training parts {'main': 24, 'vox2': 5}: 29 utterances, 24 labelled" in caplog.text
    per_dataset = summary["skipped_media"]["per_dataset"]
    assert per_dataset["unlabelled"]["seen"] >= 1 and per_dataset["train"]["seen"] >= 1
