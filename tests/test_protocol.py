"""The evaluation protocol the synthetic corpus enforces (benchmarks/README.md, "Protocol"):
held-out speakers beyond the per-utterance jitter, no val/test sentence in training, test
babble from speakers of no other split, and a held-out test seed."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avsr.data.noise_sets import SyntheticBabble, synthetic_babble
from avsr.data.synthetic import (generate_corpus, plan_corpus, sample_speakers,
                                 synthesize_utterance)
from avsr.data.synthetic import text as text_module
from avsr.data.synthetic.generate import _SPLIT_CODE
from avsr.data.synthetic.speakers import (PITCH_JITTER, RATE_JITTER, Speaker, Voice,
                                          voice_distance)
from avsr.data.synthetic.text import sample_sentence

SEED = 5
# 12 sentences: a few training utterances cover a good part of them, so a test sentence drawn
# without the protocol's redraw would often be a training sentence
TINY_GRAMMAR = {"command": ("bin", "lay"), "colour": ("blue", "red"), "preposition": ("at",),
                "letter": ("F",), "digit": ("one", "two", "six"), "adverb": ("now",)}
ARGS = dict(num_train=6, num_val=2, num_test=4, domain="grid", num_train_speakers=2,
            num_val_speakers=1, num_test_speakers=2, num_babble=3, num_babble_speakers=2,
            workers=1)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny-grammar corpus and its held-out-seed sibling (training linked from it)."""
    root = tmp_path_factory.mktemp("protocol")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text_module, "GRID_GRAMMAR", TINY_GRAMMAR)
        generate_corpus(root / "a", seed=SEED, **ARGS)
        generate_corpus(root / "b", seed=SEED, test_seed=SEED + 100,
                        reuse_train_from=root / "a", **ARGS)
    return root / "a", root / "b"


def _texts(root: Path, split_dir: str, ids: set[str] | None = None) -> dict[str, str]:
    out = {}
    for txt in sorted((root / split_dir).rglob("*.txt")):
        uid = txt.relative_to(root).with_suffix("").as_posix()
        if ids is None or uid in ids:
            out[uid] = txt.read_text().splitlines()[0].removeprefix("Text:").strip()
    return out


def _first_draw(seed: int, split: str, index: int) -> str:
    # the sentence an utterance would say without the redraw (the text stream is the first)
    stream = np.random.SeedSequence([seed, _SPLIT_CODE[split], index]).spawn(4)[0]
    return sample_sentence(np.random.default_rng(stream), "grid").text


def _meta(root: Path) -> dict:
    return json.loads((root / "corpus.json").read_text())


# ------------------------------------------------------------------ speakers and the jitter


def test_voice_distance_is_at_most_one_exactly_when_utterances_can_coincide():
    # brute force over the jitter the generator draws: some utterance of each voice with the
    # same pitch and (before rounding) the same rate
    rng = np.random.default_rng(0)
    lo, hi = 1 - RATE_JITTER, 1 + RATE_JITTER
    for _ in range(300):
        a = Voice("en+m1", int(rng.integers(25, 76)), int(rng.integers(135, 206)), 50)
        b = Voice("en-us+m1", int(rng.integers(25, 76)), int(rng.integers(135, 206)), 50)
        pitches = set(range(a.pitch - PITCH_JITTER, a.pitch + PITCH_JITTER + 1))
        other = set(range(b.pitch - PITCH_JITTER, b.pitch + PITCH_JITTER + 1))
        pitch_meets = bool(pitches & other)
        rate_meets = a.rate * hi >= b.rate * lo and b.rate * hi >= a.rate * lo
        assert (voice_distance(a, b) <= 1.0) == (pitch_meets and rate_meets), (a, b)
    assert voice_distance(Voice("en+m1", 50, 150, 50), Voice("en+f2", 50, 150, 50)) == np.inf


@pytest.mark.parametrize("seed", [1234, 0, 7])
def test_every_held_out_speaker_is_beyond_the_jitter_of_every_training_speaker(seed):
    # synth_grid's counts; with seed 1234 the old sampler put test speaker spk0039 (en-us+f2,
    # pitch 37, rate 168) at distance 0.17 from training speaker spk0002 (pitch 38, rate 170)
    speakers = sample_speakers(seed, 32, 4, 8, 16)
    assert [len(speakers[s]) for s in ("train", "val", "test", "babble")] == [32, 4, 8, 16]
    for split, other in itertools.combinations(speakers, 2):
        for a, b in itertools.product(speakers[split], speakers[other]):
            assert voice_distance(a.voice, b.voice) > 1.0, (split, a, other, b)
    assert sample_speakers(seed, 32, 4, 8, 16) == speakers


