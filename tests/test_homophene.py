"""The homophene floor (avsr.metrics.homophene) on tiny grammars computed by hand."""

from __future__ import annotations

import math

import jiwer
import pytest

from avsr.metrics.homophene import (HomopheneFloor, grammar_candidates, homophene_floor,
                                    map_sentences, merge_repeats)

# PAT, BAT and MAT look alike (lips closed, open, tongue tip); SAT does not.
LEXICON = {"PAT": ("BMP", "AA", "TDNL"), "BAT": ("BMP", "AA", "TDNL"),
           "MAT": ("BMP", "AA", "TDNL"), "SAT": ("SZ", "AA", "TDNL"),
           "ONE": ("WOO", "AA", "TDNL"), "TWO": ("TDNL", "WOO")}
SLOTS = [("PAT", "BAT", "MAT", "SAT"), ("ONE", "TWO")]


def observe(words):
    return merge_repeats(v for w in words for v in LEXICON[w])


def test_the_prior_decides_between_homophenes():
    # BAT is three times as likely as PAT or MAT: the oracle reads "PAT ONE" as "BAT ONE"
    candidates = grammar_candidates(SLOTS, weights=[[1, 3, 1, 1], [1, 1]])
    refs = [("PAT", "ONE"), ("BAT", "TWO"), ("SAT", "ONE")]
    floor = homophene_floor(refs, candidates, observe)
    assert floor == HomopheneFloor(errors=1.0, words=6, utterances=3, ambiguous=1)
    assert floor.wer == pytest.approx(100 / 6)
    # the same figure from jiwer on the oracle's answers
    assert jiwer.wer(["PAT ONE", "BAT TWO", "SAT ONE"],
                     ["BAT ONE", "BAT TWO", "SAT ONE"]) == pytest.approx(1 / 6)


def test_ties_count_the_expected_errors_of_a_uniform_choice():
    # uniform slots: PAT/BAT/MAT tie; the oracle is right 1 time in 3 on the first word
    floor = homophene_floor([("PAT", "ONE"), ("SAT", "TWO")], grammar_candidates(SLOTS), observe)
    assert floor.errors == pytest.approx(2 / 3)
    assert floor.wer == pytest.approx(100 * (2 / 3) / 4)
    assert floor.ambiguous == 1


def test_word_boundaries_are_not_seen():
    # "AB C" and "A BC" look the same (a b c); the second is three times as likely
    lexicon = {"AB": ("a", "b"), "A": ("a",), "C": ("c",), "BC": ("b", "c")}
    look = lambda ws: merge_repeats(v for w in ws for v in lexicon[w])  # noqa: E731
    cands = grammar_candidates([("AB", "A"), ("C", "BC")], weights=[[1, 1], [1, 3]])
    floor = homophene_floor([("AB", "C"), ("A", "BC")], cands, look)
    assert floor.errors == 2.0 and floor.words == 4  # two substitutions, then none


def test_merged_repeats_make_new_homophenes():
    assert merge_repeats(["BMP", "BMP", "AA", "AA", "BMP"]) == ("BMP", "AA", "BMP")
    lexicon = {"X": ("EE",), "Y": ("EE", "EE"), "Z": ("TDNL",)}
    groups = map_sentences(grammar_candidates([("X", "Y"), ("Z",)]),
                           lambda ws: merge_repeats(v for w in ws for v in lexicon[w]))
    assert groups == {("EE", "TDNL"): (pytest.approx(math.log(0.5)), [("X", "Z"), ("Y", "Z")])}


def test_grammar_candidates_are_a_distribution():
    cands = list(grammar_candidates(SLOTS, weights=[[1, 3, 1, 1], [2, 2]]))
    assert len(cands) == 8
    assert sum(math.exp(lp) for _, lp in cands) == pytest.approx(1.0)
    assert dict(cands)[("BAT", "TWO")] == pytest.approx(math.log(0.5 * 0.5))
    with pytest.raises(ValueError, match="do not fit"):
        list(grammar_candidates(SLOTS, weights=[[1, 1], [1, 1]]))


def test_reference_outside_the_distribution_is_an_error():
    with pytest.raises(ValueError, match="'SAT SAT' looks like no candidate"):
        homophene_floor([("SAT", "SAT")], grammar_candidates(SLOTS), observe)
