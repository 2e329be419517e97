"""Vectorised CTC prefix scoring for label-synchronous beam search.

The prefix probability ψ(h·c) of Watanabe et al. ("Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition", IEEE JSTSP 2017, Algorithm 2) for every running hypothesis h of
every utterance and every candidate token c, in float32 and without a Python loop over frames:

- ψ(h·c) = Σ_t φ_{t-1}(h) · p_t(c) for all tokens c at once is a batched matrix product per
  utterance, (W, T) × (T, V), in float64 with φ scaled by its per-hypothesis maximum (exp(−708)
  is the float64 floor, far below any term that can change a float32 score; entries that
  underflow anyway are recomputed by log-sum-exp); c equal to the last token of h uses r^b(h);
- the forward variables r^n_t(h·c), r^b_t(h·c) of the W hypotheses kept after pruning follow
  first-order linear recurrences, solved by a blocked log-space parallel prefix scan (Hillis &
  Steele) in O(log T) vectorised steps. Only additions of log-probabilities and log-add-exp occur, so
  the result is exact up to float rounding (no cumulative-sum cancellation).

Semantics follow ESPnet's ``CTCPrefixScoreTH``: frames past an utterance's length emit blank
with probability 1; ψ(h·eos) is the probability of h over all frames; blank is never a
candidate; impossible prefixes score ``LOGZERO`` (-1e10) rather than -inf so that score
differences stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["LOGZERO", "CTCPrefixState", "CTCPrefixScorer", "log_affine_scan"]

LOGZERO = -1e10  # ESPnet's "log zero": finite, so that ψ(h·c) − ψ(h) never becomes NaN


def log_affine_scan(a: torch.Tensor, c: torch.Tensor, block: int = 4) -> torch.Tensor:
    """Solve ``y_t = logaddexp(a_t + y_{t-1}, c_t)`` with ``y_{-1} = -inf`` along the last dim.

    A log-space inclusive prefix scan (Hillis & Steele, "Data parallel algorithms", CACM 1986)
    over affine maps ``y ↦ a + y ⊕ c``; two maps compose as ``(a1 + a2, (a2 + c1) ⊕ c2)``.
    Blocked to cut the work (log-add-exp is most of it): a scan within blocks of ``block``
    frames, a scan of the blocks' composed maps, then one pass adding each block's carry in:
    about log2(block) + 1 + log2(T / block) / block passes over T instead of log2(T).

    Args:
        a, c: (..., T) log-domain coefficients (-inf allowed, never +inf).
        block: frames per block (the plain scan for T <= 2 · block).

    Returns:
        y (..., T).
    """
    frames = a.shape[-1]
    if frames <= 2 * block:
        return _hillis_steele(a, c, need_a=False)[1]
    pad = -frames % block
    if pad:  # identity maps (a = 0, c = -inf) after the last frame
        a = torch.cat([a, a.new_zeros(a.shape[:-1] + (pad,))], dim=-1)
        c = torch.cat([c, c.new_full(c.shape[:-1] + (pad,), float("-inf"))], dim=-1)
    # frame t = k · block + j goes to [j, ..., k]: the within-block scan then runs along the
    # outermost dim, whose slices are long contiguous runs (slices of a last dim of 8 are slow)
    a = a.unflatten(-1, (-1, block)).movedim(-1, 0).contiguous()
    c = c.unflatten(-1, (-1, block)).movedim(-1, 0).contiguous()
    a, c = _hillis_steele(a, c, need_a=True, dim=0)  # each block's maps composed from its start
    carry = _hillis_steele(a[-1], c[-1], need_a=False)[1]  # y at each block's end
    before = torch.cat([carry.new_full(carry.shape[:-1] + (1,), float("-inf")),
                        carry[..., :-1]], dim=-1)
    y = torch.logaddexp(a + before, c)
    return y.movedim(0, -1).flatten(-2)[..., :frames]


def _hillis_steele(a: torch.Tensor, c: torch.Tensor, need_a: bool, dim: int = -1
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of the maps (a, c) along ``dim``: the maps composed from index 0; the
    composed ``a`` only if ``need_a`` (else the input's)."""
    frames = a.shape[dim]
    step = 1
    while step < frames:
        head, tail, prev = (slice(None, step), slice(step, None), slice(None, frames - step))
        idx = (slice(None),) * (dim % a.dim())
        c = torch.cat([c[idx + (head,)], torch.logaddexp(a[idx + (tail,)] + c[idx + (prev,)],
                                                         c[idx + (tail,)])], dim=dim)
        if need_a or 2 * step < frames:
            a = torch.cat([a[idx + (head,)], a[idx + (tail,)] + a[idx + (prev,)]], dim=dim)
        step *= 2
    return a, c


