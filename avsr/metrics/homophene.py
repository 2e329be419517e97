"""The homophene floor: the WER of a lip reader that sees the visemes perfectly.

Words that look alike on the lips (homophenes: ``B``/``P``/``M``, ``bin``/``pin``) cannot be
told apart from the video alone. The floor is the WER of an oracle that observes each test
utterance's exact viseme-class sequence and answers with the most probable sentence under the
corpus's own text distribution among the sentences that look the same. Below the floor a
video model must be reading something other than the lip shapes (timing, say); far above it,
it is not yet reading the shapes.

Ties (equally probable sentences that look the same, e.g. GRID's uniform slots) are broken
uniformly at random, and the floor counts the expected word errors of that choice, so it does
not depend on the order of the candidates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from avsr.metrics.wer import edit_distance

__all__ = ["HomopheneFloor", "merge_repeats", "grammar_candidates", "map_sentences",
           "homophene_floor"]

Words = tuple[str, ...]


@dataclass(frozen=True)
class HomopheneFloor:
    """Expected word errors of the viseme oracle.

    Attributes:
        errors: expected word errors summed over the utterances.
        words: reference words.
        utterances: references scored.
        ambiguous: references whose look-alike set held another equally or more probable
            sentence (the oracle may answer wrong).
    """

    errors: float
    words: int
    utterances: int
    ambiguous: int

    @property
    def wer(self) -> float:
        """Expected WER in percent."""
        return 100.0 * self.errors / max(self.words, 1)

    def __add__(self, other: HomopheneFloor) -> HomopheneFloor:
        return HomopheneFloor(self.errors + other.errors, self.words + other.words,
                              self.utterances + other.utterances,
                              self.ambiguous + other.ambiguous)


def merge_repeats(seq: Iterable[Hashable]) -> tuple:
    """Collapse runs of the same symbol (two segments of one viseme class look like one)."""
    return tuple(k for k, _ in itertools.groupby(seq))


def grammar_candidates(slots: Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
                       weights: Sequence[Sequence[float]] | None = None
                       ) -> Iterable[tuple[Words, float]]:
    """Every sentence of a slot grammar with its log-probability.

    Args:
        slots: the word choices of each slot, in order (a mapping's values are used).
        weights: per slot, the relative probability of each word (default: uniform, as the
            synthetic GRID grammar draws them).

    Yields:
        ``(words, log_prob)`` for every combination.
    """
    slots = list(slots.values()) if isinstance(slots, Mapping) else list(slots)
    if weights is None:
        weights = [[1.0] * len(s) for s in slots]
    logp = []
    for words, w in zip(slots, weights, strict=True):
        if len(words) != len(w) or min(w) <= 0:
            raise ValueError(f"weights {list(w)} do not fit slot {list(words)}")
        total = sum(w)
        logp.append([math.log(x / total) for x in w])
    for combo in itertools.product(*(range(len(s)) for s in slots)):
        yield (tuple(slots[i][k] for i, k in enumerate(combo)),
               sum(logp[i][k] for i, k in enumerate(combo)))


def map_sentences(candidates: Iterable[tuple[Sequence[str], float]],
                  observe: Callable[[Words], Hashable], *, tol: float = 1e-9
                  ) -> dict[Hashable, tuple[float, list[Words]]]:
    """Group candidate sentences by what they look like; keep the most probable of each group.

    Args:
        candidates: ``(words, log_prob)`` pairs, e.g. :func:`grammar_candidates`.
        observe: the observation of a sentence (e.g. its merged viseme-class sequence).
        tol: log-probabilities within ``tol`` of the best tie.

    Returns:
        observation -> (best log-probability, every sentence that reaches it).
    """
    best: dict[Hashable, tuple[float, list[Words]]] = {}
    for words, logp in candidates:
        words = tuple(words)
        key = observe(words)
        held = best.get(key)
        if held is None or logp > held[0] + tol:
            best[key] = (logp, [words])
        elif logp >= held[0] - tol:
            held[1].append(words)
    return best


def homophene_floor(references: Sequence[Sequence[str]],
                    candidates: Iterable[tuple[Sequence[str], float]]
                    | Mapping[Hashable, tuple[float, list[Words]]],
                    observe: Callable[[Words], Hashable]) -> HomopheneFloor:
    """Expected word errors of the oracle that reads ``observe(reference)`` and answers the
    most probable candidate that looks the same (uniform choice among ties).

    Args:
        references: reference word sequences (upper case, as the transcripts).
        candidates: the text distribution as ``(words, log_prob)`` pairs, or the result of
            :func:`map_sentences` (to score several reference sets against one grouping).
        observe: sentence -> observation; the same function for references and candidates.

    Raises:
        ValueError: a reference looks like no candidate (it lies outside the distribution).
    """
    groups = candidates if isinstance(candidates, Mapping) else map_sentences(candidates, observe)
    errors, words, ambiguous = 0.0, 0, 0
    for ref in references:
        ref = tuple(ref)
        key = observe(ref)
        if key not in groups:
            raise ValueError(f"reference {' '.join(ref)!r} looks like no candidate sentence")
        hyps = groups[key][1]
        errors += sum(edit_distance(ref, h) for h in hyps) / len(hyps)
        words += len(ref)
        ambiguous += hyps != [ref]
    return HomopheneFloor(errors, words, len(references), ambiguous)
