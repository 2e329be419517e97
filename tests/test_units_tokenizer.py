"""Released models' token units (auto_avsr / USR layout): ids, decoding, and avsr.evaluate."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from conftest import SENTENCES, tiny_overrides
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from avsr.data.tokenizer import train_tokenizer
from avsr.data.units_tokenizer import UnitsTokenizer, read_units

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
TEXTS = SENTENCES + ["PLACE BLUE AT F TWO NOW PLEASE", "SET GREEN BY Z ZERO SOON"]


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny SentencePiece model and its ESPnet units list (``<unk> 1``, then sorted pieces
    numbered from 2, as ESPnet's and auto_avsr's ``spm_train`` recipes write it)."""
    out = tmp_path_factory.mktemp("units")
    model = train_tokenizer(TEXTS * 4, out / "unigram40", 40)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = sorted({p for t in TEXTS for p in sp.encode(t, out_type=str)})
    lines = ["<unk> 1"] + [f"{p} {i}" for i, p in enumerate(pieces, 2)]
    (out / "units.txt").write_text("\n".join(lines) + "\n")
    return out / "units.txt", model


def test_ids_follow_the_released_layout_and_decode_with_sentencepiece(units) -> None:
    units_file, model = units
    tok = UnitsTokenizer(units_file, model)
    lines = units_file.read_text().split("\n")[:-1]
    token_list = ["<blank>"] + [ln.split()[0] for ln in lines] + ["<eos>"]  # auto_avsr's list
    assert tok.vocab_size == len(token_list) and tok.blank_id == 0
    assert tok.eos_id == tok.sos_id == len(token_list) - 1 and tok.unk_id == 1
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for text in TEXTS:
        ids = tok.encode(text.lower())
        assert [token_list[i] for i in ids] == sp.encode(text, out_type=str)
        assert sp.decode_pieces([token_list[i] for i in ids]) == text  # SentencePiece's decode
        # blank, eos and ignore ids (-1) in a hypothesis are dropped
        assert tok.decode([0, *ids, tok.eos_id, -1]) == text
    # a piece the units list lacks maps to <unk>, as auto_avsr's hashmap.get(..., <unk>)
    assert tok.unk_id in tok.encode("QUIXOTIC")
    assert pickle.loads(pickle.dumps(tok)).encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_without_a_sentencepiece_model_words_take_the_fewest_units(units) -> None:
    units_file, _ = units
    tok = UnitsTokenizer(units_file)  # USR ships no model
    vocab = set(read_units(units_file))
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.decode(ids) == text  # lossless
        for word in text.split():
            w = "\u2581" + word
            best = min((k for k in range(1, len(w) + 1)
                        for cuts in itertools.combinations(range(1, len(w)), k - 1)
                        if all(w[a:b] in vocab for a, b in
                               zip((0, *cuts), (*cuts, len(w))))), default=None)
            assert len(tok.encode(word)) == best  # brute force over every segmentation
    assert tok.pieces("Q")[-1] == "<unk>" and tok.encode("Q")[-1] == tok.unk_id  # no Q unit


def test_malformed_units_lists_are_rejected(tmp_path) -> None:
    bad = tmp_path / "u.txt"
    bad.write_text("<unk> 1\nA 3\n")
    with pytest.raises(ValueError, match="1..2"):
        UnitsTokenizer(bad)
    bad.write_text("A 1\n")
    with pytest.raises(ValueError, match="<unk>"):
        UnitsTokenizer(bad)
    with pytest.raises(FileNotFoundError):
        UnitsTokenizer(tmp_path / "none.txt")


def test_a_units_checkpoint_decodes_to_words_through_evaluate(units, lrs3_root, tmp_path) -> None:
    """A checkpoint whose output ids are a released model's units: the data config's tokenizer
    turns them into words. Its CTC head is biased to one unit, so every hypothesis is known."""
    from avsr.evaluate import evaluate_checkpoint

    units_file, model_file = units
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_grid", *tiny_overrides(lrs3_root, tmp_path),
            "+data.tokenizer._target_=avsr.data.units_tokenizer.UnitsTokenizer",
            f"+data.tokenizer.units_file={units_file}",
            f"+data.tokenizer.spm_model={model_file}",
            "data.tokenizer_path=/nonexistent/never_trained.model",
            "eval.modalities=[audio]", "decode=greedy", "decode.decoders=[ctc_greedy]",
            "decode.primary_decoder=ctc_greedy",
            "eval.noise.types=[]"])
    tok = UnitsTokenizer(units_file, model_file)
    with open_dict(cfg):
        cfg.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    model = hydra_model(cfg)
    word = next(p[1:] for p in read_units(units_file) if p.startswith("\u2581") and len(p) > 2)
    target = tok.encode(word)
    assert len(target) == 1
    with torch.no_grad():
        model.ctc.ctc_lo.weight.zero_()
        model.ctc.ctc_lo.bias.fill_(-10.0)
        model.ctc.ctc_lo.bias[target[0]] = 10.0
    ckpt = tmp_path / "units.ckpt"
    torch.save({"avsr_config": OmegaConf.to_container(cfg, resolve=False),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    result = evaluate_checkpoint(ckpt, cfg.eval, cfg.decode, tmp_path / "eval")
    row = json.loads((tmp_path / "eval" / "wer.json").read_text())["rows"][0]
    assert row["examples"] and all(hyp == word for _, _, hyp in row["examples"])
    assert not Path("/nonexistent/never_trained.model").exists()  # no SentencePiece training
    assert result["rows"][0]["utterances"] == row["utterances"] > 0


def hydra_model(cfg):
    import hydra

    return hydra.utils.instantiate(cfg.model)
