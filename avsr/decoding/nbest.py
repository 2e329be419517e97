"""One dispatch from a decoder name to per-utterance n-best lists, shared by ``avsr.evaluate``
and ``avsr.transcribe`` (they used to choose the decoder each in their own way, and drifted)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from avsr.decoding.greedy import attention_greedy, ctc_greedy

__all__ = ["DECODERS", "decode_nbest"]

DECODERS = ("ctc_greedy", "attention_greedy", "beam", "ctc_beam")


def decode_nbest(name: str, model: nn.Module, enc: torch.Tensor, enc_lengths: torch.Tensor,
                 ctc_log_probs: torch.Tensor | None, tokenizer: Any, *, max_len_ratio: float,
                 search: Any = None, lm: Any = None) -> list[list[dict[str, Any]]]:
    """Decode a batch of encoder outputs with the decoder ``name``.

    Args:
        name: one of :data:`DECODERS`.
        model: gives ``decoder`` (attention decoders).
        enc: (B, T, D) encoder outputs; enc_lengths (B,).
        ctc_log_probs: (B, T, V) CTC log-probabilities (``None`` when no decoder needs them).
        tokenizer: gives ``blank_id``, ``sos_id``, ``eos_id``.
        max_len_ratio: attention greedy decodes at most ``ceil(ratio * max T)`` tokens.
        search: the search object of ``beam`` (:class:`~avsr.decoding.beam_search.BeamSearch`)
            or ``ctc_beam`` (:class:`~avsr.decoding.ctc_beam.CTCPrefixBeamSearch`).
        lm: language model for shallow fusion of the beam searches, or None.

    Returns:
        Per utterance, ``[{"tokens", "score", "scores"}]`` best first; the greedy decoders give
        one entry with ``score`` None and no ``scores``.

    Raises:
        ValueError: an unknown decoder, or a beam decoder without its search.
    """
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose from {DECODERS}")
    if name == "ctc_greedy":
        hyps = ctc_greedy(ctc_log_probs, enc_lengths, tokenizer.blank_id)
    elif name == "attention_greedy":
        max_len = max(1, int(math.ceil(max_len_ratio * int(enc_lengths.max()))))
        hyps = attention_greedy(model.decoder, enc, enc_lengths, tokenizer.sos_id,
                                tokenizer.eos_id, max_len)
    else:
        if search is None:
            raise ValueError(f"decoder {name!r} needs its search object (decode.{name})")
        if name == "beam":
            nbest = search(model.decoder, enc, enc_lengths, ctc_log_probs, tokenizer.sos_id,
                           tokenizer.eos_id, tokenizer.blank_id, lm=lm)
        else:
            nbest = search(ctc_log_probs, enc_lengths, tokenizer.blank_id, lm=lm,
                           sos_id=tokenizer.sos_id, eos_id=tokenizer.eos_id)
        return [[{"tokens": list(h.tokens), "score": float(h.score),
                  "scores": {k: float(v) for k, v in h.scores.items()}} for h in hyps]
                for hyps in nbest]
    return [[{"tokens": list(h), "score": None, "scores": {}}] for h in hyps]
