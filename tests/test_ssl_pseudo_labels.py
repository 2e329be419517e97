"""Greedy pseudo-labels: below-threshold labels are masked; tokens match greedy decoding."""

from __future__ import annotations

import pytest
import torch

from avsr.decoding.greedy import attention_greedy
from avsr.models.decoder import TransformerDecoder
from avsr.objectives.pseudo_labels import (
    IGNORE, attention_pseudo_labels, ctc_pseudo_labels, masked_cross_entropy,
)


def test_ctc_labels_below_threshold_are_masked():
    probs = torch.tensor([[[0.9, 0.05, 0.05], [0.1, 0.79, 0.11], [0.05, 0.05, 0.9],
                           [0.85, 0.1, 0.05]]])
    out = ctc_pseudo_labels(probs.log(), torch.tensor([3]), threshold=0.8)
    assert out.targets.tolist() == [[0, IGNORE, 2, IGNORE]]  # 0.79 < 0.8; frame 3 is padding
    torch.testing.assert_close(out.confidence[0, :3], torch.tensor([0.9, 0.79, 0.9]))


def test_attention_labels_match_greedy_and_mask_unconfident_tokens():
    torch.manual_seed(0)
    vocab, sos = 7, 2
    dec = TransformerDecoder(vocab, 16, num_layers=2, num_heads=2, ffn_dim=32).eval()
    with torch.no_grad():  # make eos (2) unlikely early so sequences have several tokens
        dec.output_projection.bias[sos] -= 2.0
    memory = torch.randn(3, 20, 16)
    lengths = torch.tensor([20, 15, 9])
    for thr in (0.0, 0.3):
        pl = attention_pseudo_labels(dec, memory, lengths, sos, sos, threshold=thr,
                                     max_len_ratio=0.2)
        assert pl.tokens.shape[1] <= 4  # at most T/5 steps
        greedy = attention_greedy(dec, memory, lengths, sos, sos, max_len=4)
        for b in range(3):
            n = int(pl.lengths[b])
            toks = pl.tokens[b, :n].tolist()
            ref = greedy[b] + ([sos] if len(greedy[b]) < n else [])
            assert toks == ref  # the same tokens as the cached greedy decoder, eos included
            conf = pl.confidence[b, :n]
            expect = torch.where(conf >= thr, pl.tokens[b, :n], torch.full_like(conf, IGNORE,
                                                                                dtype=torch.long))
            assert pl.targets[b, :n].tolist() == expect.tolist()
            assert (pl.targets[b, n:] == IGNORE).all()
    assert (pl.targets == IGNORE).any() and (pl.targets != IGNORE).any()


def test_masked_cross_entropy_ignores_masked_positions():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, IGNORE, 4], [IGNORE, IGNORE, 0]])
    ref = torch.nn.functional.cross_entropy(logits[targets != IGNORE], targets[targets != IGNORE])
    torch.testing.assert_close(masked_cross_entropy(logits, targets), ref)
    assert masked_cross_entropy(logits, torch.full((2, 3), IGNORE)) == 0
    # per utterance (the labelled hybrid loss's scale): the 3 kept positions' sum over B = 2
    torch.testing.assert_close(masked_cross_entropy(logits, targets, normalize="batch"),
                               ref * 3 / 2)
    with pytest.raises(ValueError, match="normalize"):
        masked_cross_entropy(logits, targets, normalize="frames")
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        masked_cross_entropy(logits, targets[:, :2])
