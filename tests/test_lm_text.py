"""Extra LM text for a synthetic corpus never holds one of its held-out sentences."""

from __future__ import annotations

import json

import pytest

from avsr.data.corpora import LRS3, read_transcript
from avsr.data.synthetic.lm_text import held_out_transcripts, lm_sentences, main


def test_held_out_sentences_are_left_out_and_counted() -> None:
    first, left = lm_sentences("grid", 50, seed=3, exclude=set())
    assert left == 0 and len(first) == 50
    again, left = lm_sentences("grid", 50, seed=3, exclude=set(first))
    # the same stream: its first 50 draws are the excluded ones, every one left out
    assert left >= 50 and not set(again) & set(first)
    assert lm_sentences("grid", 50, seed=4, exclude=set())[0] != first
    with pytest.raises(ValueError, match="count"):
        lm_sentences("grid", 0, seed=3, exclude=set())


def test_cli_excludes_the_corpus_val_test_and_babble_transcripts(tiny_synth_root, tmp_path
                                                                  ) -> None:
    held = held_out_transcripts(tiny_synth_root)
    corpus = LRS3(tiny_synth_root)
    for split in ("val", "test"):
        assert {u.text for u in corpus.utterances(split)} <= held
    babble = list((tiny_synth_root / "babble").rglob("*.txt"))
    assert babble and {read_transcript(p)[0] for p in babble} <= held
    out = tmp_path / "lm.txt"
    meta = main(["--corpus", str(tiny_synth_root), "--sentences", "3000", "--out", str(out)])
    lines = out.read_text().splitlines()
    assert len(lines) == 3000 and not set(lines) & held
    assert meta["domain"] == "grid" and meta["held_out_transcripts"] == len(held)
    assert json.loads((tmp_path / "lm.txt.json").read_text()) == meta
    assert all(len(s.split()) == 6 for s in lines)  # GRID: six words


def test_not_a_synthetic_corpus_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="corpus.json"):
        held_out_transcripts(tmp_path)
