"""Sentence sampling for the synthetic corpus: a GRID-like grammar and an open-vocabulary domain.

A sentence is a :class:`Sentence`: the upper-case transcript words (LRS3 style) and, word for
word, the form handed to espeak. The two differ only where espeak would misread the transcript
(the letter "A" alone is read as the article; it is fed as phonemes ``[['eI]]`` so the letter
name is spoken while the transcript keeps ``A``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import words as W

__all__ = [
    "Sentence",
    "DOMAINS",
    "GRID_GRAMMAR",
    "grid_sentence",
    "open_sentence",
    "sample_sentence",
    "spoken_form",
]

DOMAINS = ("grid", "open", "mixed")

GRID_GRAMMAR: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple(chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) != "W"),
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}

# Single capital letters espeak does not read as the letter's name on their own.
_LETTER_OVERRIDES = {"A": "[['eI]]"}


@dataclass(frozen=True)
class Sentence:
    """A sentence to speak.

    Attributes:
        words: transcript words, upper case (``PLACE``, ``F``).
        spoken: the same words as fed to espeak, one per transcript word.
        domain: ``grid`` or ``open``.
    """

    words: tuple[str, ...]
    spoken: tuple[str, ...]
    domain: str

    @property
    def text(self) -> str:
        """The transcript line: upper-case words joined by single spaces."""
        return " ".join(self.words)

    @property
    def espeak_text(self) -> str:
        """The text given to espeak."""
        return " ".join(self.spoken)


def spoken_form(word: str) -> str:
    """Return how espeak must be given transcript ``word`` to say it as intended.

    Single letters stay capitals (espeak then says the letter's name); ``A`` is given as
    phonemes. Other words go lower case, so that espeak never spells them as acronyms.
    """
    if len(word) == 1 and word.isalpha():
        return _LETTER_OVERRIDES.get(word.upper(), word.upper())
    return word.lower()


def _make(words: list[str], domain: str) -> Sentence:
    upper = tuple(w.upper() for w in words)
    return Sentence(upper, tuple(spoken_form(w) for w in upper), domain)


def grid_sentence(rng: np.random.Generator) -> Sentence:
    """Sample one GRID sentence: command colour preposition letter digit adverb."""
    return _make([str(rng.choice(options)) for options in GRID_GRAMMAR.values()], "grid")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(rng: np.random.Generator, next_word: str) -> str:
    # Spelling rule: close enough for a synthetic corpus (espeak says what we write anyway).
    if rng.random() < 0.5:
        return "the"
    return "an" if next_word[0] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, adjective_p: float = 0.5) -> list[str]:
    noun = _pick(rng, W.NOUNS)
    if rng.random() < adjective_p:
        adj = _pick(rng, W.ADJECTIVES)
        return [_article(rng, adj), adj, noun]
    return [_article(rng, noun), noun]


def _subject(rng: np.random.Generator) -> list[str]:
    r = rng.random()
    if r < 0.55:
        return [_pick(rng, W.SUBJECTS)]
    if r < 0.75:
        return [_pick(rng, W.POSSESSIVES), _pick(rng, W.NOUNS)]
    return _noun_phrase(rng, 0.4)


def _vt(rng: np.random.Generator) -> tuple[str, str]:
    return W.TRANSITIVE_VERBS[int(rng.integers(len(W.TRANSITIVE_VERBS)))]


def _vi(rng: np.random.Generator) -> tuple[str, str]:
    return W.INTRANSITIVE_VERBS[int(rng.integers(len(W.INTRANSITIVE_VERBS)))]


def _maybe(rng: np.random.Generator, p: float, words: list[str]) -> list[str]:
    return words if rng.random() < p else []


# Sentence shapes. Each returns a word list; subjects are pronouns or noun phrases, and verbs
# are past tense or follow a modal/"to"/"did", so no template needs subject-verb agreement.
def _t_past_object(rng):  # THE OLD DOG CHASED A RED BALL ACROSS THE PARK
    return (_subject(rng) + [_vt(rng)[1]] + _noun_phrase(rng)
            + _maybe(rng, 0.4, [_pick(rng, W.PREPOSITIONS)] + _noun_phrase(rng, 0.3)))


def _t_modal(rng):  # WE SHOULD CLEAN THE KITCHEN TODAY
    return (_subject(rng) + [_pick(rng, W.MODALS)] + _maybe(rng, 0.15, ["not"])
            + [_vt(rng)[0]] + _noun_phrase(rng) + _maybe(rng, 0.4, [_pick(rng, W.TIME_ADVERBS)]))


def _t_intransitive(rng):  # THEY WALKED SLOWLY INTO THE DARK FOREST
    return (_subject(rng) + [_vi(rng)[1]] + _maybe(rng, 0.4, [_pick(rng, W.ADVERBS)])
            + [_pick(rng, W.PREPOSITIONS)] + _noun_phrase(rng))


def _t_there(rng):  # THERE WAS A LOUD NOISE BEHIND THE OLD BARN
    return (["there", "was"] + _noun_phrase(rng, 0.7) + [_pick(rng, W.PREPOSITIONS)]
            + _noun_phrase(rng))


def _t_question(rng):  # DID YOU FIND THE KEYS YESTERDAY
    return (["did", _pick(rng, ("you", "we", "they", "he", "she"))] + [_vt(rng)[0]]
            + _noun_phrase(rng) + _maybe(rng, 0.5, [_pick(rng, W.TIME_ADVERBS)]))


def _t_copula(rng):  # THE WATER WAS VERY COLD
    return (_noun_phrase(rng, 0.3)
            + [_pick(rng, ("was", "is"))] + _maybe(rng, 0.5, [_pick(rng, W.DEGREE_ADVERBS)])
            + [_pick(rng, W.ADJECTIVES)])


def _t_want(rng):  # I WANTED TO VISIT THE MUSEUM
    subject = _pick(rng, W.SUBJECTS)
    # Present forms only after I/you/we/they: templates never need a third-person -s.
    verbs = ("wanted", "hoped")
    if subject not in ("he", "she"):
        verbs += ("want", "hope")
    return [subject, _pick(rng, verbs), "to", _vt(rng)[0]] + _noun_phrase(rng)


def _t_think(rng):  # I THOUGHT THE TRAIN ARRIVED EARLY
    return ([_pick(rng, W.SUBJECTS), _pick(rng, ("thought", "knew", "said"))]
            + _maybe(rng, 0.4, ["that"]) + _noun_phrase(rng, 0.3) + [_vi(rng)[1]]
            + _maybe(rng, 0.6, [_pick(rng, W.ADVERBS + W.TIME_ADVERBS)]))


def _t_compound(rng):  # SHE OPENED THE DOOR AND THE CAT RAN OUTSIDE
    return (_subject(rng) + [_vt(rng)[1]] + _noun_phrase(rng, 0.3)
            + [_pick(rng, ("and", "but", "because", "when"))] + _subject(rng) + [_vi(rng)[1]]
            + _maybe(rng, 0.5, [_pick(rng, W.ADVERBS)]))


_TEMPLATES = (_t_past_object, _t_modal, _t_intransitive, _t_there, _t_question, _t_copula,
              _t_want, _t_think, _t_compound)


def open_sentence(rng: np.random.Generator, max_words: int = 14) -> Sentence:
    """Sample one open-vocabulary sentence from a random template (at most ``max_words``)."""
    while True:
        words = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))](rng)
        if len(words) <= max_words:
            return _make(words, "open")


def sample_sentence(rng: np.random.Generator, domain: str) -> Sentence:
    """Sample a sentence of ``domain`` (``grid``, ``open``, or ``mixed``: either, 50/50)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if domain == "mixed":
        domain = "grid" if rng.random() < 0.5 else "open"
    return grid_sentence(rng) if domain == "grid" else open_sentence(rng)
