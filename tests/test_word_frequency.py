"""Word errors split by training frequency (avsr/metrics/word_frequency.py)."""

import jiwer
import pytest

from avsr.metrics.word_frequency import errors_by_frequency, word_counts


def test_hand_checked_alignment_buckets():
    counts = word_counts(["A A A A A A A A A A", "B", "D " * 100])
    assert counts["A"] == 10 and counts["B"] == 1 and counts["C"] == 0 and counts["D"] == 100
    refs = ["A B C D", "A E", "D"]
    hyps = ["A X C D Y", "", "D"]  # B substituted, Y inserted; A and E deleted
    buckets, insertions = errors_by_frequency(refs, hyps, counts)
    got = {b.label: (b.words, b.errors) for b in buckets}
    assert got == {"0": (2, 1), "1–5": (1, 1), "6–10": (2, 1), "11–50": (0, 0), "≥ 51": (2, 0)}
    assert insertions == 1
    assert buckets[3].error_rate is None and buckets[1].error_rate == 1.0


def test_buckets_add_up_to_jiwer_edits():
    refs = ["THE CAT SAT ON THE MAT", "A QUICK BROWN FOX", "HELLO WORLD"]
    hyps = ["THE CAT SAT THE HAT TODAY", "QUICK BROWN BOX JUMPS", "HELLO"]
    counts = {"THE": 60, "CAT": 3, "SAT": 7, "ON": 12, "QUICK": 0, "FOX": 1, "HELLO": 20}
    buckets, insertions = errors_by_frequency(refs, hyps, counts)
    out = jiwer.process_words(refs, hyps)
    assert sum(b.errors for b in buckets) == out.substitutions + out.deletions
    assert insertions == out.insertions
    assert sum(b.words for b in buckets) == sum(len(r.split()) for r in refs)


@pytest.mark.parametrize("edges", [[], [0, 5, 5], [3, 1], [-1, 2]])
def test_bad_edges_are_refused(edges):
    with pytest.raises(ValueError, match="edges"):
        errors_by_frequency(["A"], ["A"], {}, edges)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        errors_by_frequency(["A", "B"], ["A"], {})