def test_corpus_records_the_protocol_and_speaker_distances(corpora):
    a, _ = corpora
    meta = _meta(a)
    protocol = meta["protocol"]
    assert protocol["test_sentences_in_train"] == 0 and protocol["val_sentences_in_train"] == 0
    voices = {s: [Voice(**x["voice"]) for x in meta["speakers"][s]] for s in meta["speakers"]}
    for split in ("val", "test", "babble"):
        d = min(voice_distance(v, t) for v in voices[split] for t in voices["train"])
        assert d > 1.0
        assert protocol["min_speaker_distance_to_train"][split] == (
            None if d == np.inf else round(d, 4))
    assert meta["config"]["generator_version"] == 2


# ------------------------------------------------------------------------------- sentences


def test_no_val_or_test_sentence_appears_verbatim_in_training(corpora, monkeypatch):
    a, _ = corpora
    val_ids = set((a / "val_ids.txt").read_text().split())
    trainval = _texts(a, "trainval")
    train = {t for uid, t in trainval.items() if uid not in val_ids}
    held = {uid: t for uid, t in trainval.items() if uid in val_ids} | _texts(a, "test")
    assert len(train) >= 3 and len(held) == 6
    assert not set(held.values()) & train
    # the check has teeth: without the redraw, some of these utterances say a training sentence
    meta = _meta(a)
    speakers = {split: [Speaker(x["id"], split, Voice(**x["voice"]), None) for x in spk]
                for split, spk in meta["speakers"].items()}
    plan = plan_corpus(SEED, 6, 2, 4, speakers)
    monkeypatch.setattr(text_module, "GRID_GRAMMAR", TINY_GRAMMAR)
    drawn = {_first_draw(SEED, p.split, p.index) for p in plan if p.split in ("val", "test")}
    assert drawn & train


def test_excluded_sentence_is_redrawn():
    spk = sample_speakers(SEED, 1, 0, 1)["test"][0]
    first = synthesize_utterance(spk, seed=SEED, split="test", index=0, domain="grid",
                                 video=False)
    again = synthesize_utterance(spk, seed=SEED, split="test", index=0, domain="grid",
                                 exclude=frozenset({first.sentence.text}), video=False)
    assert first.sentence.text == _first_draw(SEED, "test", 0)
    assert again.sentence.text != first.sentence.text
    assert first.video.shape[0] == 0 and first.audio.size > 0


# ---------------------------------------------------------------------------------- babble


def test_test_babble_comes_from_speakers_of_no_other_split(corpora):
    a, _ = corpora
    meta = _meta(a)
    ids = {s: {x["id"] for x in meta["speakers"][s]} for s in meta["speakers"]}
    wavs = sorted((a / "babble").rglob("*.wav"))
    assert len(wavs) == 3 and {w.parent.name for w in wavs} <= ids["babble"]
    assert not ids["babble"] & (ids["train"] | ids["val"] | ids["test"])
    assert not list((a / "babble").rglob("*.mp4"))
    noise = synthetic_babble(a, num_speakers=2)
    assert sorted(map(Path, noise._items)) == wavs
    lazy = SyntheticBabble(a, num_speakers=2, seed=1)
    x = lazy.sample(8000, torch.Generator().manual_seed(0))
    assert x.shape == (8000,) and float(x.abs().max()) > 0


