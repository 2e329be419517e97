"""Word time stamps of a hypothesis by CTC forced alignment
(``torchaudio.functional.forced_align``)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from avsr.modalities import FPS

__all__ = ["FRAME_S", "WORD_MARK", "word_timestamps"]

log = logging.getLogger(__name__)

FRAME_S = 1.0 / FPS  # one encoder frame: 40 ms
WORD_MARK = "\u2581"  # SentencePiece's word-boundary marker


def word_timestamps(log_probs: torch.Tensor, tokens: Sequence[int], tokenizer: Any,
                    blank_id: int = 0, frame_s: float = FRAME_S) -> list[dict[str, Any]]:
    """Word start/end times of ``tokens`` by CTC forced alignment.

    ``torchaudio.functional.forced_align`` finds the best CTC path of ``tokens`` through
    ``log_probs``; each token spans the frames its label occupies on that path, and tokens
    join into words at SentencePiece's word-boundary marker ``▁``.

    Args:
        log_probs: (T, V) CTC log-probabilities of one utterance (valid frames only).
        tokens: the hypothesis' token ids (no blank, sos or eos).
        tokenizer: gives each id's piece (``id_to_piece``).
        blank_id: the blank label.
        frame_s: seconds per encoder frame.

    Returns:
        ``[{"word", "start", "end"}]`` in seconds (``end`` is the end of the word's last
        frame); empty when there are no tokens or they cannot fit the frames (CTC needs a
        frame per token plus one between repeats).
    """
    import torchaudio.functional as taf

    # blank (an attention hypothesis may hold it) has no CTC label; decode() drops it too
    ids = [int(t) for t in tokens if int(t) != blank_id and int(t) >= 0]
    frames = int(log_probs.shape[0])
    repeats = sum(a == b for a, b in zip(ids, ids[1:]))
    if not ids or len(ids) + repeats > frames:
        if ids:
            log.warning("no word times: %d tokens (%d repeats) do not fit %d frames", len(ids),
                        repeats, frames)
        return []
    targets = torch.tensor([ids], dtype=torch.int32)
    path, scores = taf.forced_align(log_probs[None].float().cpu(), targets, blank=blank_id)
    spans = taf.merge_tokens(path[0], scores[0].exp(), blank=blank_id)
    words: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for span in spans:
        piece = tokenizer.id_to_piece(int(span.token))
        starts_word = piece.startswith(WORD_MARK) or current is None
        text = piece.replace(WORD_MARK, "")
        if starts_word:
            if current is not None and current["word"]:
                words.append(current)
            current = {"word": text, "start": span.start, "end": span.end}
        else:
            current["word"] += text
            current["end"] = span.end
    if current is not None and current["word"]:
        words.append(current)
    return [{"word": w["word"], "start": round(w["start"] * frame_s, 3),
             "end": round(w["end"] * frame_s, 3)} for w in words]
