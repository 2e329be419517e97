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


@pytest.mark.parametrize("n", [8, 30])  # 30 >= 2 V: the first layer projects per token
@pytest.mark.parametrize("skip_rows", [False, True])
def test_cached_steps_equal_full_forward_through_reorders(skip_rows: bool, n: int) -> None:
    # beam search: after every step the cache is reordered by random parents (the preallocated
    # storage is recycled between reorders); each step must equal teacher forcing on the
    # parents' prefixes; with `rows` only those hypotheses are computed (the others ended)
    decoder = _decoder()
    _, _, memory, memory_lengths = _inputs()
    g = torch.Generator().manual_seed(4)
    index = torch.randint(0, 3, (n,), generator=g)
    state = decoder.reorder_state(decoder.init_state(memory, memory_lengths, max_len=5), index)
    mem, mem_lengths = memory[index], memory_lengths[index]
    prefix = torch.full((n, 0), 2, dtype=torch.long)
    live = torch.arange(n)
    with torch.no_grad():
        for t in range(7):  # past max_len: the storage grows
            token = torch.randint(3, V, (n,), generator=g) if t else torch.full((n,), 2)
            prefix = torch.cat([prefix, token.unsqueeze(1)], dim=1)
            logits, state = decoder.step(token, state, rows=live if skip_rows else None)
            full = decoder(prefix, None, mem, mem_lengths)[:, -1]
            torch.testing.assert_close(logits[live], full[live], atol=1e-5, rtol=1e-5)
            assert state.self_k[1].shape == (n, 4, t + 1, D // 4)
            parent = live[torch.randint(0, len(live), (n,), generator=g)]
            state = decoder.reorder_state(state, parent)
            prefix, mem, mem_lengths = prefix[parent], mem[parent], mem_lengths[parent]
            if skip_rows:
                live = torch.randperm(n, generator=g)[: max(1, n - 2 * t)].sort().values


def test_first_layer_projections_per_vocabulary_entry() -> None:
    # many more rows than tokens: the table path must equal projecting each row
    decoder = _decoder()
    tokens = torch.randint(0, V, (3 * V,), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        table = decoder._first_layer_qkv(tokens, offset=3)
        x = decoder.embed_positions(decoder.embed_tokens(tokens).unsqueeze(1), 3)
        layer = decoder.layers[0]
        direct = layer.self_attn.project_qkv(layer.self_attn_layer_norm(x))
    assert table is not None
    for a, b in zip(table, direct):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert decoder._first_layer_qkv(tokens[:V], offset=3) is None  # too few rows to pay
    assert decoder.train()._first_layer_qkv(tokens, offset=3) is None  # dropout in training


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


def test_branching_from_one_state_keeps_both_branches() -> None:
    # a step writes its token in place; a second step from the same state must not overwrite
    # the first branch's keys/values
    decoder = _decoder()
    tokens, _, memory, memory_lengths = _inputs()
    with torch.no_grad():
        _, state1 = decoder.step(tokens[:, 0], decoder.init_state(memory, memory_lengths))
        state1 = decoder.reorder_state(state1, torch.arange(3))  # leaves room for a token
        _, branch_a = decoder.step(tokens[:, 1], state1)
        _, branch_b = decoder.step(tokens[:, 2], state1)
        a, _ = decoder.step(tokens[:, 3], branch_a)
        b, _ = decoder.step(tokens[:, 3], branch_b)
        full = decoder(tokens[:, [0, 1, 3]], None, memory, memory_lengths)[:, -1]
        full_b = decoder(tokens[:, [0, 2, 3]], None, memory, memory_lengths)[:, -1]
    torch.testing.assert_close(a, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, full_b, atol=1e-5, rtol=1e-5)


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
