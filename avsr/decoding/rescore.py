"""Teacher-forced scores of given token sequences: what the beam search would give them.

Used to tell search errors from model errors (a wrong output is a *search* error when the
reference scores higher than it under the same scorers, a *model* error otherwise), to rescore
n-best lists, and to find the language-model weight that would make a reference win. The parts
are those of :class:`~avsr.decoding.beam_search.BeamSearch`'s ``Hypothesis.scores``: the
decoder's and the LM's log-probabilities of the tokens and ``eos``, and CTC's log-probability
of the whole sequence (the prefix score at ``eos``), each unweighted. A hypothesis the beam
search cut at its length limit ended without ``eos`` (ESPnet's rule) and so without eos's
scores; here every sequence is scored as a complete sentence.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.lm import lm_batch
from avsr.models.utils import check_shape

__all__ = ["score_sequences", "fused_score"]



def _token_log_prob(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor
                    ) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    valid = torch.arange(targets.shape[1], device=targets.device)[None] < lengths[:, None]
    return (logp * valid).sum(dim=1)


@torch.inference_mode()
def score_sequences(
    decoder: nn.Module | None,
    memory: torch.Tensor,
    memory_lengths: torch.Tensor,
    ctc_log_probs: torch.Tensor | None,
    sequences: Sequence[Sequence[int]],
    *,
    sos_id: int,
    eos_id: int,
    blank_id: int = 0,
    lm: Any = None,
) -> dict[str, torch.Tensor]:
    """Score one token sequence per utterance with each scorer, as the beam search would.

    Args:
        decoder: the attention decoder (teacher-forced ``forward``), or None.
        memory: (B, T, D) encoder output; memory_lengths (B,) valid frames.
        ctc_log_probs: (B, T, V) CTC log-probabilities, or None.
        sequences: B token-id lists without sos/eos (may be empty).
        sos_id, eos_id, blank_id: special tokens.
        lm: a language model with a teacher-forced ``forward(tokens, lengths)`` (e.g.
            :class:`~avsr.models.lm.TransformerLM`), or None.

    Returns:
        ``{"decoder", "ctc", "lm", "length_bonus"}`` (those with a scorer), each (B,) float:
        log p(y, eos) for the decoder and LM, log p(y) for CTC (``-inf`` where y cannot be
        aligned in the frames), and the number of tokens plus eos for the length bonus.

    Raises:
        ValueError: ``memory`` is not (B, T, D), or ``sequences`` does not have B entries.
    """
    check_shape("memory", memory, 3, "(B, T, D)")
    batch = memory.shape[0]
    if len(sequences) != batch:
        raise ValueError(f"{len(sequences)} sequences for memory {tuple(memory.shape)}: one "
                         f"per utterance is needed")
    device = memory.device
    # targets padded with a real id: they are gathered from log-probabilities, not ignored
    batch = lm_batch(sequences, sos_id, eos_id, target_pad=eos_id)
    inputs, targets, lengths = (t.to(device) for t in batch)
    scores: dict[str, torch.Tensor] = {"length_bonus": lengths.float()}
    if decoder is not None:
        logits = decoder(inputs, lengths, memory, memory_lengths)
        scores["decoder"] = _token_log_prob(logits, targets, lengths)
    if lm is not None:
        scores["lm"] = _token_log_prob(lm(inputs, lengths), targets, lengths)
    if ctc_log_probs is not None:
        check_shape("ctc_log_probs", ctc_log_probs, 3, "(B, T, V)")
        # PyTorch's CTC forward algorithm; an empty target is the all-blank path
        flat = torch.tensor([t for s in sequences for t in s], dtype=torch.long, device=device)
        nll = F.ctc_loss(ctc_log_probs.float().transpose(0, 1), flat, memory_lengths,
                         lengths - 1, blank=blank_id, reduction="none", zero_infinity=False)
        scores["ctc"] = -nll
    return scores


def fused_score(scores: dict[str, torch.Tensor], *, ctc_weight: float, lm_weight: float = 0.0,
                penalty: float = 0.0) -> torch.Tensor:
    """The beam search's total of :func:`score_sequences`' parts: ``(1 - λ) · decoder + λ ·
    CTC + lm_weight · LM + penalty · (tokens + 1)`` (a part without its scorer counts 0).

    Returns:
        (B,) weighted scores.
    """
    total = penalty * scores["length_bonus"]
    if "decoder" in scores:
        total = total + (1.0 - ctc_weight) * scores["decoder"]
    if ctc_weight and "ctc" in scores:
        total = total + ctc_weight * scores["ctc"]
    if lm_weight and "lm" in scores:
        total = total + lm_weight * scores["lm"]
    return total
