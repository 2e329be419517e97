"""CTC prefix beam search: exact against brute force, best path at beam 1, LM fusion."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from avsr.decoding.ctc_beam import CTCPrefixBeamSearch
from avsr.decoding.greedy import ctc_greedy


def _brute_force(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(label sequence) for every sequence some path reaches: sum over all V^T paths."""
    frames, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        lp = float(sum(log_probs[t, k] for t, k in enumerate(path)))
        labels = tuple(k for i, k in enumerate(path)
                       if k != blank and (i == 0 or path[i - 1] != k))
        totals[labels] = float(torch.logaddexp(torch.tensor(totals.get(labels, -math.inf)),
                                               torch.tensor(lp)))
    return totals


def _random_log_probs(gen: torch.Generator, frames: int, vocab: int, scale: float = 1.5):
    return torch.log_softmax(scale * torch.randn(frames, vocab, generator=gen), dim=-1)


def test_an_unbounded_beam_is_exact_and_a_small_one_mostly_agrees() -> None:
    gen = torch.Generator().manual_seed(0)
    trials, small_hits = 60, 0
    for _ in range(trials):
        frames, vocab = 5, 3
        lp = _random_log_probs(gen, frames, vocab)
        truth = _brute_force(lp)
        best = max(truth, key=truth.get)
        # every prefix of at most T labels fits: the search is exact
        full = CTCPrefixBeamSearch(beam_size=200, token_beam=None, nbest=3)(lp[None], None)[0]
        assert tuple(full[0].tokens) == best
        assert full[0].scores["ctc"] == pytest.approx(truth[best], abs=1e-5)
        ranked = sorted(truth.items(), key=lambda kv: kv[1], reverse=True)[:3]
        assert [tuple(h.tokens) for h in full] == [k for k, _ in ranked]
        assert [h.score for h in full] == pytest.approx([v for _, v in ranked], abs=1e-5)
        # the torch CTC loss agrees on the sequence probability
        if full[0].tokens:
            nll = F.ctc_loss(lp[:, None], torch.tensor([full[0].tokens]), [frames],
                             [len(full[0].tokens)], reduction="sum")
            assert -float(nll) == pytest.approx(truth[best], abs=1e-4)
        small = CTCPrefixBeamSearch(beam_size=3)(lp[None], None)[0]
        small_hits += tuple(small[0].tokens) == best
    assert small_hits >= 0.9 * trials


def test_beam_one_is_best_path_on_peaked_posteriors_and_batches_alike() -> None:
    gen = torch.Generator().manual_seed(1)
    lp = _random_log_probs(gen, 40, 12, scale=8.0).unsqueeze(0).repeat(3, 1, 1)
    lp[1] = _random_log_probs(gen, 40, 12, scale=8.0)
    lengths = torch.tensor([40, 40, 25])
    greedy = ctc_greedy(lp, lengths)
    one = CTCPrefixBeamSearch(beam_size=1)(lp, lengths)
    assert [h[0].tokens for h in one] == greedy
    wide = CTCPrefixBeamSearch(beam_size=8, token_beam=4, nbest=4)(lp, lengths)
    assert [len(h) for h in wide] == [4, 4, 4]
    for hyps in wide:
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


