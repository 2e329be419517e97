"""The homophene floor of an open-vocabulary corpus: a bigram prior searched over the visemes.

An open-domain sentence space cannot be listed the way :func:`~avsr.metrics.homophene.
grammar_candidates` lists GRID's, so the oracle here searches it: given the merged viseme-class
sequence of a test utterance, it finds the word sequences whose concatenated (and merged)
viseme classes equal it, using a lexicon word -> viseme classes (the renderer's dictionary,
not the training vocabulary), and answers the most probable under a word bigram prior counted
from the training transcripts (:class:`BigramPrior`). The search is exact: a Viterbi pass over
(position in the viseme string, previous word), so the answer is the prior's maximum over
*every* segmentation, not a beam's approximation of it.

As in :mod:`avsr.metrics.homophene`, the oracle sees no word boundaries, durations or stress;
ties are broken uniformly at random and the floor counts the expected errors of that choice.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence

from avsr.metrics.homophene import HomopheneFloor, merge_repeats
from avsr.metrics.wer import edit_distance

__all__ = ["BOS", "EOS", "BigramPrior", "lattice_oracle", "open_homophene_floor"]

BOS, EOS = "<s>", "</s>"
Words = tuple[str, ...]


class BigramPrior:
    """Interpolated Kneser-Ney word bigram with an add-k continuation unigram.

    ``P(w | v) = max(c(v, w) - D, 0) / c(v) + D * N(v .) / c(v) * Pc(w)`` where ``c`` counts
    training bigrams (sentences padded with ``<s>`` and ``</s>``), ``N(v .)`` is the number of
    distinct words seen after ``v``, and the continuation unigram
    ``Pc(w) = (N(. w) + k) / (N(. .) + k |V|)`` counts the distinct words seen *before* ``w``
    (Kneser-Ney: a word that follows many words is a likely successor of a new one). The
    ``+ k`` over the whole vocabulary ``V`` (the lexicon plus ``</s>``) gives every word the
    training text never shows the same small floor, so the oracle can still answer it. A
    history never seen in training (``c(v) = 0``) falls back to ``Pc``.

    Args:
        sentences: training transcripts, one word sequence each.
        vocabulary: every word the prior must be able to predict (the lexicon's words);
            training words are added.
        discount: ``D``, in (0, 1); 0.75 is the usual choice for bigrams.
        k: the add-k of the continuation unigram, > 0.
    """

    def __init__(self, sentences: Iterable[Sequence[str]], vocabulary: Iterable[str],
                 discount: float = 0.75, k: float = 1.0) -> None:
        if not 0 < discount < 1 or k <= 0:
            raise ValueError(f"need 0 < discount < 1 and k > 0, got {discount}, {k}")
        self.discount, self.k = discount, k
        self.bigrams: dict[str, Counter] = defaultdict(Counter)
        words = set(vocabulary)
        self.sentences = 0
        for sentence in sentences:
            padded = (BOS, *sentence, EOS)
            words.update(sentence)
            for v, w in zip(padded, padded[1:]):
                self.bigrams[v][w] += 1
            self.sentences += 1
        self.vocabulary = frozenset(words | {EOS})
        self.history = {v: sum(c.values()) for v, c in self.bigrams.items()}
        self.before: Counter = Counter(w for c in self.bigrams.values() for w in c)
        self._types = sum(self.before.values())

    def continuation(self, word: str) -> float:
        """``Pc(word)``: the lower-order distribution (and an unseen word's floor)."""
        return ((self.before[word] + self.k)
                / (self._types + self.k * len(self.vocabulary)))

    def prob(self, word: str, prev: str) -> float:
        """``P(word | prev)``; ``prev`` may be ``<s>``, ``word`` may be ``</s>``."""
        if word not in self.vocabulary:
            raise KeyError(f"{word!r} is not in the prior's vocabulary")
        total = self.history.get(prev, 0)
        if total == 0:
            return self.continuation(word)
        seen = self.bigrams[prev]
        return (max(seen[word] - self.discount, 0.0) / total
                + self.discount * len(seen) / total * self.continuation(word))

    def logp(self, words: Sequence[str]) -> float:
        """Log-probability of a whole sentence, ``</s>`` included."""
        padded = (BOS, *words, EOS)
        return sum(math.log(self.prob(w, v)) for v, w in zip(padded, padded[1:]))


Lexicon = Mapping[str, Sequence[Hashable]] | Iterable[tuple[str, Sequence[Hashable]]]


def _pairs(lexicon: Lexicon) -> list[tuple[str, Sequence[Hashable]]]:
    return list(lexicon.items() if isinstance(lexicon, Mapping) else lexicon)


def lattice_oracle(observation: Sequence[Hashable], lexicon: Lexicon, prior: BigramPrior, *,
                   tol: float = 1e-9, max_answers: int = 1000) -> tuple[float, list[Words]]:
    """The most probable word sequences that look like ``observation``.

    A word may start where the observation's next symbol starts, or one symbol earlier when
    its first class is the previous word's last (two segments of one class merge into one:
    ``... BMP`` + ``BMP ...`` is seen as one ``BMP``). A one-class word can thus hide entirely
    in the previous word's last segment; the search allows it, since the eye could not tell.
    Words whose lexicon entry is empty (nothing visible) are never proposed.

    Args:
        observation: merged viseme-class sequence (:func:`~avsr.metrics.homophene.
            merge_repeats` of the utterance's classes).
        lexicon: word -> its viseme classes, or ``(word, classes)`` pairs where a word has
            several pronunciations (the oracle takes whichever fits); every word must be in
            ``prior.vocabulary``.
        prior: the text distribution.
        tol: costs (negative log-probabilities) within ``tol`` of the best tie.
        max_answers: at most this many tied answers are listed.

    Returns:
        (best log-probability, every sentence that reaches it, up to ``max_answers``);
        ``(-inf, [])`` when no word sequence looks like the observation.
    """
    obs = tuple(observation)
    n = len(obs)
    by_look: dict[tuple, list[str]] = defaultdict(list)
    for word, classes in _pairs(lexicon):
        look = merge_repeats(classes)
        if look and word not in by_look[look]:
            by_look[look].append(word)
    lengths = sorted({len(k) for k in by_look})
    cost_cache: dict[tuple[str, str], float] = {}

    def cost(word: str, prev: str) -> float:
        key = (word, prev)
        if key not in cost_cache:
            cost_cache[key] = -math.log(prior.prob(word, prev))
        return cost_cache[key]

    # best[j][prev] = (cost, back-pointers (j', prev') of every path reaching that cost)
    best: list[dict[str, tuple[float, list[tuple[int, str]]]]] = [{} for _ in range(n + 1)]
    best[0][BOS] = (0.0, [])

    def relax(j: int, word: str, c: float, back: tuple[int, str]) -> bool:
        held = best[j].get(word)
        if held is None or c < held[0] - tol:
            best[j][word] = (c, [back])
            return True
        if c <= held[0] + tol and back not in held[1]:
            held[1].append(back)
        return False

    for j in range(n + 1):
        # Dijkstra within position j over the one-class words that hide in obs[j - 1]: costs
        # are positive, so states leave the heap in final order and ties are all recorded.
        hidden = by_look.get((obs[j - 1],), []) if j > 0 else []
        heap = [(c, prev) for prev, (c, _) in best[j].items()]
        heapq.heapify(heap)
        done: set[str] = set()
        while heap:
            c, prev = heapq.heappop(heap)
            if prev in done or c > best[j][prev][0] + tol:
                continue
            done.add(prev)
            for word in hidden:
                if relax(j, word, c + cost(word, prev), (j, prev)):
                    heapq.heappush(heap, (best[j][word][0], word))
        for prev, (c, _) in list(best[j].items()):
            for length in lengths:
                # starting fresh at j, or sharing the merged segment obs[j - 1]
                for start in (j, j - 1) if j > 0 else (j,):
                    end = start + length
                    if end <= j or end > n:
                        continue
                    for word in by_look.get(obs[start:end], ()):
                        relax(end, word, c + cost(word, prev), (j, prev))
    finals = {prev: c + cost(EOS, prev) for prev, (c, _) in best[n].items()}
    if not finals:
        return -math.inf, []
    top = min(finals.values())
    answers: list[Words] = []

    def backtrack(j: int, word: str, suffix: Words) -> None:
        if len(answers) >= max_answers:
            return
        if word == BOS:
            answers.append(suffix)
            return
        for bj, bprev in best[j][word][1]:
            backtrack(bj, bprev, (word, *suffix))

    for prev, c in finals.items():
        if c <= top + tol:
            backtrack(n, prev, ())
    # two pronunciations of one word can fit different spans: one sentence, two paths
    return -top, list(dict.fromkeys(answers))


def open_homophene_floor(references: Sequence[Sequence[str]], lexicon: Lexicon,
                         prior: BigramPrior,
                         observations: Sequence[Sequence[Hashable]] | None = None,
                         **kwargs) -> HomopheneFloor:
    """Expected word errors of :func:`lattice_oracle` reading each reference's visemes.

    Args:
        references: reference word sequences.
        lexicon: as :func:`lattice_oracle`.
        prior: the text distribution (e.g. counted from the training transcripts).
        observations: each reference's viseme classes as rendered (merged here); default:
            the reference seen through ``lexicon``, which must then be a mapping.
        **kwargs: passed to :func:`lattice_oracle`.

    Raises:
        ValueError: a reference word is not in the lexicon (default observations), or no word
            sequence looks like a reference.
    """
    if observations is None:
        if not isinstance(lexicon, Mapping):
            raise ValueError("observations are needed with a lexicon of (word, classes) pairs")
        missing = sorted({w for ref in references for w in ref if w not in lexicon})
        if missing:
            raise ValueError(f"reference words {missing} are not in the lexicon")
        observations = [[c for w in ref for c in lexicon[w]] for ref in references]
    lexicon = _pairs(lexicon)
    errors, words, ambiguous = 0.0, 0, 0
    for ref, seen in zip(references, observations, strict=True):
        ref = tuple(ref)
        _, hyps = lattice_oracle(merge_repeats(seen), lexicon, prior, **kwargs)
        if not hyps:
            raise ValueError(f"reference {' '.join(ref)!r} looks like no word sequence")
        errors += sum(edit_distance(ref, h) for h in hyps) / len(hyps)
        words += len(ref)
        ambiguous += hyps != [ref]
    return HomopheneFloor(errors, words, len(references), ambiguous)
