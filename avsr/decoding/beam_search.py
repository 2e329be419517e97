"""Joint CTC/attention beam search batched over utterances × beams.

Scoring follows ESPnet's ``BatchBeamSearch`` (Watanabe et al., "Hybrid CTC/Attention
Architecture for End-to-End Speech Recognition", IEEE JSTSP 2017), so token ids match:

- per step, each running hypothesis h scores every token c with the full scorers:
  ``(1 - ctc_weight) · log p_dec(c | h) + penalty + lm_weight · log p_lm(c | h)``;
- the ``int(pre_beam_ratio · beam)`` best tokens by that sum (``pre_beam_score_key="full"``) or
  by the decoder alone (``"decoder"``) are rescored by CTC, adding
  ``ctc_weight · (log ψ(h·c) − log ψ(h))``; eos always gets its CTC score, blank never;
- the ``beam`` best (h, c) pairs of the utterance are kept; a pair ending in eos moves to the
  ended list if at least ``minlen`` tokens long; at ``maxlen`` every hypothesis ends;
- with ``maxlenratio == 0`` (maxlen = encoder frames) the search of an utterance stops by end
  detection (Eq. 50: the best hypotheses ended at each of the last M = 3 lengths are more than
  10 nats below the best ended one), or when no hypothesis is running;
- an utterance with no ended hypothesis is searched again with ``minlenratio − 0.1``.

Unlike ESPnet, all utterances of a batch run at once on a (B, W) grid: finished hypotheses are
masked with -inf, finished utterances are dropped from the grid, the decoder keeps a true
key/value cache (cross-attention keys/values projected once per utterance) and the CTC prefix
scores are vectorised (:mod:`avsr.decoding.ctc_prefix_score`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from avsr.decoding.ctc_prefix_score import CTCPrefixScorer
from avsr.models.utils import check_shape

__all__ = ["Hypothesis", "BeamSearch", "IncrementalLM", "END_DETECT_M", "END_DETECT_D"]

END_DETECT_M = 3  # Watanabe et al. 2017, Eq. 50
END_DETECT_D = -10.0


@dataclass
class Hypothesis:
    """One ended hypothesis.

    Attributes:
        tokens: token ids without sos/eos.
        score: total weighted score.
        scores: unweighted accumulated score of each scorer (``decoder``, ``ctc``, ``lm``,
            ``length_bonus``) that took part.
    """

    tokens: list[int]
    score: float
    scores: dict[str, float] = field(default_factory=dict)


class IncrementalLM(Protocol):
    """What shallow fusion needs from a language model (``avsr.models.lm.TransformerLM``)."""

    def init_state(self, batch_size: int, device: torch.device) -> Any:
        """Empty state for ``batch_size`` sequences."""

    def step(self, tokens_last: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Logits (N, V) after feeding ``tokens_last`` (N,), and the new state."""

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any:
        """Rows ``index`` of the state."""


def _max_length(ratio: float, frames: torch.Tensor) -> list[int]:
    # ESPnet: 0 -> T (with end detection), < 0 -> |ratio| tokens, > 0 -> max(1, int(ratio · T))
    if ratio == 0:
        return frames.tolist()
    if ratio < 0:
        return [-int(ratio)] * len(frames)
    return [max(1, int(ratio * t)) for t in frames.tolist()]


def _min_length(ratio: float, frames: torch.Tensor) -> list[int]:
    if ratio < 0:
        return [-int(ratio)] * len(frames)
    return [int(ratio * t) for t in frames.tolist()]


