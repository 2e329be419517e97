"""benchmarks/lm_fusion_errors.py: the search/model-error split and the LM weight a
reference needs, on hand-made scores."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "lm_fusion_errors", Path(__file__).resolve().parents[1] / "benchmarks" / "lm_fusion_errors.py")
lfe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lfe)


def _s(dec, ctc, lm, n=3.0):
    return {"decoder": dec, "ctc": ctc, "lm": lm, "length_bonus": n}


def _record(ref, ref_s, nbest, fused):
    return {"id": ref, "ref": ref, "ref_scores": ref_s,
            "nbest": [{"text": t, "scores": s} for t, s in nbest],
            "fused": {w: {"text": t, "scores": s} for w, (t, s) in fused.items()}}


def test_search_and_model_errors_and_the_needed_lm_weight() -> None:
    records = [
        # model error the LM can fix: AM gap 4, LM gap 2 -> w* = 2
        _record("A B", _s(-6, -6, -3), [("A C", _s(-2, -2, -5)), ("A B", _s(-6, -6, -3))],
                {"0.1": ("A C", _s(-2, -2, -5))}),
        # search error: the reference outscores the output already without the LM
        _record("C D", _s(-1, -1, -4), [("C E", _s(-2, -2, -4))],
                {"0.1": ("C E", _s(-2, -2, -4))}),
        # the LM prefers the wrong output too: no weight helps
        _record("E F", _s(-5, -5, -9), [("E G", _s(-1, -1, -2))],
                {"0.1": ("E G", _s(-1, -1, -2))}),
        # right
        _record("G H", _s(-1, -1, -1), [("G H", _s(-1, -1, -1))],
                {"0.1": ("G H", _s(-1, -1, -1))}),
    ]
    r = lfe.analyse(records, ctc_weight=0.1, lm_weights=[0.1], rescore_weights=[0.0, 3.0])
    assert r["wrong_no_lm"] == 3 and r["search_errors_no_lm"] == 1
    assert r["lm_prefers_ref"] == 1 and r["w_star_never"] == 1
    assert r["w_star_at_most"] == {"0.1": 1, "0.2": 1, "0.3": 1, "0.5": 1, "1": 1, "2": 2}
    assert r["am_gap_median"] == pytest.approx(4.0)  # of 4, -1, 4
    assert r["wer_no_lm"] == pytest.approx(3 / 8)
    assert r["wer_nbest_oracle"] == pytest.approx(2 / 8)  # the 2-best list holds "A B"
    assert r["ref_in_nbest"] == 2
    # rescoring at w = 3 > w* lets "A B" win in the first utterance
    assert r["wer_nbest_rescored"] == {"0": pytest.approx(3 / 8), "3": pytest.approx(2 / 8)}
    assert r["with_lm"]["0.1"] == {"wrong": 3, "search_errors": 1, "model_errors": 2}
    assert math.isfinite(r["lm_gap_median"])
