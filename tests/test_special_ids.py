"""Special token ids come from the tokenizer; a config that contradicts it stops the run."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import SENTENCES, tiny_overrides
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

from avsr.data.tokenizer import Tokenizer, train_tokenizer
from avsr.data.units_tokenizer import UnitsTokenizer
from avsr.objectives.hybrid import HybridCTCAttentionLoss

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@pytest.fixture(scope="module")
def units_tokenizer(tmp_path_factory) -> UnitsTokenizer:
    """Released-model units (auto_avsr / USR layout): sos = eos = the last id."""
    out = tmp_path_factory.mktemp("units")
    pieces = sorted({w for s in SENTENCES for w in s.split()})
    lines = ["<unk> 1"] + [f"\u2581{p} {i}" for i, p in enumerate(pieces, 2)]
    (out / "units.txt").write_text("\n".join(lines) + "\n")
    return UnitsTokenizer(out / "units.txt")


def _stage(tmp_path: Path, tokenizer, *overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid",
                                          *tiny_overrides(tmp_path, tmp_path),
                                          f"vocab_size={tokenizer.vocab_size}", *overrides])
    model = hydra.utils.instantiate(cfg.model)
    return hydra.utils.instantiate(cfg.stage, model=model, tokenizer=tokenizer)


@pytest.mark.parametrize("stage", ["supervised", "semi"])
def test_stage_takes_sos_and_eos_from_a_units_tokenizer(units_tokenizer, tmp_path, stage):
    last = units_tokenizer.vocab_size - 1
    assert units_tokenizer.sos_id == units_tokenizer.eos_id == last != 2
    task = _stage(tmp_path, units_tokenizer, f"stage={stage}")
    assert (task.objective.loss.blank_id, task.objective.loss.sos_id, task.objective.loss.eos_id) == (0, last, last)
    # the teacher-forced decoder input starts with the tokenizer's sos, the target ends in eos
    tokens, lengths = torch.tensor([[3, 4, 0]]), torch.tensor([2])
    ys_in, _ = task.objective.loss.decoder_inputs(tokens, lengths)
    assert ys_in[0, 0].item() == last


def test_config_contradicting_the_tokenizer_fails_at_start(units_tokenizer, tmp_path):
    # Hydra wraps the stage's ValueError; the message is what the user reads
    with pytest.raises(InstantiationException,
                       match=r"loss.sos_id=2 contradicts sos_id=\d+ of the tokenizer"):
        _stage(tmp_path, units_tokenizer, "+stage.objective.loss.sos_id=2")


def test_sentencepiece_ids_and_an_agreeing_config(tmp_path):
    model = train_tokenizer([s.lower() for s in SENTENCES] * 4, tmp_path / "spm", 30)
    tok = Tokenizer(model)
    task = _stage(tmp_path, tok, "+stage.objective.loss.eos_id=2")
    assert (task.objective.loss.blank_id, task.objective.loss.sos_id, task.objective.loss.eos_id) == (0, 2, 2)


def test_unbound_loss_names_the_missing_id():
    loss = HybridCTCAttentionLoss()
    with pytest.raises(ValueError, match="sos_id is unset"):
        loss.decoder_inputs(torch.tensor([[3]]), torch.tensor([1]))