class BeamSearch:
    """Label-synchronous joint CTC/attention beam search with shallow LM fusion.

    Args:
        beam_size: hypotheses W kept per utterance.
        ctc_weight: λ in ``(1 - λ) · decoder + λ · CTC``; in [0, 1).
        lm_weight: shallow-fusion weight of the language model (ignored without one).
        penalty: length bonus per token (eos included), as ESPnet's ``LengthBonus``.
        maxlenratio: 0: at most T tokens and end detection; > 0: ratio · T; < 0: absolute.
        minlenratio: > 0: at least ratio · T tokens; < 0: absolute.
        pre_beam_ratio: CTC rescores ``int(pre_beam_ratio · beam_size)`` tokens per hypothesis.
        pre_beam_score_key: rank the pre-beam by the weighted full score (``"full"``), by the
            decoder alone (``"decoder"``), or score every token with CTC (``None``).
        nbest: hypotheses returned per utterance.
        normalize_length: rank ended hypotheses by score / (tokens + 1).
    """

    def __init__(
        self,
        beam_size: int = 10,
        ctc_weight: float = 0.1,
        lm_weight: float = 0.0,
        penalty: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        pre_beam_ratio: float = 1.5,
        pre_beam_score_key: str | None = "full",
        nbest: int = 1,
        normalize_length: bool = False,
    ) -> None:
        if beam_size < 1 or nbest < 1:
            raise ValueError(f"beam_size ({beam_size}) and nbest ({nbest}) must be >= 1")
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1), got {ctc_weight}")
        if pre_beam_score_key not in (None, "full", "decoder"):
            raise ValueError(f"pre_beam_score_key must be 'full', 'decoder' or None, "
                             f"got {pre_beam_score_key!r}")
        self.beam_size = beam_size
        self.ctc_weight = ctc_weight
        self.lm_weight = lm_weight
        self.penalty = penalty
        self.maxlenratio = maxlenratio
        self.minlenratio = minlenratio
        self.pre_beam_ratio = pre_beam_ratio
        self.pre_beam_score_key = pre_beam_score_key
        self.nbest = nbest
        self.normalize_length = normalize_length

    @torch.inference_mode()
    def __call__(
        self,
        decoder: nn.Module,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        ctc_log_probs: torch.Tensor | None,
        sos_id: int,
        eos_id: int,
        blank_id: int = 0,
        lm: IncrementalLM | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode a batch.

        Args:
            decoder: ``TransformerDecoder`` (``init_state`` / ``step`` / ``reorder_state``).
            memory: (B, T, D) encoder output.
            memory_lengths: (B,) valid frames.
            ctc_log_probs: (B, T, V) CTC log-probabilities; required when ``ctc_weight > 0``.
            sos_id, eos_id, blank_id: special tokens.
            lm: optional language model for shallow fusion.

        Returns:
            Per utterance, up to ``nbest`` hypotheses, best first (empty if none ended).
        """
        check_shape("memory", memory, 3, "(B, T, D)")
        if self.ctc_weight > 0 and ctc_log_probs is None:
            raise ValueError("ctc_weight > 0 needs ctc_log_probs (B, T, V)")
        results = self._search(decoder, memory, memory_lengths, ctc_log_probs, sos_id, eos_id,
                               blank_id, lm, self.minlenratio)
        minlenratio = self.minlenratio
        # ESPnet: no ended hypothesis -> search again with a smaller minlenratio
        while minlenratio >= 0.1 and any(not r for r in results):
            minlenratio = max(0.0, minlenratio - 0.1)
            redo = torch.tensor([i for i, r in enumerate(results) if not r],
                                device=memory.device)
            again = self._search(
                decoder, memory.index_select(0, redo), memory_lengths.index_select(0, redo),
                None if ctc_log_probs is None else ctc_log_probs.index_select(0, redo),
                sos_id, eos_id, blank_id, lm, minlenratio)
            for i, r in zip(redo.tolist(), again):
                results[i] = r
        return results

    def _search(self, decoder, memory, memory_lengths, ctc_log_probs, sos_id, eos_id, blank_id,
                lm, minlenratio) -> list[list[Hypothesis]]:
        device = memory.device
        batch = memory.shape[0]
        beam = self.beam_size
        w_dec = 1.0 - self.ctc_weight
        use_ctc = self.ctc_weight > 0
        use_lm = lm is not None and self.lm_weight != 0
        vocab = decoder.vocab_size
        if vocab < beam:
            raise ValueError(f"beam_size {beam} exceeds the vocabulary ({vocab} tokens)")
        pre_beam = int(self.pre_beam_ratio * beam)
        do_pre_beam = use_ctc and self.pre_beam_score_key is not None and pre_beam < vocab

        frames = memory_lengths.to(device)
        maxlen = _max_length(self.maxlenratio, frames)
        minlen = _min_length(minlenratio, frames)
        ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
        best_ended = [float("-inf")] * batch
        best_by_len: list[dict[int, float]] = [{} for _ in range(batch)]

        # the grid: `active` utterances × `width` rows each (width 1 until the first pruning)
        active = [b for b in range(batch) if maxlen[b] > 0]
        if not active:
            return ended
        act = torch.tensor(active, device=device)
        width = 1
        dec_state = decoder.init_state(memory.index_select(0, act), frames.index_select(0, act),
                                       max_len=max(maxlen[b] for b in active))
        lm_state = lm.init_state(len(active), device) if use_lm else None
        ctc = CTCPrefixScorer(ctc_log_probs, frames, blank_id, eos_id) if use_ctc else None
        ctc_state = ctc.initial_state(act) if ctc is not None else None
        score = torch.zeros(len(active), device=device)
        names = ["decoder", "length_bonus"] + ["lm"] * use_lm + ["ctc"] * use_ctc
        parts = {k: torch.zeros(len(active), device=device) for k in names}
        yseq = torch.full((len(active), 1), sos_id, dtype=torch.long, device=device)
        arange_beam = torch.arange(beam, device=device)

        step = 0
        while active:
            n_act = len(active)
            last = yseq[:, -1]
            rows = None
            if device.type == "cpu" and width > 1:
                # skip hypotheses that ended (-inf): on CPU the decoder's matrix products are
                # most of the time; elsewhere reading the count back would cost a sync. From
                # 1 % of the grid on, skipping pays for its gathers (beam 10: 5 % less CPU time
                # than waiting for 1/8)
                live = torch.isfinite(score).nonzero().squeeze(1)
                if len(live) <= 0.99 * len(score):
                    rows = live
            logits, dec_state = decoder.step(last, dec_state, rows=rows)
            dec_logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
            # ESPnet's order: decoder, length bonus, LM, then CTC, then the running score
            weighted = w_dec * dec_logp
            if self.penalty != 0:
                weighted = weighted + self.penalty
            if use_lm:
                lm_logits, lm_state = lm.step(last, lm_state)
                lm_logp = torch.log_softmax(lm_logits.float(), dim=-1)
                weighted = weighted + self.lm_weight * lm_logp
            if use_ctc:
                candidates = None
                if do_pre_beam:
                    key = weighted if self.pre_beam_score_key == "full" else dec_logp
                    # any order: the CTC scores are scattered back by token
                    candidates = key.topk(pre_beam, dim=-1, sorted=False).indices  # (N, S)
                psi = ctc.score(ctc_state, candidates, width)  # (N, V)
                ctc_scores = psi - ctc_state.prefix_score.unsqueeze(1)
                weighted = weighted + self.ctc_weight * ctc_scores
            weighted = weighted + score.unsqueeze(1)  # finished rows are -inf

            # the W best (hypothesis, token) pairs of each utterance
            top_score, top_idx = weighted.view(n_act, width * vocab).topk(beam, dim=-1)
            offsets = torch.arange(n_act, device=device).unsqueeze(1) * width
            parent = (top_idx // vocab + offsets).flatten()  # (n_act · W,) rows of the grid
            token = (top_idx % vocab).flatten()
            new_score = top_score.flatten()
            flat = parent * vocab + token
            parts = {k: v.index_select(0, parent) for k, v in parts.items()}
            parts["decoder"] = parts["decoder"] + dec_logp.view(-1)[flat]
            parts["length_bonus"] = parts["length_bonus"] + 1.0
            if use_lm:
                parts["lm"] = parts["lm"] + lm_logp.view(-1)[flat]
            if use_ctc:
                parts["ctc"] = parts["ctc"] + ctc_scores.view(-1)[flat]
            yseq = torch.cat([yseq.index_select(0, parent), token.unsqueeze(1)], dim=1)
            is_eos = token == eos_id

            keep = self._bookkeep(step, active, maxlen, minlen, new_score, is_eos, yseq, parts,
                                  ended, best_ended, best_by_len)
            new_score = new_score.masked_fill(is_eos, float("-inf"))
            kept = None
            if len(keep) < n_act:  # drop finished utterances from the grid
                if not keep:
                    break
                kept = torch.tensor(keep, device=device)
                rows = (kept.unsqueeze(1) * beam + arange_beam).flatten()
                parent, token, flat = parent[rows], token[rows], flat[rows]
                new_score, yseq = new_score[rows], yseq[rows]
                parts = {k: v[rows] for k, v in parts.items()}
                active = [active[a] for a in keep]
            # the parents' self-attention caches; the memory keys/values stay one per
            # utterance (its W rows share them), `kept` drops finished utterances
            dec_state = dec_state.select(parent, kept)
            if use_lm:
                lm_state = lm.reorder_state(lm_state, parent)
            if use_ctc:
                ctc_state = ctc.extend(ctc_state, parent, token, psi.view(-1)[flat])
            score = new_score
            width = beam
            step += 1

        for hyps in ended:
            if self.normalize_length:
                hyps.sort(key=lambda h: h.score / (len(h.tokens) + 1), reverse=True)
            else:
                hyps.sort(key=lambda h: h.score, reverse=True)
            del hyps[self.nbest:]
        return ended

    def _bookkeep(self, step, active, maxlen, minlen, new_score, is_eos, yseq, parts, ended,
                  best_ended, best_by_len) -> list[int]:
        """Move ended hypotheses to ``ended``; return the grid indices of utterances to keep.

        One host transfer per step: the loop must know which utterances stop anyway.
        """
        beam = self.beam_size
        scores = new_score.view(len(active), beam).tolist()
        eos = is_eos.view(len(active), beam).tolist()
        keep = []
        to_end: list[tuple[int, int, bool]] = []  # (utterance, row, ended by eos)
        for a, b in enumerate(active):
            last_step = step == maxlen[b] - 1
            running = 0
            for j in range(beam):
                if scores[a][j] == float("-inf"):
                    continue  # an empty slot picked because fewer than W candidates existed
                if eos[a][j] or last_step:
                    if step >= minlen[b]:
                        to_end.append((b, a * beam + j, eos[a][j]))
                else:
                    running += 1
            if not last_step and running > 0:
                keep.append(a)
        if to_end:
            rows = torch.tensor([r for _, r, _ in to_end], device=yseq.device)
            seqs = yseq.index_select(0, rows).tolist()
            row_parts = {k: v.index_select(0, rows).tolist() for k, v in parts.items()}
            row_scores = new_score.index_select(0, rows).tolist()
            for i, (b, _, by_eos) in enumerate(to_end):
                tokens = seqs[i][1:-1] if by_eos else seqs[i][1:]
                hyp = Hypothesis(tokens, row_scores[i], {k: v[i] for k, v in row_parts.items()})
                ended[b].append(hyp)
                best_ended[b] = max(best_ended[b], hyp.score)
                length = len(seqs[i]) + (0 if by_eos else 1)  # ESPnet's len(yseq), sos + eos
                best_by_len[b][length] = max(best_by_len[b].get(length, float("-inf")),
                                             hyp.score)
        if self.maxlenratio == 0:
            keep = [a for a in keep if not self._end_detect(step, best_ended[active[a]],
                                                             best_by_len[active[a]])]
        return keep

    @staticmethod
    def _end_detect(step: int, best: float, best_by_len: dict[int, float]) -> bool:
        # ESPnet's end_detect(ended_hyps, i): lengths i, i-1, i-2 of len(yseq)
        if best == float("-inf"):
            return False
        count = 0
        for m in range(END_DETECT_M):
            same = best_by_len.get(step - m)
            if same is not None and same - best < END_DETECT_D:
                count += 1
        return count == END_DETECT_M
