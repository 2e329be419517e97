"""Transformer LM: cached steps equal teacher forcing, and ``avsr.train_lm`` learns the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from avsr.data.corpora import LRS3
from avsr.data.tokenizer import train_tokenizer
from avsr.models.lm import TransformerLM
from avsr.checkpoints import load_lm_checkpoint
from avsr.models.lm import lm_batch
from avsr.train_lm import perplexity, train_lm

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _lm(vocab: int = 11) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(vocab, d_model=16, num_layers=2, num_heads=2, ffn_dim=32).eval()


def test_cached_steps_equal_teacher_forcing_and_padding_changes_nothing() -> None:
    lm = _lm()
    tokens = torch.randint(3, 11, (3, 7))
    tokens[:, 0] = 2
    with torch.no_grad():
        full = lm(tokens)
        state = lm.init_state(3)
        for t in range(7):
            logits, state = lm.step(tokens[:, t], state)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
        # reorder_state picks rows of the cache
        picked = lm.reorder_state(state, torch.tensor([2, 2, 0]))
        nxt, _ = lm.step(torch.tensor([5, 5, 5]), picked)
        ref = lm(torch.cat([tokens[[2, 2, 0]], torch.full((3, 1), 5)], 1))[:, -1]
        torch.testing.assert_close(nxt, ref, atol=1e-5, rtol=1e-5)
        padded = lm(tokens, torch.tensor([7, 4, 2]))
        torch.testing.assert_close(padded[1, :4], lm(tokens[1:2, :4])[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        lm(tokens[0])


def test_perplexity_is_exp_of_the_mean_unit_nll() -> None:
    lm = _lm()
    sentences = [[3, 4, 5], [6], [7, 8]]
    inputs, targets, lengths = lm_batch(sentences, sos_id=2, eos_id=2)
    assert inputs[1].tolist() == [2, 6, 0, 0] and targets[1].tolist() == [6, 2, -100, -100]
    # the rescorer gathers log-probabilities at the targets: a real id past the length
    _, gathered, same = lm_batch(sentences, sos_id=2, eos_id=2, target_pad=2)
    assert gathered[1].tolist() == [6, 2, 2, 2] and same.tolist() == lengths.tolist() == [4, 2, 3]
    with torch.no_grad():
        nll = [F.cross_entropy(lm(torch.tensor([[2, *s]]))[0], torch.tensor([*s, 2]),
                               reduction="sum") for s in sentences]
    want = torch.exp(torch.stack(nll).sum() / 9)  # 6 units + 3 eos
    assert perplexity(lm, sentences, 2, 2, batch_size=2) == pytest.approx(float(want), rel=1e-5)


def test_train_lm_beats_the_unigram_baseline_and_loads(tiny_synth_root, tmp_path) -> None:
    texts = [u.text for u in LRS3(tiny_synth_root).utterances("train")]
    spm = train_tokenizer(texts, tmp_path / "spm", 40)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train_lm", overrides=[
            f"corpus.root={tiny_synth_root}", f"tokenizer_path={spm}",
            f"paths.output_dir={tmp_path}", "max_steps=150", "eval_every=75", "warmup_steps=5",
            "batch_size=16", "lm.d_model=32", "lm.num_layers=1", "lm.ffn_dim=64",
            "lm.dropout=0.0", "num_threads=1", "optimizer.lr=3e-3"])
    summary = train_lm(cfg)
    assert summary["val_ppl"] < summary["unigram_ppl"]
    assert [h["step"] for h in summary["history"]] == [75, 150]
    lm = load_lm_checkpoint(tmp_path / "lm.pt")
    assert isinstance(lm, TransformerLM) and not lm.training
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_lm_checkpoint(tmp_path / "nope.pt")
