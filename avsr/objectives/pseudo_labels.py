"""Greedy pseudo-labels with confidences from a teacher (USR, Haliassos et al., NeurIPS 2024;
REFERENCE.md §2.1 (b)): frame-wise CTC argmax and batched greedy attention decoding with the
decoder's key/value cache, each label masked where the teacher's probability is below a
threshold (0.8), and the frame-wise / token-wise losses the student learns them with.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["CTCPseudoLabels", "AttentionPseudoLabels", "ctc_pseudo_labels",
           "attention_pseudo_labels", "ctc_label_ids", "attention_label_ids",
           "masked_cross_entropy", "IGNORE", "NORMALIZE"]

IGNORE = -100


class CTCPseudoLabels(NamedTuple):
    """targets (B, T) long with ``IGNORE`` at unconfident or padded frames; confidence (B, T);
    best (B, T) the argmax of every frame, confident or not, ``IGNORE`` past each length."""

    targets: torch.Tensor
    confidence: torch.Tensor
    best: torch.Tensor


class AttentionPseudoLabels(NamedTuple):
    """Greedy decoding of the teacher.

    Attributes:
        tokens: (B, L) tokens without sos, eos at each sequence's end (if reached), padded 0.
        lengths: (B,) tokens including that eos.
        targets: (B, L) ``tokens`` with ``IGNORE`` at unconfident and padded positions.
        confidence: (B, L) probability of each chosen token.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    confidence: torch.Tensor


def ctc_pseudo_labels(log_probs: torch.Tensor, lengths: torch.Tensor, threshold: float = 0.8
                      ) -> CTCPseudoLabels:
    """Frame-wise argmax of CTC posteriors (blanks included), unconfident frames masked.

    Args:
        log_probs: (B, T, V) teacher CTC log-probabilities.
        lengths: (B,) valid frames.
        threshold: frames whose max probability is below it get ``IGNORE``.
    """
    check_shape("log_probs", log_probs, 3, "(B, T, V)")
    best_logp, best = log_probs.max(dim=-1)
    conf = best_logp.exp()
    pad = make_pad_mask(lengths, log_probs.shape[1])
    return CTCPseudoLabels(best.masked_fill(pad | (conf < threshold), IGNORE), conf,
                           best.masked_fill(pad, IGNORE))


def ctc_label_ids(labels: CTCPseudoLabels, blank_id: int) -> list[list[int]]:
    """The token sequence of each utterance's frame labels (all, confident or not): repeats
    collapsed, blanks and padding dropped, as greedy CTC decoding reads them."""
    best = labels.best
    previous = torch.cat([best.new_full((best.shape[0], 1), IGNORE), best[:, :-1]], dim=1)
    keep = (best != blank_id) & (best != IGNORE) & (best != previous)
    best, keep = best.cpu(), keep.cpu()
    return [best[b][keep[b]].tolist() for b in range(best.shape[0])]


def attention_label_ids(labels: AttentionPseudoLabels, eos_id: int) -> list[list[int]]:
    """The tokens of each utterance's greedy decoding (all, confident or not), without eos."""
    out = []
    for toks, n in zip(labels.tokens.cpu().tolist(), labels.lengths.cpu().tolist()):
        out.append([t for t in toks[:n] if t != eos_id])
    return out


@torch.no_grad()
def attention_pseudo_labels(
    decoder: nn.Module,
    memory: torch.Tensor,
    memory_lengths: torch.Tensor,
    sos_id: int,
    eos_id: int,
    threshold: float = 0.8,
    max_len_ratio: float = 0.2,
    pad_id: int = 0,
) -> AttentionPseudoLabels:
    """Batched greedy decoding with the K/V cache, at most ``ceil(max_len_ratio · T)`` steps
    (USR: T / 5); each token's probability decides whether it is a target.

    Tokens after a sequence's eos are padding. A sequence that never emits eos keeps all its
    tokens (the student then learns no eos for it).
    """
    check_shape("memory", memory, 3, "(B, T, D)")
    batch, frames = memory.shape[:2]
    max_len = max(1, math.ceil(max_len_ratio * frames))
    state = decoder.init_state(memory, memory_lengths)
    last = torch.full((batch,), sos_id, dtype=torch.long, device=memory.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    lengths = torch.zeros(batch, dtype=torch.long, device=memory.device)
    tokens, confs = [], []
    for _ in range(max_len):
        logits, state = decoder.step(last, state)
        p, last = F.softmax(logits.float(), dim=-1).max(dim=-1)
        last = last.masked_fill(finished, pad_id)
        tokens.append(last)
        confs.append(p.masked_fill(finished, 0.0))
        lengths = lengths + (~finished).long()
        finished = finished | (last == eos_id)
        if bool(finished.all()):
            break
    toks = torch.stack(tokens, dim=1)
    conf = torch.stack(confs, dim=1)
    pad = make_pad_mask(lengths, toks.shape[1])
    targets = toks.masked_fill(pad | (conf < threshold), IGNORE)
    return AttentionPseudoLabels(toks.masked_fill(pad, pad_id), lengths, targets, conf)


# what masked_cross_entropy divides its summed cross-entropy by
NORMALIZE = ("tokens", "batch")


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                         normalize: str = "tokens") -> torch.Tensor:
    """Cross-entropy summed over positions whose target is not ``IGNORE`` (0 if none).

    Args:
        logits: (B, N, V); targets: (B, N).
        normalize: ``"tokens"`` divides by the kept positions (a per-token mean); ``"batch"``
            by B, the scale of ESPnet's hybrid loss (CTC and attention summed per utterance,
            averaged over the batch), so that a pseudo-label loss and a labelled loss mixed
            with weights are on the same footing.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, N, V) and targets (B, N), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    n = (targets != IGNORE).sum()
    if n == 0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE,
                         reduction="sum")
    return ce / (n if normalize == "tokens" else logits.shape[0])