def test_synthetic_babble_refuses_training_speakers_and_old_corpora(corpora, tmp_path):
    a, _ = corpora
    bad = tmp_path / "bad"
    shutil.copytree(a, bad)
    meta = _meta(bad)
    train_spk = meta["speakers"]["train"][0]["id"]
    moved = bad / "babble" / train_spk
    (bad / "babble" / meta["speakers"]["babble"][0]["id"]).rename(moved)
    with pytest.raises(ValueError, match=f"babble/{train_spk}/.*not by a babble speaker"):
        synthetic_babble(bad)
    meta["speakers"]["babble"][0]["voice"] = meta["speakers"]["train"][0]["voice"]
    meta["speakers"]["babble"][0]["id"] = train_spk
    (bad / "corpus.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="speakers shared with other splits"):
        synthetic_babble(bad)
    shutil.rmtree(bad / "babble")
    meta.pop("protocol")
    meta["speakers"].pop("babble")
    meta["config"]["generator_version"] = 1
    (bad / "corpus.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="no babble/ split .generator_version 1"):
        SyntheticBabble(bad).sample(100)


def test_synthetic_data_config_tests_with_the_babble_split(corpora, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    a, _ = corpora
    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", f"data.corpus.root={a}",
                                          f"paths.output_dir={tmp_path}"])
    source = instantiate(cfg.data.test_noise.babble)
    assert isinstance(source, SyntheticBabble) and source.root == a
    assert source.kwargs["num_speakers"] == cfg.data.babble_num_speakers


# ------------------------------------------------------------------------ held-out test seed


def test_held_out_seed_draws_fresh_test_speakers_and_keeps_training(corpora):
    a, b = corpora
    ma, mb = _meta(a), _meta(b)
    for split in ("train", "val"):
        assert ma["speakers"][split] == mb["speakers"][split]
    voices = lambda m, s: {json.dumps(x["voice"]) for x in m["speakers"][s]}  # noqa: E731
    assert not voices(ma, "test") & voices(mb, "test")
    assert not voices(ma, "babble") & voices(mb, "babble")
    assert mb["protocol"]["test_seed"] == SEED + 100 and mb["reused"] == 8
    assert mb["generated"] == 4 + 3  # test and babble only
    for path in (a / "trainval").rglob("*.mp4"):
        twin = b / path.relative_to(a)
        assert twin.is_file() and twin.read_bytes() == path.read_bytes()
    assert _texts(a, "trainval") == _texts(b, "trainval")
    assert _texts(a, "test") != _texts(b, "test")
    # the held-out test set obeys the protocol against the (same) training sentences
    val_ids = set((b / "val_ids.txt").read_text().split())
    train = {t for uid, t in _texts(b, "trainval").items() if uid not in val_ids}
    assert not set(_texts(b, "test").values()) & train


def test_reuse_refuses_a_corpus_with_other_training(corpora, tmp_path):
    a, _ = corpora
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text_module, "GRID_GRAMMAR", TINY_GRAMMAR)
        with pytest.raises(ValueError, match="reuse_train_from.*seed"):
            generate_corpus(tmp_path / "c", seed=SEED + 1, reuse_train_from=a, **ARGS)
    assert not (tmp_path / "c" / "corpus.json").exists()
    assert os.path.isfile(a / "corpus.json")


def test_a_run_refuses_a_corpus_made_with_other_arguments_before_training(corpora, tmp_path):
    from omegaconf import OmegaConf

    from avsr.utils.runtime import ensure_synthetic_corpus

    a, _ = corpora
    node = {"_target_": "avsr.data.synthetic.generate_corpus", "_partial_": True,
            "out_dir": str(a), "seed": SEED, **ARGS, "generate": "default"}
    ensure_synthetic_corpus(OmegaConf.create(node))  # the same arguments: used as it is
    with pytest.raises(ValueError, match=r"other arguments \{'num_babble': \(3, 256\)\}"):
        ensure_synthetic_corpus(OmegaConf.create({**node, "num_babble": 256}))
    old = tmp_path / "v1"
    shutil.copytree(a, old)
    meta = _meta(old)
    meta["config"]["generator_version"] = 1
    (old / "corpus.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"'generator_version': \(1, 2\).*delete"):
        ensure_synthetic_corpus(OmegaConf.create({**node, "out_dir": str(old)}))


def test_the_corpus_reader_never_lists_the_babble_split(corpora):
    from avsr.data.corpora import LRS3

    a, _ = corpora
    corpus = LRS3(a)
    counts = {s: len(corpus.utterances(s)) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 2, "test": 4}
    assert not [u.id for s in ("trainval", "test") for u in corpus.utterances(s)
                if "babble" in u.id]


def test_documented_held_out_evaluation_reads_the_other_corpus_and_its_babble(corpora, tmp_path):
    # benchmarks/README.md: python -m avsr.evaluate ckpt=... +data.corpus.root=B
    # +data.test_noise.babble.root=B on a checkpoint trained on A (its stored data config is
    # resolved, so the babble root must be overridden too)
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from avsr.evaluate import evaluation_data_config

    a, b = corpora
    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        run = compose("train", overrides=["+experiment=synth_grid", f"data.corpus.root={a}",
                                          f"paths.output_dir={tmp_path}"])
        ev = compose("evaluate", overrides=["ckpt=x", f"+data.corpus.root={b}",
                                            f"+data.test_noise.babble.root={b}"])
    stored = OmegaConf.create({"data": OmegaConf.to_container(run.data, resolve=True)})
    data = evaluation_data_config(stored, ev.data)
    assert data.corpus.root == str(b) and data.tokenizer_path.startswith(str(a))
    babble = instantiate(data.test_noise.babble)
    assert babble.root == b
    assert {Path(p).parent.name for p in babble.noise._items} == {
        s["id"] for s in _meta(b)["speakers"]["babble"]}
