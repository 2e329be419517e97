"""benchmarks/low_resource.py end to end at tiny sizes: pipeline (iv) with the labelled
warm-up between pre-training and the semi-supervised stage, at equal total steps."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

import pytest
from conftest import tiny_overrides

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "low_resource.py"


def _module():
    spec = importlib.util.spec_from_file_location("low_resource", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(out: Path, root: Path, **kw) -> argparse.Namespace:
    base = dict(steps=4, pretrain_steps=2, semi_warmup_steps=1, freeze_fraction=0.0,
                labelled_fraction=0.5, val_checks=1, val_batches=1, eval_limit=2, seed=0,
                data_root=str(root), only=["iv"], out=str(out),
                override=[o for o in tiny_overrides(root, out)
                          if not o.startswith(("paths.output_dir", "data.corpus.root",
                                               "synthetic=", "eval.limit", "~callbacks",
                                               "trainer.enable_progress_bar"))])
    base.update(kw)
    return argparse.Namespace(**base)


def test_warmup_must_leave_semi_steps(tiny_synth_root, tmp_path):
    with pytest.raises(ValueError, match="semi-warmup-steps"):
        _module().run(_args(tmp_path, tiny_synth_root, semi_warmup_steps=2))


@pytest.mark.slow
def test_semi_pipeline_with_warmup(tiny_synth_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="avsr.lightning.finetune")
    results = _module().run(_args(tmp_path, tiny_synth_root))
    pipe = results["pipelines"]["(iv) BRAVEn + warm-up + semi"]
    assert pipe["steps"] == [2, 1, 1]  # pre-training + warm-up + semi = the 4 steps of (i)
    assert "video/clean" in pipe["wer"] and "audiovisual/babble_0" in pipe["wer"]
    assert (tmp_path / "wer.md").read_text().startswith("| pipeline |")
    # the semi stage starts from the warmed-up decoder, not a fresh one
    inits = [r.getMessage() for r in caplog.records if "initialised" in r.getMessage()]
    assert any("'decoder', 'ctc']" in m and "iv_warmup" in m for m in inits), inits
