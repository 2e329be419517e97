"""Joint CTC/attention beam search: CTC prefix scores against brute-force enumeration, the batched
search against a plain per-utterance reference of ESPnet's algorithm, beam 1 against greedy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from avsr.decoding import BeamSearch, CTCPrefixScorer, attention_greedy, log_affine_scan
from avsr.decoding.ctc_prefix_score import LOGZERO
from avsr.models import TransformerDecoder
from avsr.models.lm import TransformerLM

BLANK, SOS, EOS = 0, 2, 2


# ---------------------------------------------------------------------------- brute force
def _collapse(path: tuple[int, ...]) -> list[int]:
    out, prev = [], None
    for c in path:
        if c != prev and c != BLANK:
            out.append(c)
        prev = c
    return out


def _brute_force(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(collapsed output == y) for every y, by enumerating all V^T alignments."""
    probs = log_probs.double().exp()
    frames, vocab = probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        p = math.prod(float(probs[t, c]) for t, c in enumerate(path))
        key = tuple(_collapse(path))
        totals[key] = totals.get(key, 0.0) + p
    return totals


def _prefix_prob(totals: dict[tuple[int, ...], float], prefix: list[int]) -> float:
    n = len(prefix)
    return sum(p for y, p in totals.items() if list(y[:n]) == prefix)


def test_log_affine_scan_equals_sequential_recursion() -> None:
    torch.manual_seed(0)
    a, c = -torch.rand(3, 37) * 3, torch.randn(3, 37)
    c[0, :5] = float("-inf")
    y, prev = [], torch.full((3,), float("-inf"))
    for t in range(37):
        prev = torch.logaddexp(a[:, t] + prev, c[:, t])
        y.append(prev)
    torch.testing.assert_close(log_affine_scan(a, c), torch.stack(y, 1), atol=1e-5, rtol=1e-5)


def test_ctc_prefix_score_equals_brute_force_enumeration() -> None:
    torch.manual_seed(0)
    vocab, frames = 4, 6  # blank 0, tokens 1 and 3, eos 2 (never a CTC label)
    log_probs = torch.log_softmax(torch.randn(2, frames, vocab) * 1.5, dim=-1)
    lengths = torch.tensor([frames, 4])  # the second utterance is padded
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    totals = [_brute_force(log_probs[b, : int(lengths[b])]) for b in range(2)]
    state = scorer.initial_state(torch.tensor([0, 1]))
    prefixes = [[], []]
    for tokens in ([3, 1], [3, 3], [1, 1]):  # includes a repeated token (blank between)
        psi = scorer.score(state, None)
        for b in range(2):
            for c in (1, 3):
                want = _prefix_prob(totals[b], prefixes[b] + [c])
                assert math.isclose(math.exp(psi[b, c]), want, rel_tol=1e-4, abs_tol=1e-9)
            assert math.isclose(math.exp(psi[b, EOS]), totals[b].get(tuple(prefixes[b]), 0.0),
                                rel_tol=1e-4, abs_tol=1e-9)
            assert psi[b, BLANK] == LOGZERO
        token = torch.tensor(tokens)
        state = scorer.extend(state, torch.tensor([0, 1]), token,
                              psi.gather(1, token[:, None]).squeeze(1))
        prefixes = [p + [int(c)] for p, c in zip(prefixes, tokens)]
    # restricted candidates score the same; the others are LOGZERO
    full = scorer.score(state, None)
    part = scorer.score(state, torch.tensor([[3, 1], [1, 2]]))
    assert torch.equal(part[0, [1, 3]], full[0, [1, 3]]) and part[1, 3] == LOGZERO
    assert part[0, EOS] == full[0, EOS]


def test_ctc_prefix_score_is_exact_beyond_the_float64_range() -> None:
    # token 3 is 800 nats improbable at every frame: the matrix product underflows and the
    # scorer must fall back to log-sum-exp rather than call the prefix impossible
    torch.manual_seed(1)
    log_probs = torch.log_softmax(torch.randn(1, 7, 5), dim=-1)
    log_probs[0, :, 3] = -800.0
    scorer = CTCPrefixScorer(log_probs, torch.tensor([7]), blank_id=BLANK, eos_id=EOS)
    state = scorer.initial_state(torch.tensor([0]))
    psi = scorer.score(state, None)
    state = scorer.extend(state, torch.tensor([0]), torch.tensor([1]), psi[:, 1])
    psi = scorer.score(state, None)[0]
    want = _ctc_reference(log_probs[0], [1], [1, 3, 4])
    assert want[3] < -700
    for c, v in want.items():
        assert float(psi[c]) == pytest.approx(v, abs=1e-3)


