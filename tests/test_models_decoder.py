"""Transformer decoder: teacher forcing, incremental key/value cache, reordering, padding."""

from __future__ import annotations

import pytest
import torch

from avsr.models import CTCHead, TransformerDecoder

V, D = 11, 16


def _decoder(**kwargs) -> TransformerDecoder:
    torch.manual_seed(0)
    return TransformerDecoder(V, D, num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1,
                              **kwargs).eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, V, (3, 6), generator=g)
    tokens[:, 0] = 2
    token_lengths = torch.tensor([6, 4, 2])
    memory = torch.randn(3, 9, D, generator=g)
    memory_lengths = torch.tensor([9, 5, 7])
    return tokens, token_lengths, memory, memory_lengths


@pytest.mark.parametrize("tie", [False, True])
def test_incremental_equals_full_forward(tie: bool) -> None:
    decoder = _decoder(tie_embeddings=tie)
    tokens, token_lengths, memory, memory_lengths = _inputs()
    with torch.no_grad():
        full = decoder(tokens, token_lengths, memory, memory_lengths)
        state = decoder.init_state(memory, memory_lengths)
        for t in range(tokens.shape[1]):
            logits, state = decoder.step(tokens[:, t], state)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
    assert full.shape == (3, 6, V)
    assert state.offset == 6 and state.self_k[0].shape == (3, 4, 6, D // 4)


def test_padding_invariance() -> None:
    decoder = _decoder()
    tokens, token_lengths, memory, memory_lengths = _inputs()
    tokens[1, 4:] = 0
    memory[1, 5:] = 7.0
    with torch.no_grad():
        full = decoder(tokens, token_lengths, memory, memory_lengths)
        alone = decoder(tokens[1:2, :4], token_lengths[1:2], memory[1:2, :5], memory_lengths[1:2])
    torch.testing.assert_close(full[1, :4], alone[0], atol=1e-5, rtol=1e-5)


def test_reorder_state_selects_and_expands() -> None:
    decoder = _decoder()
    tokens, _, memory, memory_lengths = _inputs()
    with torch.no_grad():
        state = decoder.init_state(memory, memory_lengths)
        _, state = decoder.step(tokens[:, 0], state)
        _, state = decoder.step(tokens[:, 1], state)
        index = torch.tensor([2, 2, 0, 1])
        picked = decoder.reorder_state(state, index)
        logits, _ = decoder.step(tokens[index, 2], picked)
        reference, _ = decoder.step(tokens[:, 2], state)
    torch.testing.assert_close(logits, reference[index], atol=1e-5, rtol=1e-5)
    assert picked.cross_mask is not None and picked.cross_mask.shape[0] == 4


def test_step_does_not_modify_its_input_state() -> None:
    decoder = _decoder()
    tokens, _, memory, memory_lengths = _inputs()
    with torch.no_grad():
        state0 = decoder.init_state(memory, memory_lengths)
        _, state1 = decoder.step(tokens[:, 0], state0)
        a, _ = decoder.step(tokens[:, 1], state1)
        b, _ = decoder.step(tokens[:, 1], state1)
    assert state0.offset == 0 and not state0.self_k
    torch.testing.assert_close(a, b)


def test_errors_show_bad_shapes() -> None:
    decoder = _decoder()
    tokens, token_lengths, memory, memory_lengths = _inputs()
    with pytest.raises(ValueError, match=r"\(3, 6, 1\)"):
        decoder(tokens.unsqueeze(-1), token_lengths, memory, memory_lengths)
    with pytest.raises(ValueError, match=r"\(3, 9, 8\)"):
        decoder(tokens, token_lengths, memory[..., :8], memory_lengths)
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        decoder.step(tokens[:, :1], decoder.init_state(memory, memory_lengths))


def test_ctc_head() -> None:
    head = CTCHead(D, V)
    log_probs = head(torch.randn(2, 5, D))
    assert log_probs.shape == (2, 5, V)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"\(2, 16\)"):
        head(torch.randn(2, D))
