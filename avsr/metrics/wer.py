"""Word error rate: word-level Levenshtein distance over whitespace-split, normalised text.

jiwer is the reference we test against (``tests/test_metrics.py``); our own counter exists
because the trainer accumulates edits and reference words across batches and ranks as plain
integers, which sum exactly under ``all_reduce`` where averaged ratios would not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["edit_distance", "word_errors", "wer", "ErrorCounter"]


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    if len(ref) < len(hyp):  # keep the DP row as short as the shorter sequence
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """Return (word edits, reference words) for one utterance."""
    ref_words, hyp_words = ref.split(), hyp.split()
    return edit_distance(ref_words, hyp_words), len(ref_words)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER = total word edits / total reference words (not a mean of ratios)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = words = 0
    for r, h in zip(refs, hyps):
        e, n = word_errors(r, h)
        edits += e
        words += n
    if words == 0:
        raise ValueError("WER is undefined: the references hold no word")
    return edits / words


@dataclass
class ErrorCounter:
    """Accumulates word edits and reference words over batches.

    Attributes:
        records: with ``keep_records``, every utterance as ``(id, edits, ref words, ref, hyp)``
            (what evaluation writes to its per-utterance hypothesis files).
    """

    edits: int = 0
    words: int = 0
    utterances: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)
    max_examples: int = 5
    keep_records: bool = False
    records: list[tuple[str, int, int, str, str]] = field(default_factory=list)

    def update(self, refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None
               ) -> None:
        for k, (r, h) in enumerate(zip(refs, hyps, strict=True)):
            e, n = word_errors(r, h)
            self.edits += e
            self.words += n
            self.utterances += 1
            utt = ids[k] if ids else str(self.utterances)
            if len(self.examples) < self.max_examples:
                self.examples.append((utt, r, h))
            if self.keep_records:
                self.records.append((utt, e, n, r, h))

    @property
    def wer(self) -> float:
        return self.edits / max(self.words, 1)
