"""Decoding: greedy CTC / attention (beam search lives beside it)."""

from avsr.decoding.greedy import attention_greedy, ctc_greedy

__all__ = ["ctc_greedy", "attention_greedy"]