# ---------------------------------------------------------------------------- the oracle
def _ctc_reference(x: torch.Tensor, prefix: list[int], candidates: list[int]):
    """ESPnet's CTCPrefixScoreTH recursion for one hypothesis, frame by frame (x: (T, V))."""
    frames = x.shape[0]
    r_n = torch.full((frames,), float(LOGZERO))
    r_b = torch.cumsum(x[:, BLANK], 0)
    for i, c in enumerate(prefix):  # rebuild r(h) token by token
        r_n, r_b = _ctc_extend(x, r_n, r_b, prefix[i - 1] if i else -1, c, i)
    r_sum = torch.logaddexp(r_n, r_b)
    psi = {}
    for c in candidates:
        if c in (BLANK, EOS):
            continue
        phi = r_b if prefix and c == prefix[-1] else r_sum
        start = max(len(prefix), 1)
        terms = [phi[t - 1] + x[t, c] for t in range(start, frames)]
        if not prefix:
            terms.append(x[0, c])
        psi[c] = float(torch.logsumexp(torch.stack(terms), 0)) if terms else LOGZERO
    psi[EOS] = float(r_sum[-1])
    return {c: max(v, LOGZERO) for c, v in psi.items()}


def _ctc_extend(x, r_n, r_b, last, c, length):
    phi = r_b if c == last else torch.logaddexp(r_n, r_b)
    new_n = torch.full_like(r_n, float("-inf"))
    new_b = torch.full_like(r_b, float("-inf"))
    if length == 0:
        new_n[0] = x[0, c]
    for t in range(1, x.shape[0]):
        new_n[t] = torch.logaddexp(new_n[t - 1], phi[t - 1]) + x[t, c]
        new_b[t] = torch.logaddexp(new_b[t - 1], new_n[t - 1]) + x[t, BLANK]
    return new_n, new_b


END_DETECTED: list[int] = []


def _end_detect(ended, i):
    if not ended:
        return False
    best = max(s for _, s in ended)
    count = 0
    for m in range(3):
        same = [s for y, s in ended if len(y) + 2 == i - m]
        if same and max(same) - best < -10:
            count += 1
    if count == 3:
        END_DETECTED.append(i)
    return count == 3


