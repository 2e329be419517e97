"""CTC prefix beam search (CTC only, no attention decoder), with optional shallow LM fusion.

Time-synchronous prefix search (Graves 2012 §7.4; Hannun et al., "First-Pass Large Vocabulary
Continuous Speech Recognition using Bi-Directional Recurrent DNNs", 2014): every prefix keeps
the log-probability of all CTC paths of the frames so far that collapse to it, split into
paths ending in blank (``pb``) and in its last label (``pnb``). At each frame a prefix

- stays itself through a blank (``pb' += pb + pnb + log y_blank``) or by repeating its last
  label (``pnb' += pnb + log y_last``);
- grows by a label ``c`` (``pnb'(p·c) += (pb + pnb) + log y_c``, or ``pb + log y_c`` when ``c``
  repeats the last label: a repeat needs a blank in between).

Prefixes reached from several parents are summed, so after the last frame ``pb + pnb`` is the
exact probability of the label sequence (the sum over all its CTC paths). Only the
``beam_size`` best prefixes survive each frame, ranked by
``log P_ctc + lm_weight · log P_lm + penalty · length``. With an unbounded beam the search is
exact (``tests/test_ctc_beam.py`` checks it against a brute-force search over every label
sequence); with ``beam_size`` 1 on peaked posteriors it agrees with best-path decoding.

This is the decoder ``ctc_beam`` of ``decode.decoders`` (``configs/decode/ctc_beam.yaml``): the
joint :class:`~avsr.decoding.beam_search.BeamSearch` needs the attention decoder
(``ctc_weight`` < 1) and scores hypotheses label-synchronously; this one needs nothing but the
CTC log-probabilities.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from avsr.decoding.beam_search import Hypothesis, IncrementalLM
from avsr.models.utils import check_shape

__all__ = ["CTCPrefixBeamSearch"]

_NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


class CTCPrefixBeamSearch:
    """Prefix beam search over CTC log-probabilities.

    Args:
        beam_size: prefixes kept after every frame.
        lm_weight: shallow-fusion weight of a language model (ignored without one); the LM also
            scores eos after the last frame.
        penalty: bonus per label.
        token_beam: labels tried per frame: the ``token_beam`` most probable of that frame
            (``None``: every label, exact but slow for large vocabularies: the search is pure
            Python, ~0.5 s per 10 s utterance at V = 1000 with 20). Repeats of a prefix's last
            label are always followed.
        nbest: hypotheses returned per utterance.
    """

    def __init__(self, beam_size: int = 10, lm_weight: float = 0.0, penalty: float = 0.0,
                 token_beam: int | None = 20, nbest: int = 1) -> None:
        if beam_size < 1 or nbest < 1:
            raise ValueError(f"beam_size ({beam_size}) and nbest ({nbest}) must be >= 1")
        if token_beam is not None and token_beam < 1:
            raise ValueError(f"token_beam must be >= 1 or None, got {token_beam}")
        self.beam_size = beam_size
        self.lm_weight = lm_weight
        self.penalty = penalty
        self.token_beam = token_beam
        self.nbest = nbest

    @torch.inference_mode()
    def __call__(
        self,
        ctc_log_probs: torch.Tensor,
        lengths: torch.Tensor | None,
        blank_id: int = 0,
        lm: IncrementalLM | None = None,
        sos_id: int | None = None,
        eos_id: int | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode a batch.

        Args:
            ctc_log_probs: (B, T, V) CTC log-probabilities.
            lengths: (B,) valid frames (``None``: all T).
            blank_id: the blank label.
            lm: optional language model (``init_state`` / ``step``), fed ``sos_id`` first and
                asked for ``eos_id`` at the end; both are required with an LM.

        Returns:
            Per utterance, up to ``nbest`` hypotheses, best first. ``Hypothesis.scores`` holds
            ``ctc`` (log-probability of the label sequence summed over its paths),
            ``length_bonus`` (labels) and, with an LM, ``lm`` (eos included).
        """
        check_shape("ctc_log_probs", ctc_log_probs, 3, "(B, T, V)")
        batch, frames, _ = ctc_log_probs.shape
        use_lm = lm is not None and self.lm_weight != 0
        if use_lm and (sos_id is None or eos_id is None):
            raise ValueError("LM fusion needs sos_id and eos_id")
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long)
        log_probs = ctc_log_probs.detach().float().cpu()
        return [self._search(log_probs[b, : int(lengths[b])], blank_id,
                             lm if use_lm else None, sos_id, eos_id)
                for b in range(batch)]

    def _lm_extend(self, lm: Any, state: Any, token: int, device) -> tuple[list[float], Any]:
        logits, state = lm.step(torch.tensor([token], device=device), state)
        return torch.log_softmax(logits.float(), dim=-1)[0].cpu().tolist(), state

    def _search(self, log_probs: torch.Tensor, blank: int, lm: Any, sos_id: int | None,
                eos_id: int | None) -> list[Hypothesis]:
        vocab = log_probs.shape[1]
        rows = log_probs.tolist()
        if self.token_beam is not None and self.token_beam < vocab:
            cands = log_probs.topk(self.token_beam, dim=-1).indices.tolist()
        else:
            cands = [list(range(vocab))] * len(rows)
        # prefix -> [log P(paths ending in blank), log P(paths ending in the last label)]
        beam: dict[tuple[int, ...], list[float]] = {(): [0.0, _NEG_INF]}
        lm_score: dict[tuple[int, ...], float] = {(): 0.0}
        lm_cache: dict[tuple[int, ...], tuple[list[float], Any]] = {}
        device = None
        if lm is not None:
            device = next(iter(lm.parameters())).device if hasattr(lm, "parameters") else "cpu"
            lm_cache[()] = self._lm_extend(lm, lm.init_state(1, device), sos_id, device)
        w, bonus = self.lm_weight, self.penalty
        for lp, tokens in zip(rows, cands):
            nxt: dict[tuple[int, ...], list[float]] = {}
            for prefix, (pb, pnb) in beam.items():
                total = _logaddexp(pb, pnb)
                cell = nxt.setdefault(prefix, [_NEG_INF, _NEG_INF])
                cell[0] = _logaddexp(cell[0], total + lp[blank])
                last = prefix[-1] if prefix else None
                if last is not None:
                    cell[1] = _logaddexp(cell[1], pnb + lp[last])
                for c in tokens:
                    if c == blank:
                        continue
                    new = prefix + (c,)
                    ext = (pb if c == last else total) + lp[c]
                    if ext == _NEG_INF:
                        continue
                    cell = nxt.setdefault(new, [_NEG_INF, _NEG_INF])
                    cell[1] = _logaddexp(cell[1], ext)
                    if new not in lm_score:
                        lm_score[new] = (lm_score[prefix] + lm_cache[prefix][0][c]
                                         if lm is not None else 0.0)

            def rank(item, lm_score=lm_score):
                p, (b, nb) = item
                return _logaddexp(b, nb) + w * lm_score[p] + bonus * len(p)

            beam = dict(sorted(nxt.items(), key=rank, reverse=True)[: self.beam_size])
            lm_score = {p: lm_score[p] for p in beam}
            if lm is not None:  # next-label distributions of the prefixes that entered
                for p in beam:
                    if p not in lm_cache:
                        lm_cache[p] = self._lm_extend(lm, lm_cache[p[:-1]][1], p[-1], device)
                lm_cache = {p: v for p, v in lm_cache.items() if p in beam}
        hyps = []
        for p, (pb, pnb) in beam.items():
            ctc = _logaddexp(pb, pnb)
            if ctc == _NEG_INF:
                continue
            scores = {"ctc": ctc, "length_bonus": float(len(p))}
            if lm is not None:
                scores["lm"] = lm_score[p] + lm_cache[p][0][eos_id]
            score = ctc + w * scores.get("lm", 0.0) + bonus * len(p)
            hyps.append(Hypothesis(list(p), score, scores))
        hyps.sort(key=lambda h: h.score, reverse=True)
        return hyps[: self.nbest]