class _BigramLM(torch.nn.Module):
    """An LM whose next-label log-probabilities depend on the previous label only."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.calls = 0

    def init_state(self, batch_size, device):
        return None

    def step(self, tokens_last, state):
        self.calls += 1
        return self.table[tokens_last], state

    @staticmethod
    def reorder_state(state, index):
        return state


def test_lm_fusion_adds_the_weighted_lm_score_and_can_change_the_winner() -> None:
    # frames 1 and 2 are unsure between labels 1 and 2; the LM prefers 2 after sos (id 3)
    lp = torch.log(torch.tensor([[0.05, 0.50, 0.45, 0.0001],
                                 [0.90, 0.05, 0.05, 0.0001]]))
    lp = torch.log_softmax(lp, dim=-1)[None]
    table = torch.zeros(4, 4)
    table[3] = torch.tensor([-9.0, -5.0, 0.0, -9.0])  # after sos: label 2
    table[2] = torch.tensor([-9.0, -9.0, -9.0, 0.0])  # after 2: eos
    table[1] = torch.tensor([-9.0, -9.0, -9.0, 0.0])
    lm = _BigramLM(table)
    plain = CTCPrefixBeamSearch(beam_size=4)(lp, None)[0][0]
    assert plain.tokens == [1]
    fused = CTCPrefixBeamSearch(beam_size=4, lm_weight=0.5, nbest=2)(lp, None, 0, lm, 3, 3)[0]
    assert fused[0].tokens == [2]
    log_lm = torch.log_softmax(table, dim=-1)
    expect_lm = float(log_lm[3, 2] + log_lm[2, 3])
    assert fused[0].scores["lm"] == pytest.approx(expect_lm, abs=1e-5)
    assert fused[0].score == pytest.approx(fused[0].scores["ctc"] + 0.5 * expect_lm, abs=1e-5)
    with pytest.raises(ValueError, match="sos_id and eos_id"):
        CTCPrefixBeamSearch(lm_weight=0.5)(lp, None, 0, lm)


def test_ctc_beam_is_a_decoder_of_evaluate() -> None:
    from pathlib import Path
    from types import SimpleNamespace

    from hydra import compose, initialize_config_dir

    from avsr.decoding.nbest import DECODERS
    from avsr.evaluate import _decode_loader, build_ctc_beam_search

    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt=x.ckpt", "paths.output_dir=/tmp/x",
                                             "decode=ctc_beam"])
        both = compose("evaluate", overrides=["ckpt=x.ckpt", "paths.output_dir=/tmp/x",
                                              "decode.decoders=[beam,ctc_beam]"])
    assert "ctc_beam" in DECODERS and cfg.decode.primary_decoder == "ctc_beam"
    search, lm = build_ctc_beam_search(cfg.decode)
    assert isinstance(search, CTCPrefixBeamSearch) and lm is None
    assert isinstance(build_ctc_beam_search(both.decode)[0], CTCPrefixBeamSearch)

    # one batch through evaluate's loop: a model whose CTC says "1 2 2" (ids) everywhere
    lp = torch.full((2, 9, 4), -30.0)
    lp[:, :, 0] = 0.0
    for token, frames in ((1, [1, 2]), (2, [4]), (2, [6, 7])):
        lp[:, frames, 0] = -30.0
        lp[:, frames, token] = 0.0
    model = SimpleNamespace(
        encode_modality=lambda *a, **k: (torch.zeros(2, 9, 3), torch.tensor([9, 9])),
        ctc=lambda enc: lp.log_softmax(-1))
    words = {1: "A", 2: "B"}
    tokenizer = SimpleNamespace(blank_id=0, sos_id=3, eos_id=3,
                                decode=lambda ids: " ".join(words[i] for i in ids))
    batch = {"ids": ["u0", "u1"], "texts": ["A B B", "A B"], "audio": torch.zeros(2, 10),
             "audio_lengths": torch.tensor([10, 10]), "video": None, "video_lengths": None}
    counters = _decode_loader(model, [batch], tokenizer, ["audio"], ["ctc_greedy", "ctc_beam"],
                              1.0, None, ctc_beam=search)
    assert counters[("audio", "ctc_beam")].edits == counters[("audio", "ctc_greedy")].edits == 1
    assert counters[("audio", "ctc_beam")].words == 5


def test_fusion_with_the_transformer_lm_matches_its_full_sequence_score() -> None:
    from avsr.models.lm import TransformerLM

    torch.manual_seed(0)
    lm = TransformerLM(6, d_model=16, num_layers=1, num_heads=2, ffn_dim=32).eval()
    gen = torch.Generator().manual_seed(3)
    lp = _random_log_probs(gen, 12, 6, scale=3.0)[None]
    hyps = CTCPrefixBeamSearch(beam_size=4, lm_weight=0.3, nbest=2)(lp, None, 0, lm, 5, 5)[0]
    assert hyps
    for h in hyps:
        with torch.no_grad():  # teacher-forced: the whole sequence at once
            logp = torch.log_softmax(lm(torch.tensor([[5, *h.tokens]])), dim=-1)[0]
        targets = [*h.tokens, 5]
        full = float(sum(logp[i, t] for i, t in enumerate(targets)))
        assert h.scores["lm"] == pytest.approx(full, abs=1e-4)
        assert h.score == pytest.approx(h.scores["ctc"] + 0.3 * full, abs=1e-4)