def _reference_search(decoder, memory, ctc_lp, lm, *, beam, ctc_weight, lm_weight, penalty,
                      maxlenratio=0.0, minlenratio=0.0, pre_beam_key="full"):
    """ESPnet's BeamSearch for ONE utterance: lists of hypotheses, full forward passes."""
    frames, vocab = memory.shape[0], decoder.vocab_size
    maxlen = frames if maxlenratio == 0 else max(1, int(maxlenratio * frames))
    minlen = int(minlenratio * frames)
    pre_beam = int(1.5 * beam)
    running = [([], 0.0, 0.0)]  # (tokens, score, ctc prefix score)
    ended = []
    for i in range(maxlen):
        cands = []
        for tokens, score, ctc_prev in running:
            ys = torch.tensor([[SOS] + tokens])
            dec = torch.log_softmax(decoder(ys, None, memory[None], None)[0, -1], -1)
            weighted = (1 - ctc_weight) * dec
            if penalty:
                weighted = weighted + penalty
            if lm is not None and lm_weight:
                weighted = weighted + lm_weight * torch.log_softmax(lm(ys)[0, -1], -1)
            ctc_new = torch.zeros(vocab)
            if ctc_weight > 0:
                ids = (list(range(vocab)) if pre_beam >= vocab
                       else weighted.topk(pre_beam).indices.tolist() if pre_beam_key == "full"
                       else dec.topk(pre_beam).indices.tolist())
                psi = _ctc_reference(ctc_lp, tokens, ids)
                ctc_new = torch.full((vocab,), LOGZERO)
                for c, v in psi.items():
                    ctc_new[c] = v
                weighted = weighted + ctc_weight * (ctc_new - ctc_prev)
            cands.append((weighted + score, ctc_new))
        flat = torch.stack([w for w, _ in cands]).view(-1)
        top = flat.topk(beam).indices.tolist()
        best = [(running[k // vocab][0] + [k % vocab], float(flat[k]),
                 float(cands[k // vocab][1][k % vocab])) for k in top]
        running = []
        for tokens, score, ctc_score in best:
            if tokens[-1] == EOS or i == maxlen - 1:
                if i >= minlen:
                    ended.append((tokens[:-1] if tokens[-1] == EOS else tokens, score))
            else:
                running.append((tokens, score, ctc_score))
        if maxlenratio == 0 and _end_detect(ended, i):
            break
        if not running:
            break
    if not ended and minlenratio >= 0.1:  # ESPnet: search again with a smaller minlenratio
        return _reference_search(decoder, memory, ctc_lp, lm, beam=beam, ctc_weight=ctc_weight,
                                 lm_weight=lm_weight, penalty=penalty, maxlenratio=maxlenratio,
                                 minlenratio=max(0.0, minlenratio - 0.1),
                                 pre_beam_key=pre_beam_key)
    return sorted(ended, key=lambda h: h[1], reverse=True)


def _models(vocab=12, d_model=16, seed=0, with_lm=False):
    torch.manual_seed(seed)
    decoder = TransformerDecoder(vocab, d_model, num_layers=2, num_heads=2, ffn_dim=32).eval()
    with torch.no_grad():  # end sentences at varied lengths
        decoder.output_projection.bias[EOS] += 1.0
    lm = TransformerLM(vocab, d_model=16, num_layers=1, num_heads=2, ffn_dim=32).eval()
    return decoder, (lm if with_lm else None)


def _inputs(batch, frames, vocab, d_model=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(batch, frames, d_model, generator=g)
    ctc = torch.log_softmax(torch.randn(batch, frames, vocab, generator=g) * 2, dim=-1)
    return memory, ctc


@pytest.mark.parametrize(
    ("batch", "beam", "ctc_weight", "lm_weight", "penalty", "pre_beam_key"),
    [(1, 4, 0.3, 0.0, 0.0, "full"), (16, 4, 0.5, 0.3, 0.5, "full"),
     (16, 3, 0.0, 0.0, 0.0, "full"), (16, 5, 0.1, 0.0, 0.0, "decoder")],
)
def test_batched_search_equals_per_utterance_reference(batch, beam, ctc_weight, lm_weight,
                                                       penalty, pre_beam_key) -> None:
    vocab = 12
    decoder, lm = _models(vocab, with_lm=lm_weight > 0)
    memory, ctc = _inputs(batch, 9, vocab)
    lengths = torch.tensor([9, 3, 7, 1, 8, 5, 9, 2, 6, 4, 9, 7, 3, 8, 5, 6][:batch])
    search = BeamSearch(beam_size=beam, ctc_weight=ctc_weight, lm_weight=lm_weight,
                        penalty=penalty, pre_beam_score_key=pre_beam_key, nbest=beam)
    hyps = search(decoder, memory, lengths, ctc, SOS, EOS, BLANK, lm=lm)
    for b in range(batch):
        n = int(lengths[b])
        with torch.no_grad():
            ref = _reference_search(decoder, memory[b, :n], ctc[b, :n], lm, beam=beam,
                                    ctc_weight=ctc_weight, lm_weight=lm_weight, penalty=penalty,
                                    pre_beam_key=pre_beam_key)
        assert hyps[b][0].tokens == ref[0][0], f"utterance {b}"
        assert hyps[b][0].score == pytest.approx(ref[0][1], abs=1e-4)
        assert len(hyps[b]) == min(beam, len(ref))
        # the per-scorer parts add up to the total
        h = hyps[b][0]
        total = ((1 - ctc_weight) * h.scores["decoder"] + penalty * h.scores["length_bonus"]
                 + ctc_weight * h.scores.get("ctc", 0.0) + lm_weight * h.scores.get("lm", 0.0))
        assert total == pytest.approx(h.score, abs=1e-3)


def test_length_ratios_and_minlen_retry_match_reference() -> None:
    vocab = 12
    decoder, _ = _models(vocab, seed=3)
    memory, ctc = _inputs(4, 8, vocab, seed=4)
    lengths = torch.tensor([8, 5, 3, 6])
    # (0.3, 0.5): minlen > maxlen, nothing ends, ESPnet retries with minlenratio - 0.1 ...
    for maxr, minr in ((0.5, 0.0), (1.0, 0.4), (0.3, 0.5)):
        search = BeamSearch(beam_size=3, ctc_weight=0.2, maxlenratio=maxr, minlenratio=minr)
        hyps = search(decoder, memory, lengths, ctc, SOS, EOS, BLANK)
        for b in range(4):
            n = int(lengths[b])
            with torch.no_grad():
                ref = _reference_search(decoder, memory[b, :n], ctc[b, :n], None, beam=3,
                                        ctc_weight=0.2, lm_weight=0.0, penalty=0.0,
                                        maxlenratio=maxr, minlenratio=minr)
            assert hyps[b][0].tokens == ref[0][0]
            assert len(hyps[b][0].tokens) >= int(minr * n) or minr > maxr
            if maxr:
                assert len(hyps[b][0].tokens) <= max(1, int(maxr * n))


def test_end_detection_stops_like_the_reference() -> None:
    decoder, _ = _models(12, seed=0)
    memory, ctc = _inputs(4, 24, 12, seed=10)
    lengths = torch.tensor([24, 20, 16, 12])
    # every ended hypothesis: a search that ran on past end detection would end more of them
    hyps = BeamSearch(beam_size=4, ctc_weight=0.3, nbest=1000)(decoder, memory, lengths, ctc,
                                                               SOS, EOS, BLANK)
    END_DETECTED.clear()
    for b in range(4):
        n = int(lengths[b])
        with torch.no_grad():
            ref = _reference_search(decoder, memory[b, :n], ctc[b, :n], None, beam=4,
                                    ctc_weight=0.3, lm_weight=0.0, penalty=0.0)
        assert len(hyps[b]) == len(ref)
        # hypotheses CTC rules out score exactly ctc_weight · LOGZERO: their order is a tie
        ours = [h for h in hyps[b] if h.score > LOGZERO / 100]
        ref = [h for h in ref if h[1] > LOGZERO / 100]
        assert [h.tokens for h in ours] == [y for y, _ in ref]
        assert [h.score for h in ours] == pytest.approx([s for _, s in ref], abs=1e-4)
    assert END_DETECTED  # the case exercises end detection


def test_beam_one_without_ctc_equals_attention_greedy() -> None:
    decoder, _ = _models(12, seed=5)
    memory, _ = _inputs(6, 10, 12, seed=6)
    lengths = torch.tensor([10, 4, 7, 1, 9, 2])
    hyps = BeamSearch(beam_size=1, ctc_weight=0.0)(decoder, memory, lengths, None, SOS, EOS)
    greedy = attention_greedy(decoder, memory, lengths, SOS, EOS, max_len=10)
    for b in range(6):  # greedy's max_len is the batch's T; the search stops at each item's T
        assert hyps[b][0].tokens == greedy[b][: int(lengths[b])]


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="ctc_weight"):
        BeamSearch(ctc_weight=1.0)
    decoder, _ = _models(12)
    memory, _ = _inputs(1, 4, 12)
    with pytest.raises(ValueError, match="ctc_log_probs"):
        BeamSearch(ctc_weight=0.3)(decoder, memory, torch.tensor([4]), None, SOS, EOS)
    with pytest.raises(ValueError, match="memory"):
        BeamSearch()(decoder, memory[0], torch.tensor([4]), None, SOS, EOS)


def test_decoder_step_with_shared_memory_equals_expanded_memory() -> None:
    # beam search keeps one projected memory per utterance for its W hypotheses
    decoder, _ = _models(12, seed=7)
    memory, _ = _inputs(3, 6, 12, seed=8)
    lengths = torch.tensor([6, 2, 4])
    beams = 4
    shared = decoder.init_state(memory, lengths)
    expanded = decoder.reorder_state(shared, torch.arange(3).repeat_interleave(beams))
    tokens = torch.randint(3, 12, (5, 3 * beams))
    with torch.no_grad():
        for t in range(5):
            a, shared = decoder.step(tokens[t], shared)
            b, expanded = decoder.step(tokens[t], expanded)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert shared.cross_k[0].shape[0] == 3
    with pytest.raises(ValueError, match="cannot share"):
        decoder.step(tokens[0][:7], decoder.init_state(memory, lengths))


def test_same_hypotheses_as_espnet_batch_beam_search() -> None:
    """Against ESPnet's own BatchBeamSearch: part of the dev environment
    (requirements/no-deps.txt), so its absence fails here instead of skipping."""
    try:
        import espnet.nets.batch_beam_search  # noqa: F401
    except ImportError as err:
        pytest.fail(f"ESPnet is missing from the dev environment ({err}); `make install-dev` "
                    "installs it from requirements/no-deps.txt")
    from types import SimpleNamespace

    from conftest import load_benchmark

    from avsr.models import CTCHead

    bench = load_benchmark("decode")
    decoder, _ = _models(12, seed=11)
    ctc_head = CTCHead(16, 12).eval()
    memory, _ = _inputs(4, 10, 12, seed=12)
    lengths = [10, 6, 8, 3]
    with torch.no_grad():
        ctc = ctc_head(memory)
    items = [(memory[b, :n], ctc[b, :n], "") for b, n in enumerate(lengths)]
    data = {"items": items, "sos": SOS, "eos": EOS, "blank": BLANK}
    model = SimpleNamespace(decoder=decoder, ctc=ctc_head)
    for beam in (3, 6):
        with torch.no_grad():
            ours = bench._run_ours(model, data, beam, 0.3, batch_size=4)
            theirs = bench._run_espnet(model, data, beam, 0.3)
        assert [h for h, _ in ours] == [h for h, _ in theirs]
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-4)


@pytest.mark.parametrize("frames", [1, 8, 9, 31, 64])
@pytest.mark.parametrize("block", [2, 4])
def test_blocked_log_affine_scan_equals_sequential_recursion(frames: int, block: int) -> None:
    # lengths around and between block multiples (the last block padded), -inf coefficients
    g = torch.Generator().manual_seed(frames)
    a, c = -torch.rand(2, 3, frames, generator=g) * 3, torch.randn(2, 3, frames, generator=g)
    a[0, 1, frames // 2] = float("-inf")
    c[1, :, : frames // 3] = float("-inf")
    y, prev = [], torch.full((2, 3), float("-inf"))
    for t in range(frames):
        prev = torch.logaddexp(a[..., t] + prev, c[..., t])
        y.append(prev)
    torch.testing.assert_close(log_affine_scan(a, c, block=block), torch.stack(y, -1),
                               atol=1e-5, rtol=1e-5)


def test_candidate_scores_equal_full_scores_with_repeats_and_underflow() -> None:
    # ψ restricted to the pre-beam candidates: the last token (repeat rule) and a token whose
    # matrix-product term underflows (exact fallback) among them, over two utterances
    torch.manual_seed(2)
    log_probs = torch.log_softmax(torch.randn(2, 9, 6), dim=-1)
    log_probs[:, :, 3] = -800.0
    scorer = CTCPrefixScorer(log_probs, torch.tensor([9, 6]), blank_id=BLANK, eos_id=EOS)
    state = scorer.initial_state(torch.tensor([0, 0, 1, 1]))
    first = scorer.score(state, None, rows_per_utt=2)
    candidates = torch.tensor([[1, 3, 4], [4, 5, 1], [3, 5, 1], [1, 4, 3]])
    part = scorer.score(state, candidates, rows_per_utt=2)
    assert torch.equal(part.gather(1, candidates), first.gather(1, candidates))
    tokens = torch.tensor([1, 4, 1, 5])
    state = scorer.extend(state, torch.arange(4), tokens, first.gather(1, tokens[:, None])[:, 0])
    full = scorer.score(state, None, rows_per_utt=2)
    part = scorer.score(state, candidates, rows_per_utt=2)
    assert torch.equal(part.gather(1, candidates), full.gather(1, candidates))
    assert (full[:, 3] > -1e9).all() and (full[:, 3] < -700).all()  # underflowed, recomputed
    others = torch.ones_like(part, dtype=torch.bool).scatter_(1, candidates, False)
    others[:, EOS] = False
    assert (part[others] == LOGZERO).all() and torch.equal(part[:, EOS], full[:, EOS])
