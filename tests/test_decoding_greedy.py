"""Greedy CTC and attention decoding."""

from __future__ import annotations

import torch

from avsr.decoding import attention_greedy, ctc_greedy
from avsr.models import TransformerDecoder


def _one_hot_log_probs(paths: list[list[int]], vocab: int = 6) -> torch.Tensor:
    frames = max(len(p) for p in paths)
    x = torch.full((len(paths), frames, vocab), -10.0)
    for b, path in enumerate(paths):
        for t, c in enumerate(path):
            x[b, t, c] = 0.0
    return x


def test_ctc_greedy_collapses_repeats_drops_blanks_within_length() -> None:
    log_probs = _one_hot_log_probs([[0, 3, 3, 0, 3, 4, 4, 5], [1, 1, 0, 2, 2, 2, 5, 5]])
    hyps = ctc_greedy(log_probs, torch.tensor([8, 6]), blank_id=0)
    assert hyps == [[3, 3, 4, 5], [1, 2]]
    assert ctc_greedy(log_probs, None, blank_id=0)[1] == [1, 2, 5]
    assert ctc_greedy(log_probs, torch.tensor([0, 1]), blank_id=0) == [[], [1]]


def _naive_greedy(decoder, memory, memory_lengths, sos, eos, max_len):
    results = []
    for b in range(memory.shape[0]):
        n = int(memory_lengths[b])
        prefix = [sos]
        for _ in range(max_len):
            tokens = torch.tensor([prefix])
            logits = decoder(tokens, torch.tensor([len(prefix)]), memory[b : b + 1, :n],
                             memory_lengths[b : b + 1])
            nxt = int(logits[0, -1].argmax())
            if nxt == eos:
                break
            prefix.append(nxt)
        results.append(prefix[1:])
    return results


def test_attention_greedy_equals_naive_full_forward_loop() -> None:
    torch.manual_seed(0)
    vocab = 7
    decoder = TransformerDecoder(vocab, 16, num_layers=2, num_heads=2, ffn_dim=32).eval()
    memory = torch.randn(4, 10, 16)
    memory_lengths = torch.tensor([10, 4, 7, 1])
    with torch.no_grad():
        batched = attention_greedy(decoder, memory, memory_lengths, sos_id=2, eos_id=2,
                                   max_len=8)
        naive = _naive_greedy(decoder, memory, memory_lengths, 2, 2, 8)
    assert batched == naive
    lengths = [len(h) for h in naive]  # some stop at eos, one runs to max_len
    assert 8 in lengths and min(lengths) < 8 and len(set(lengths)) > 1
