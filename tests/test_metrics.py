import random

import jiwer
import pytest

from avsr.metrics.wer import ErrorCounter, edit_distance, wer, word_errors


def _random_sentence(rng: random.Random, vocab: list[str]) -> str:
    return " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))


def test_wer_equals_jiwer_on_random_strings():
    rng = random.Random(0)
    vocab = ["A", "B", "C", "DOG", "CAT", "THE", "RUN"]
    refs = [_random_sentence(rng, vocab) for _ in range(200)]
    hyps = [_random_sentence(rng, vocab) if rng.random() < 0.9 else "" for _ in range(200)]
    hyps = [h if h else "X" for h in hyps]  # jiwer rejects empty hypotheses strings
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    for r, h in zip(refs[:50], hyps[:50]):
        out = jiwer.process_words(r, h)
        assert word_errors(r, h) == (out.substitutions + out.deletions + out.insertions,
                                     len(r.split()))


def test_empty_hypothesis_counts_deletions():
    assert word_errors("A B C", "") == (3, 3)
    assert edit_distance([], []) == 0


def test_counter_accumulates_corpus_wer_not_mean_of_ratios():
    c = ErrorCounter()
    c.update(["A B C D"], ["A B C D"])
    c.update(["A"], ["B"])
    assert c.wer == pytest.approx(1 / 5)
    assert c.utterances == 2


def test_wer_rejects_mismatch_and_empty_refs():
    with pytest.raises(ValueError, match="hypotheses"):
        wer(["A"], [])
    with pytest.raises(ValueError, match="no word"):
        wer([""], ["A"])


def test_hypothesis_files_read_back_as_written(tmp_path) -> None:
    from avsr.evaluate import _write_hyps, read_hyps

    counter = ErrorCounter(keep_records=True)
    # an empty hypothesis and quote characters must survive the round trip
    counter.update(["THE CAT SAT", 'SHE SAID "HI"'], ["THE HAT SAT", ""], ["spk1/b", "spk0/a"])
    path = _write_hyps(counter, tmp_path, "video", "babble +0 dB", "beam")
    assert path.name == "video_babblep0dB_beam.tsv"
    assert read_hyps(path) == {"spk0/a": ('SHE SAID "HI"', ""),
                               "spk1/b": ("THE CAT SAT", "THE HAT SAT")}
