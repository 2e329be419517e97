"""Word errors by how often each reference word occurs in the training transcripts.

An open-vocabulary test set (LRS3, ``synth_open``) holds words that training saw thousands of
times and words it saw once or never. A corpus WER mixes them; splitting the reference words
by their training count shows whether a model fails on the acoustics/visemes of every word or
on the spelling of the words it rarely saw, which is what decides whether more steps, more
text (an LM) or more audio-visual data is the remedy.

A reference word counts as an error when the alignment substitutes or deletes it; insertions
belong to no reference word, so they are reported separately and the per-bucket rates sum
(weighted by words) to the corpus WER minus the insertion rate. The alignment is jiwer's
(``process_words``), the package made for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import jiwer

__all__ = ["FrequencyBucket", "errors_by_frequency", "word_counts"]


@dataclass(frozen=True)
class FrequencyBucket:
    """Reference words whose training count lies in ``[low, high]`` (``high`` None: no bound).

    Attributes:
        words: reference word tokens in the bucket.
        errors: of them, substituted or deleted by the alignment.
    """

    low: int
    high: int | None
    words: int
    errors: int

    @property
    def label(self) -> str:
        if self.high is None:
            return f"≥ {self.low}"
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.words if self.words else None


def word_counts(transcripts: Iterable[str]) -> Counter:
    """Whitespace-split word counts of normalised transcripts."""
    counts: Counter = Counter()
    for text in transcripts:
        counts.update(text.split())
    return counts


def errors_by_frequency(refs: Sequence[str], hyps: Sequence[str], counts: Mapping[str, int],
                        edges: Sequence[int] = (0, 1, 6, 11, 51)
                        ) -> tuple[list[FrequencyBucket], int]:
    """Split reference-word errors by the words' training counts.

    Args:
        refs: reference transcripts, one per utterance (normalised like ``hyps``).
        hyps: hypotheses, same order.
        counts: word -> occurrences in the training transcripts (absent: 0).
        edges: increasing lower bounds of the buckets; the last bucket is open-ended. The
            default gives 0 (unseen), 1–5, 6–10, 11–50, ≥ 51.

    Returns:
        The buckets, and the number of inserted hypothesis words (in no bucket).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if list(edges) != sorted(set(edges)) or not edges or edges[0] < 0:
        raise ValueError(f"edges must be increasing non-negative counts, got {list(edges)}")
    words = [0] * len(edges)
    errors = [0] * len(edges)
    insertions = 0

    def bucket(word: str) -> int:
        n = counts.get(word, 0)
        return max(i for i, low in enumerate(edges) if n >= low) if n >= edges[0] else -1

    pairs = [(r, h) for r, h in zip(refs, hyps) if r.split()]
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h if h.split() else "" for _, h in pairs])
        for ref_words, chunks in zip(out.references, out.alignments):
            for chunk in chunks:
                if chunk.type == "insert":
                    insertions += chunk.hyp_end_idx - chunk.hyp_start_idx
                    continue
                for w in ref_words[chunk.ref_start_idx:chunk.ref_end_idx]:
                    b = bucket(w)
                    if b < 0:
                        continue
                    words[b] += 1
                    errors[b] += chunk.type != "equal"
    highs = [e - 1 for e in edges[1:]] + [None]
    return [FrequencyBucket(low, high, n, e)
            for low, high, n, e in zip(edges, highs, words, errors)], insertions
