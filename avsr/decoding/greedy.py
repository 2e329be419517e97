"""Greedy decoding: best-path CTC and batched autoregressive attention decoding."""

from __future__ import annotations

import torch
from torch import nn

from avsr.models.utils import check_shape, make_pad_mask

__all__ = ["ctc_greedy", "attention_greedy"]


def ctc_greedy(
    log_probs: torch.Tensor, lengths: torch.Tensor | None, blank_id: int = 0
) -> list[list[int]]:
    """Best-path CTC decoding: per-frame argmax, collapse repeats, drop blanks.

    Args:
        log_probs: (B, T, V) CTC (log-)probabilities.
        lengths: (B,) valid frames; frames past an item's length are ignored. ``None``: all T.
        blank_id: the blank token.

    Returns:
        B token-id lists.
    """
    check_shape("log_probs", log_probs, 3, "(B, T, V)")
    best = log_probs.argmax(dim=-1)  # (B, T)
    batch, frames = best.shape
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long, device=best.device)
    previous = torch.cat([best.new_full((batch, 1), -1), best[:, :-1]], dim=1)
    keep = (best != blank_id) & (best != previous) & ~make_pad_mask(lengths, frames)
    best, keep = best.cpu(), keep.cpu()
    return [best[b][keep[b]].tolist() for b in range(batch)]


@torch.no_grad()
def attention_greedy(
    decoder: nn.Module,
    memory: torch.Tensor,
    memory_lengths: torch.Tensor | None,
    sos_id: int,
    eos_id: int,
    max_len: int | None = None,
) -> list[list[int]]:
    """Batched greedy autoregressive decoding with the decoder's key/value cache.

    Every sequence starts from sos and takes the arg-max token each step; a sequence stops at
    its first eos (which is not returned) and the loop ends when all have stopped or after
    ``max_len`` tokens.

    Args:
        decoder: a decoder with ``init_state(memory, memory_lengths)`` and
            ``step(tokens_last, state) -> (logits (B, V), state)`` (``TransformerDecoder``).
        memory: (B, T, D) encoder output.
        memory_lengths: (B,) valid frames; ``None``: all T.
        sos_id: start symbol.
        eos_id: end symbol.
        max_len: most tokens per hypothesis (eos included); ``None``: T, the longest memory.

    Returns:
        B token-id lists without sos/eos.
    """
    check_shape("memory", memory, 3, "(B, T, D)")
    batch, frames = memory.shape[:2]
    if max_len is None:
        max_len = frames
    state = decoder.init_state(memory, memory_lengths)
    last = torch.full((batch,), sos_id, dtype=torch.long, device=memory.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    outputs = []
    for _ in range(max_len):
        logits, state = decoder.step(last, state)
        last = logits.argmax(dim=-1).masked_fill(finished, eos_id)
        outputs.append(last)
        finished = finished | (last == eos_id)
        if bool(finished.all()):
            break
    if not outputs:
        return [[] for _ in range(batch)]
    tokens = torch.stack(outputs, dim=1).cpu()  # (B, steps)
    result = []
    for row in tokens.tolist():
        result.append(row[: row.index(eos_id)] if eos_id in row else row)
    return result
