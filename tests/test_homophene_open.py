"""The open-domain homophene floor (avsr.metrics.homophene_open) on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import jiwer
import pytest

from avsr.metrics.homophene import map_sentences, merge_repeats
from avsr.metrics.homophene_open import (EOS, BigramPrior, lattice_oracle,
                                         open_homophene_floor)

# PAT and BAT look alike (lips closed, open, tongue tip)
LEXICON = {"PAT": ("BMP", "AA", "TDNL"), "BAT": ("BMP", "AA", "TDNL"),
           "THE": ("TH", "AA"), "DOG": ("TDNL", "OH", "KG")}


def look(lexicon, words):
    return merge_repeats(c for w in words for c in lexicon[w])


def test_kneser_ney_bigram_by_hand():
    prior = BigramPrior([("A", "B"), ("A", "C"), ("D", "B")], vocabulary="ABCDE", discount=0.5)
    # distinct predecessors: A 1 (<s>), D 1, B 2 (A, D), C 1, </s> 2 (B, C): 7 types;
    # V = A..E and </s>: 6 words, so Pc(w) = (N(. w) + 1) / 13
    assert prior.continuation("B") == pytest.approx(3 / 13)
    assert prior.continuation("E") == pytest.approx(1 / 13)  # never seen: the floor
    # c(A) = 2 over 2 distinct successors: (1 - 0.5) / 2 + 0.5 * 2 / 2 * 3 / 13
    assert prior.prob("B", "A") == pytest.approx(0.25 + 1.5 / 13)
    assert prior.prob("E", "A") == pytest.approx(0.5 / 13)
    assert prior.prob("E", "E") == pytest.approx(1 / 13)  # unseen history: Pc
    for prev in ("<s>", "A", "B", "E"):
        assert sum(prior.prob(w, prev) for w in prior.vocabulary) == pytest.approx(1.0)
    assert prior.logp(("A", "B")) == pytest.approx(
        math.log(prior.prob("A", "<s>") * prior.prob("B", "A") * prior.prob(EOS, "B")))
    with pytest.raises(KeyError):
        prior.prob("Z", "A")
    with pytest.raises(ValueError):
        BigramPrior([], "A", discount=1.0)


def test_the_bigram_prior_decides_between_homophenes():
    # BAT follows THE in training, PAT starts a sentence: the context picks the spelling
    prior = BigramPrior([("THE", "BAT"), ("THE", "BAT"), ("PAT", "THE", "DOG")], LEXICON)
    logp, hyps = lattice_oracle(look(LEXICON, ("THE", "PAT")), LEXICON, prior)
    assert hyps == [("THE", "BAT")]
    assert logp == pytest.approx(prior.logp(("THE", "BAT")))
    assert lattice_oracle(look(LEXICON, ("PAT", "THE", "DOG")), LEXICON, prior)[1] == [
        ("PAT", "THE", "DOG")]
    refs = [("THE", "PAT"), ("PAT", "THE", "DOG")]
    floor = open_homophene_floor(refs, LEXICON, prior)
    assert (floor.errors, floor.words, floor.utterances, floor.ambiguous) == (1.0, 5, 2, 1)
    assert floor.wer / 100 == pytest.approx(
        jiwer.wer(["THE PAT", "PAT THE DOG"], ["THE BAT", "PAT THE DOG"]))


def test_segmentation_ambiguity():
    # "AB C" and "A BC" both look like a b c; training says "A BC" twice, "AB C" once.
    # By hand (D = 0.75, Pc = (N + 1) / 11): P(A BC) = .5076 * .6932 * .7273 = .2559,
    # P(AB C) = .1742 * .3864 * .4545 = .0306
    lexicon = {"AB": ("a", "b"), "A": ("a",), "C": ("c",), "BC": ("b", "c")}
    prior = BigramPrior([("A", "BC"), ("A", "BC"), ("AB", "C")], lexicon)
    logp, hyps = lattice_oracle(("a", "b", "c"), lexicon, prior)
    assert hyps == [("A", "BC")]
    assert math.exp(logp) == pytest.approx(0.2559, abs=1e-4)
    assert math.exp(prior.logp(("AB", "C"))) == pytest.approx(0.0306, abs=1e-4)
    floor = open_homophene_floor([("AB", "C"), ("A", "BC")], lexicon, prior)
    assert floor.errors == 2.0 and floor.words == 4  # two substitutions, then none


def test_unseen_words_are_reachable_and_tie():
    lexicon = {**LEXICON, "ZIP": ("SZ", "EE", "BMP"), "SIP": ("SZ", "EE", "BMP"),
               "FOX": ("FV", "OH", "KG", "SZ")}
    prior = BigramPrior([("THE", "DOG")], lexicon)
    # FOX never occurs in training but has its own look: read right
    assert lattice_oracle(look(lexicon, ("THE", "FOX")), lexicon, prior)[1] == [("THE", "FOX")]
    # ZIP and SIP look alike and neither was seen: equally likely, half an error expected
    floor = open_homophene_floor([("THE", "ZIP")], lexicon, prior)
    assert floor.errors == pytest.approx(0.5) and floor.ambiguous == 1
    assert sorted(lattice_oracle(look(lexicon, ("ZIP",)), lexicon, prior)[1]) == [
        ("SIP",), ("ZIP",)]


def test_merged_segments_across_word_boundaries():
    lexicon = {"MOP": ("BMP", "OH", "BMP"), "PA": ("BMP", "AA"), "UH": ("AA",)}
    # MOP's last BMP and PA's first are one segment: (BMP, OH, BMP, AA)
    seen = BigramPrior([("MOP", "PA")], lexicon)
    assert lattice_oracle(("BMP", "OH", "BMP", "AA"), lexicon, seen)[1] == [("MOP", "PA")]
    prior = BigramPrior([("MOP", "PA"), ("PA", "UH"), ("PA", "UH"), ("PA", "UH")], lexicon)
    # UH hides in PA's AA: "PA" alone looks like "PA UH", which training makes likelier
    assert lattice_oracle(("BMP", "AA"), lexicon, prior)[1] == [("PA", "UH")]
    floor = open_homophene_floor([("PA",)], lexicon, prior)
    assert floor.errors == 1.0  # one insertion
    assert lattice_oracle(("OH",), lexicon, prior) == (-math.inf, [])


def test_lattice_equals_brute_force_over_all_short_sentences():
    # every word at least two classes, so an answer to n classes has at most n words
    lexicon = {"AB": ("a", "b"), "BA": ("b", "a"), "ABA": ("a", "b", "a"), "CA": ("c", "a"),
               "AC": ("a", "c"), "BB": ("b", "b", "a")}
    prior = BigramPrior([("AB", "BA", "CA"), ("ABA", "CA"), ("AC", "AB"), ("BA",)], lexicon)
    words = sorted(lexicon)
    candidates = [(s, prior.logp(s)) for n in range(1, 6)
                  for s in itertools.product(words, repeat=n)]
    groups = map_sentences(candidates, lambda s: look(lexicon, s))
    refs = [s for n in (1, 2) for s in itertools.product(words, repeat=n)]
    for ref in refs:
        best, hyps = groups[look(lexicon, ref)]
        logp, found = lattice_oracle(look(lexicon, ref), lexicon, prior)
        assert logp == pytest.approx(best)
        assert sorted(found) == sorted(hyps)


def test_reference_word_outside_the_lexicon_is_an_error():
    prior = BigramPrior([("THE", "DOG")], LEXICON)
    with pytest.raises(ValueError, match="CAT"):
        open_homophene_floor([("THE", "CAT")], LEXICON, prior)


def test_pronunciation_variants_and_rendered_observations():
    # THE said two ways; the rendered (in-sentence) classes are what the oracle sees
    pairs = [*LEXICON.items(), ("THE", ("TH", "EE"))]
    prior = BigramPrior([("THE", "DOG")], LEXICON)
    rendered = [("TH", "EE", "TDNL", "OH", "KG")]
    floor = open_homophene_floor([("THE", "DOG")], pairs, prior, observations=rendered)
    assert (floor.errors, floor.ambiguous) == (0.0, 0)
    # without the variant nothing looks like it
    with pytest.raises(ValueError, match="'THE DOG' looks like no word sequence"):
        open_homophene_floor([("THE", "DOG")], LEXICON, prior, observations=rendered)
    with pytest.raises(ValueError, match="observations are needed"):
        open_homophene_floor([("THE", "DOG")], pairs, prior)


def test_one_sentence_through_two_pronunciation_paths_is_one_answer():
    # "X Y" fits a b c as a + bc and as ab + c at the same cost: one answer, not a tie
    pairs = [("X", ("a",)), ("X", ("a", "b")), ("Y", ("b", "c")), ("Y", ("c",))]
    prior = BigramPrior([("X", "Y")], "XY")
    assert lattice_oracle(("a", "b", "c"), pairs, prior)[1] == [("X", "Y")]
    floor = open_homophene_floor([("X", "Y")], pairs, prior, observations=[("a", "b", "c")])
    assert (floor.errors, floor.ambiguous) == (0.0, 0)


@pytest.mark.slow
def test_floor_of_a_generated_open_corpus(tmp_path):
    """benchmarks/homophene_floor.py --corpus ROOT --domain open: the corpus's own test split,
    voices and training transcripts (not the val ones), on a tiny real corpus."""
    from conftest import load_benchmark

    from avsr.data.synthetic import generate_corpus

    root = tmp_path / "open"
    generate_corpus(root, seed=3, num_train=8, num_val=2, num_test=3, domain="open",
                    num_train_speakers=2, num_val_speakers=1, num_test_speakers=2,
                    num_babble=2, num_babble_speakers=1, workers=1)
    result = load_benchmark("homophene_floor").corpus_open_floor(root)
    assert result["train_sentences"] == 8 and result["test_sentences"] == 3
    assert result["corpus_seed"] == 3
    test_words = sum(len(t.read_text().splitlines()[0].split()) - 1
                     for t in (root / "test").rglob("*.txt"))
    assert result["test_words"] == test_words
    assert sum(v["references"] for v in result["voices"].values()) == 3
    assert 0.0 <= result["floor_wer"] <= 100.0
    # eight training sentences leave most test words unseen: they stay reachable (add-1)
    assert result["test_words_unseen_in_train"] > 0
