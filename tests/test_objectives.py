"""Hybrid CTC/attention loss against torch's own losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsr.objectives import HybridCTCAttentionLoss, add_sos_eos, label_smoothing_kl

IDS = {"blank_id": 0, "sos_id": 2, "eos_id": 2}  # avsr SentencePiece ids; no tokenizer here

V = 9


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, V, (3, 5), generator=g)
    token_lengths = torch.tensor([5, 3, 1])
    tokens[1, 3:] = 0
    tokens[2, 1:] = 0
    log_probs = torch.randn(3, 12, V, generator=g).log_softmax(-1)
    lengths = torch.tensor([12, 8, 4])
    logits = torch.randn(3, 6, V, generator=g)
    return log_probs, lengths, logits, tokens, token_lengths


def test_add_sos_eos() -> None:
    tokens = torch.tensor([[5, 6, 7], [8, 9, 1]])  # row 1: length 1, junk past it
    ys_in, ys_out, lengths = add_sos_eos(tokens, torch.tensor([3, 1]), sos_id=2, eos_id=2)
    assert ys_in.tolist() == [[2, 5, 6, 7], [2, 8, 0, 0]]
    assert ys_out.tolist() == [[5, 6, 7, 2], [8, 2, 0, 0]]
    assert lengths.tolist() == [4, 2]


def test_ctc_matches_torch_sum_over_batch() -> None:
    log_probs, lengths, _, tokens, token_lengths = _batch()
    loss = HybridCTCAttentionLoss(**IDS, ctc_weight=1.0)(log_probs, lengths, None, tokens, token_lengths)
    per_utt = [
        F.ctc_loss(log_probs[b, : lengths[b]].unsqueeze(1), tokens[b : b + 1, : token_lengths[b]],
                   lengths[b : b + 1], token_lengths[b : b + 1], blank=0, reduction="sum")
        for b in range(3)
    ]
    expected = torch.stack(per_utt).sum() / 3
    torch.testing.assert_close(loss["loss_ctc"], expected)
    torch.testing.assert_close(loss["loss"], expected)
    assert torch.isnan(loss["acc"])


def test_ctc_impossible_alignment_is_zero_not_inf() -> None:
    log_probs, _, _, tokens, token_lengths = _batch()
    lengths = torch.tensor([2, 8, 4])  # 5 tokens cannot fit in 2 frames
    loss = HybridCTCAttentionLoss(**IDS, ctc_weight=1.0)(log_probs, lengths, None, tokens, token_lengths)
    assert torch.isfinite(loss["loss"])


def test_attention_without_smoothing_equals_cross_entropy() -> None:
    _, _, logits, tokens, token_lengths = _batch()
    loss = HybridCTCAttentionLoss(**IDS, ctc_weight=0.0, label_smoothing=0.0)(
        None, None, logits, tokens, token_lengths)
    _, ys_out, out_lengths = add_sos_eos(tokens, token_lengths, 2, 2)
    targets = ys_out.masked_fill(torch.arange(6) >= out_lengths[:, None], -100)
    expected = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                               reduction="sum") / 3
    torch.testing.assert_close(loss["loss_att"], expected)
    valid = targets != -100
    expected_acc = (logits.argmax(-1)[valid] == targets[valid]).float().mean()
    torch.testing.assert_close(loss["acc"], expected_acc)


def test_label_smoothing_is_espnet_kl() -> None:
    """KL(q || p) with q = 1-eps on the target, eps/(V-1) elsewhere (ESPnet's smoothing)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(7, V, generator=g)
    targets, eps = torch.randint(0, V, (7,), generator=g), 0.1
    q = torch.full((7, V), eps / (V - 1)).scatter(1, targets[:, None], 1 - eps)
    cross = F.cross_entropy(logits, q, reduction="none")  # torch with probability targets
    expected = cross + (q * q.log()).sum(-1)
    torch.testing.assert_close(label_smoothing_kl(logits, targets, eps), expected)
    kl = F.kl_div(logits.log_softmax(-1), q, reduction="none").sum(-1)
    torch.testing.assert_close(label_smoothing_kl(logits, targets, eps), kl)


def test_weighted_sum_and_normalisation() -> None:
    log_probs, lengths, logits, tokens, token_lengths = _batch()
    both = HybridCTCAttentionLoss(**IDS, ctc_weight=0.3)(log_probs, lengths, logits, tokens,
                                                  token_lengths)
    torch.testing.assert_close(both["loss"], 0.3 * both["loss_ctc"] + 0.7 * both["loss_att"])
    per_token = HybridCTCAttentionLoss(**IDS, ctc_weight=0.0, normalize_length=True)(
        None, None, logits, tokens, token_lengths)
    n_tokens = int((token_lengths + 1).sum())
    torch.testing.assert_close(per_token["loss_att"] * n_tokens, both["loss_att"] * 3)


def test_padding_does_not_change_the_loss() -> None:
    log_probs, lengths, logits, tokens, token_lengths = _batch()
    crit = HybridCTCAttentionLoss(**IDS, ctc_weight=0.5)
    reference = crit(log_probs, lengths, logits, tokens, token_lengths)
    # more padding everywhere, with junk values in it
    log_probs2 = torch.cat([log_probs, torch.randn(3, 4, V).log_softmax(-1)], dim=1)
    logits2 = torch.cat([logits, torch.randn(3, 3, V)], dim=1)
    tokens2 = torch.cat([tokens, torch.full((3, 3), 7)], dim=1)
    tokens2[1, 3:] = 5
    padded = crit(log_probs2, lengths, logits2, tokens2, token_lengths)
    for key in ("loss", "loss_ctc", "loss_att", "acc"):
        torch.testing.assert_close(padded[key], reference[key])


def test_gradients_flow_and_errors() -> None:
    log_probs, lengths, logits, tokens, token_lengths = _batch()
    logits.requires_grad_(True)
    raw = torch.randn(3, 12, V, requires_grad=True)
    loss = HybridCTCAttentionLoss(**IDS)(raw.log_softmax(-1), lengths, logits, tokens, token_lengths)
    loss["loss"].backward()
    assert raw.grad is not None and logits.grad is not None
    with pytest.raises(ValueError, match="decoder_logits"):
        HybridCTCAttentionLoss(**IDS)(log_probs, lengths, None, tokens, token_lengths)
    with pytest.raises(ValueError, match=r"\(3, 12\)"):
        HybridCTCAttentionLoss(**IDS, ctc_weight=1.0)(log_probs[..., 0], lengths, None, tokens,
                                               token_lengths)
