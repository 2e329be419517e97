"""Decoding: greedy CTC / attention, CTC prefix beam search, and joint CTC/attention beam search with LM fusion."""

from avsr.decoding.beam_search import BeamSearch, Hypothesis
from avsr.decoding.ctc_beam import CTCPrefixBeamSearch
from avsr.decoding.ctc_prefix_score import CTCPrefixScorer, CTCPrefixState, log_affine_scan
from avsr.decoding.greedy import attention_greedy, ctc_greedy

__all__ = [
    "ctc_greedy",
    "attention_greedy",
    "BeamSearch",
    "CTCPrefixBeamSearch",
    "Hypothesis",
    "CTCPrefixScorer",
    "CTCPrefixState",
    "log_affine_scan",
]
