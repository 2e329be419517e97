"""benchmarks/low_resource.py end to end at tiny sizes: pipeline (iv) with the semi stage's
labelled warm-up, at equal total steps; reuse of finished stages; merging separate runs."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest
from conftest import load_benchmark, tiny_overrides

def _module():
    return load_benchmark("low_resource")


def _args(out: Path, root: Path, **kw) -> argparse.Namespace:
    base = dict(steps=4, pretrain_steps=2, semi_warmup_steps=1, semi_rampup_steps=0,
                reuse=False, freeze_fraction=0.0,
                labelled_fraction=0.5, val_checks=1, val_batches=1, eval_limit=2, seed=0,
                data_root=str(root), only=["iv"], out=str(out),
                override=[o for o in tiny_overrides(root, out)
                          if not o.startswith(("paths.output_dir", "data.corpus.root",
                                               "synthetic=", "eval.limit", "~callbacks",
                                               "trainer.enable_progress_bar"))]
                + ["trainer.log_every_n_steps=1"])
    base.update(kw)
    return argparse.Namespace(**base)


def test_warmup_must_leave_semi_steps(tiny_synth_root, tmp_path):
    with pytest.raises(ValueError, match="semi-warmup-steps"):
        _module().run(_args(tmp_path, tiny_synth_root, semi_warmup_steps=2))


@pytest.mark.slow
def test_semi_pipeline_with_warmup(tiny_synth_root, tmp_path, capsys):
    args = _args(tmp_path, tiny_synth_root, reuse=True)
    results = _module().run(args)
    pipe = results["pipelines"]["(iv) BRAVEn + semi (labelled warm-up)"]
    assert pipe["steps"] == [2, 2]  # pre-training + semi = the 4 steps of (i)
    assert "video/clean" in pipe["wer"] and "audiovisual/babble_0" in pipe["wer"]
    assert (tmp_path / "wer.md").read_text().startswith("| pipeline |")
    # the semi stage's first step is labelled-only, the second decodes pseudo-labels
    rows = list(csv.DictReader((tmp_path / "iv_semi" / "csv" / "metrics.csv").open()))
    scale = {int(r["step"]): float(r["train/unlabelled_scale"]) for r in rows
             if r.get("train/unlabelled_scale")}
    assert scale == {0: 0.0, 1: 1.0}
    kept = [int(r["step"]) for r in rows if r.get("train/pseudo_att_kept")]
    assert kept == [1]
    # a second invocation reuses both finished stages instead of training them again
    capsys.readouterr()
    again = _module().run(args)
    assert again["pipelines"] == results["pipelines"]
    assert capsys.readouterr().out.count("reused") == 2

def test_merge_joins_separate_runs_in_pipeline_order(tmp_path):
    module = _module()
    wer = {"video/clean": 40.0, "audiovisual/clean": 20.0}
    for name, sub, w in (("(iv) BRAVEn + semi (USR)", "iv", 0.5), ("(i) supervised", "i", 1.0)):
        (tmp_path / sub).mkdir()
        part = {"args": {"only": [sub]}, "pipelines": {name: {
            "wer": {k: v * w for k, v in wer.items()}, "steps": [4], "wall_s": [1.0]}}}
        (tmp_path / sub / "results.json").write_text(__import__("json").dumps(part))
    merged = module.merge([str(tmp_path / "iv"), str(tmp_path / "i")], str(tmp_path / "all"))
    assert list(merged["pipelines"]) == ["(i) supervised", "(iv) BRAVEn + semi (USR)"]
    table = (tmp_path / "all" / "wer.md").read_text()
    assert "20.0 (-50 %)" in table  # relative to (i), whichever directory came first
    with pytest.raises(ValueError, match="already merged"):
        module.merge([str(tmp_path / "i"), str(tmp_path / "i")], str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="results.json"):
        module.merge([str(tmp_path / "nothing")], str(tmp_path / "x"))