@dataclass
class CTCPrefixState:
    """CTC state of N hypotheses (all with the same number L of tokens after sos).

    Attributes:
        r_nonblank: (N, T) log r^n_t(h): paths of h ending in a non-blank at frame t.
        r_blank: (N, T) log r^b_t(h): paths of h ending in blank at frame t.
        prefix_score: (N,) log ψ(h), the running CTC score (0 for the empty prefix).
        last: (N,) last token of h (-1 for the empty prefix).
        utt: (N,) utterance index of each hypothesis (row of the scorer's log-probs).
        length: L, tokens in h (sos excluded).
    """

    r_nonblank: torch.Tensor
    r_blank: torch.Tensor
    prefix_score: torch.Tensor
    last: torch.Tensor
    utt: torch.Tensor
    length: int

    def select(self, index: torch.Tensor) -> CTCPrefixState:
        """Rows ``index`` (N',) of the state."""
        return CTCPrefixState(self.r_nonblank.index_select(0, index),
                              self.r_blank.index_select(0, index),
                              self.prefix_score.index_select(0, index),
                              self.last.index_select(0, index),
                              self.utt.index_select(0, index), self.length)


class CTCPrefixScorer:
    """Batched CTC prefix scorer over the hypotheses of several utterances.

    Args:
        log_probs: (B, T, V) CTC log-probabilities (computed in float32).
        lengths: (B,) valid frames.
        blank_id: the CTC blank.
        eos_id: end of sentence; ψ(h·eos) = P(h | x).
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int,
                 eos_id: int) -> None:
        check_shape("log_probs", log_probs, 3, "(B, T, V)")
        if lengths.shape != log_probs.shape[:1]:
            raise ValueError(f"lengths must be ({log_probs.shape[0]},), "
                             f"got shape {tuple(lengths.shape)}")
        # (B, V, T) contiguous: the steps read rows x[b, c] (clone alone would keep the
        # transposed strides, and every such read would stride over V)
        x = log_probs.float().transpose(1, 2).contiguous(memory_format=torch.contiguous_format)
        if x.data_ptr() == log_probs.data_ptr():
            x = x.clone()
        pad = make_pad_mask(lengths, x.shape[-1]).unsqueeze(1)  # (B, 1, T)
        # past the end every path stays in blank with probability 1 (as ESPnet pads)
        x.masked_fill_(pad, float("-inf"))
        x[:, blank_id].masked_fill_(pad.squeeze(1), 0.0)
        self.x = x
        self.x_blank = x[:, blank_id].contiguous()  # (B, T)
        # probabilities for the matrix-product form of ψ (float64: see the module docstring)
        self.p = x.double().exp().transpose(1, 2).contiguous()  # (B, T, V)
        self.end_frame = (lengths.to(x.device) - 1).clamp_min(0)
        self.empty = lengths.to(x.device) == 0
        self.blank_id = blank_id
        self.eos_id = eos_id
        self.vocab_size = x.shape[1]

    def initial_state(self, utt: torch.Tensor) -> CTCPrefixState:
        """State of the empty prefix (sos only) for hypotheses of utterances ``utt`` (N,)."""
        blank = self.x_blank.index_select(0, utt)  # (N, T)
        r_blank = blank.cumsum(-1)
        r_nonblank = torch.full_like(r_blank, float("-inf"))
        zeros = torch.zeros(len(utt), device=blank.device)
        last = torch.full((len(utt),), -1, dtype=torch.long, device=blank.device)
        return CTCPrefixState(r_nonblank, r_blank, zeros, last, utt, 0)

    def _phi_start(self, state: CTCPrefixState) -> int:
        # h·c emits c at a frame t >= L; for L == 0 the c-at-frame-0 term is added separately
        return max(state.length, 1)

    def score(self, state: CTCPrefixState, candidates: torch.Tensor | None,
              rows_per_utt: int = 1) -> torch.Tensor:
        """Prefix log-probabilities ψ(h·c) for candidate tokens.

        Args:
            state: state of N hypotheses, utterance-major: ``rows_per_utt`` consecutive rows
                per utterance.
            candidates: (N, S) long token ids to score, or ``None`` for all V tokens.
            rows_per_utt: hypotheses per utterance (W).

        Returns:
            (N, V) log ψ(h·c): computed for the candidates and eos, ``LOGZERO`` elsewhere and at
            blank (not a label).
        """
        n, frames = state.r_blank.shape
        if n % rows_per_utt:
            raise ValueError(f"{n} hypotheses are not {rows_per_utt} per utterance")
        r_sum = torch.logaddexp(state.r_nonblank, state.r_blank)  # (N, T)
        psi = self._psi(state, r_sum, rows_per_utt, candidates)  # (N, S) or (N, V)
        if state.length == 0:  # the empty prefix may also emit c at frame 0
            first = self.x[state.utt, :, 0]
            psi = torch.logaddexp(psi, first if candidates is None
                                  else first.gather(1, candidates))
        if candidates is None:
            out = psi.clamp_min(LOGZERO)
        else:
            out = psi.new_full((n, self.vocab_size), LOGZERO)
            out.scatter_(1, candidates, psi.clamp_min(LOGZERO))
        end = self.end_frame[state.utt].unsqueeze(1)
        eos = r_sum.gather(1, end).squeeze(1)
        eos = eos.masked_fill(self.empty[state.utt] & (state.length > 0), float("-inf"))
        out[:, self.eos_id] = eos.clamp_min(LOGZERO)
        out[:, self.blank_id] = LOGZERO
        return out

    def _psi(self, state: CTCPrefixState, r_sum: torch.Tensor, rows_per_utt: int,
             candidates: torch.Tensor | None) -> torch.Tensor:
        """log Σ_{t >= start} φ_{t-1}(h, c) p_t(c) for the candidates c (N, S), or every token
        (N, V). The matrix product covers all V (cheaper than gathering p for S of them); the
        logarithms, the repeated-token and underflow corrections only the candidates."""
        n, frames = r_sum.shape
        start = self._phi_start(state)
        width = self.vocab_size if candidates is None else candidates.shape[1]
        if start >= frames:
            return r_sum.new_full((n, width), float("-inf"))
        phi = r_sum[:, start - 1:frames - 1]  # (N, T') φ_{t-1}(h), t >= start
        peak = phi.amax(dim=1, keepdim=True)  # (N, 1)
        alive = torch.isfinite(peak)  # False: h itself is impossible, ψ = -inf
        peak = peak.masked_fill(~alive, 0.0)
        scaled = (phi - peak).double().exp().view(-1, rows_per_utt, frames - start)
        utt = state.utt.view(-1, rows_per_utt)[:, 0]
        total = torch.bmm(scaled, self.p[utt, start:]).view(n, -1)  # (N, V) float64
        if candidates is None:
            cols = torch.arange(width, device=r_sum.device).expand(n, width)
        else:
            cols, total = candidates, total.gather(1, candidates)
        psi = (total.log() + peak.double()).float()
        # c equal to the last token of h: φ = r^b(h) (a blank must separate the repeat)
        x_last = self.x.view(-1, frames).index_select(
            0, state.utt * self.vocab_size + state.last.clamp_min(0))[:, start:]  # (N, T')
        repeat = torch.logsumexp(state.r_blank[:, start - 1:frames - 1] + x_last, dim=-1)
        is_last = cols == state.last.unsqueeze(1)  # never for the empty prefix (last -1)
        psi = torch.where(is_last, repeat.unsqueeze(1), psi)
        # float64 underflow (a term exp(-708) below h's own peak): recompute exactly
        lost = (total < 1e-290) & alive
        if bool(lost.any()):
            rows, k = lost.nonzero(as_tuple=True)
            c = cols[rows, k]
            x_c = self.x[state.utt[rows], c, start:]
            exact = torch.logsumexp(phi[rows] + x_c, dim=-1)
            psi[rows, k] = torch.where(is_last[rows, k], psi[rows, k], exact)
        return psi

    def extend(self, state: CTCPrefixState, parent: torch.Tensor, tokens: torch.Tensor,
               prefix_score: torch.Tensor) -> CTCPrefixState:
        """Forward variables of the hypotheses h·c kept after pruning.

        Args:
            state: state of the N parents.
            parent: (N',) row of each new hypothesis' parent in ``state``.
            tokens: (N',) appended token c.
            prefix_score: (N',) ψ(h·c) from :meth:`score` (becomes the running CTC score).

        Returns:
            The state of the N' new hypotheses (L + 1 tokens).
        """
        utt = state.utt.index_select(0, parent)
        r_nb = state.r_nonblank.index_select(0, parent)
        r_b = state.r_blank.index_select(0, parent)
        last = state.last.index_select(0, parent)
        phi = torch.where((tokens == last).unsqueeze(1), r_b, torch.logaddexp(r_nb, r_b))
        x_c = self.x.view(-1, self.x.shape[-1]).index_select(
            0, utt * self.vocab_size + tokens)  # (N', T)
        x_blank = self.x_blank.index_select(0, utt)
        neg_inf = x_c.new_full((len(tokens), 1), float("-inf"))
        # r^n_t = p_t(c) (r^n_{t-1} + φ_{t-1}); at t = 0 only the empty prefix can emit c
        first = x_c[:, :1] if state.length == 0 else neg_inf
        c_nb = torch.cat([first, x_c[:, 1:] + phi[:, :-1]], dim=1)
        # L + 1 tokens need L + 1 frames: both variables are -inf before frame L, so the
        # scans start there (exactly: their inputs are -inf before it too)
        start = min(state.length, x_c.shape[1])
        new_nb = _scan_from(x_c, c_nb, start)
        # r^b_t = p_t(blank) (r^b_{t-1} + r^n_{t-1})
        c_b = torch.cat([neg_inf, x_blank[:, 1:] + new_nb[:, :-1]], dim=1)
        new_b = _scan_from(x_blank, c_b, start)
        return CTCPrefixState(new_nb, new_b, prefix_score, tokens, utt, state.length + 1)


def _scan_from(a: torch.Tensor, c: torch.Tensor, start: int) -> torch.Tensor:
    """:func:`log_affine_scan` of the frames from ``start`` on, -inf before (where c is)."""
    if start == 0:
        return log_affine_scan(a, c)
    head = c.new_full(c.shape[:-1] + (start,), float("-inf"))
    return torch.cat([head, log_affine_scan(a[..., start:], c[..., start:])], dim=-1)
