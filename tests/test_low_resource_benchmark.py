"""benchmarks/low_resource.py: the budgets (pre-training at most 3x the fine-tuning), the
stage plan of the five pipelines, all five end to end at tiny sizes (two AV-HuBERT clustering
iterations, best-validation checkpoints, a shared pre-training, the semi stage's labelled
warm-up), reading and resuming stages of an earlier invocation, and merging separate runs."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, tiny_overrides

ALL = ["i", "ii", "iii", "iv", "v"]


def _module():
    return load_benchmark("low_resource")


def _args(out: Path, root: Path, **kw) -> argparse.Namespace:
    base = dict(finetune_steps=2, pretrain_steps=2, avhubert_iterations=2, avhubert_layer=1,
                avhubert_clusters=8, pretrained_from=None, init_override=[],
                semi_warmup_steps=1, semi_rampup_steps=0, reuse=False, freeze_fraction=0.0,
                labelled_fraction=0.5, val_checks=1, val_batches=1, eval_limit=1, seed=0,
                data_root=str(root), only=ALL, out=str(out),
                override=[o for o in tiny_overrides(root, out)
                          if not o.startswith(("paths.output_dir", "data.corpus.root",
                                               "synthetic=", "eval.limit", "~callbacks",
                                               "trainer.enable_progress_bar"))]
                + ["trainer.log_every_n_steps=1"])
    base.update(kw)
    return argparse.Namespace(**base)


def test_budgets_are_checked(tmp_path):
    module = _module()
    with pytest.raises(ValueError, match=r"7 > 3 x --finetune-steps 2 = 6"):
        module.run(_args(tmp_path, tmp_path, pretrain_steps=7))
    with pytest.raises(ValueError, match="semi-warmup-steps"):
        module.run(_args(tmp_path, tmp_path, semi_warmup_steps=2))
    with pytest.raises(ValueError, match="avhubert-iterations"):
        module.run(_args(tmp_path, tmp_path, pretrain_steps=2, avhubert_iterations=3))
    module.check_budgets(_args(tmp_path, tmp_path, pretrain_steps=6))  # 3 F is allowed


def test_plan_of_the_five_pipelines(tmp_path):
    module = _module()
    args = _args(tmp_path, tmp_path, finetune_steps=4, pretrain_steps=5, avhubert_iterations=2,
                 init_override=["+init.0.prefix=objective.teacher.model."])
    plan = module.pipelines(args)
    assert [[s.name for s in stages] for stages in plan.values()] == [
        ["i_supervised"], ["braven_pretrain", "ii_braven_finetune"],
        ["iii_avhubert_iter1", "iii_kmeans_iter2", "iii_avhubert_iter2", "iii_avhubert_finetune"],
        ["braven_pretrain", "iv_semi"], ["v_zhang_pretrain", "v_zhang_finetune"]]
    steps = {s.name: s.steps for stages in plan.values() for s in stages}
    # F for every labelled stage, P for each pre-training, (iii)'s P split over 2 iterations
    assert steps == {"i_supervised": 4, "braven_pretrain": 5, "ii_braven_finetune": 4,
                     "iii_avhubert_iter1": 2, "iii_kmeans_iter2": 0, "iii_avhubert_iter2": 3,
                     "iii_avhubert_finetune": 4, "iv_semi": 4, "v_zhang_pretrain": 5,
                     "v_zhang_finetune": 4}
    warm = "+init.0.prefix=objective.teacher.model."
    for stages in plan.values():
        for s in stages:
            assert (warm in s.overrides) == (s.final and s.name != "i_supervised"), s.name
    iii = plan["(iii) AV-HuBERT (2 iterations) + fine-tune"]
    it2 = iii[2].overrides
    first = tmp_path / "iii_avhubert_iter1" / "checkpoints" / "last.ckpt"
    assert f"ssl_labels.ckpt={first}" in it2
    assert f"ssl_labels.out={tmp_path / 'iii_kmeans_iter2'}" in it2
    assert "stage.objective.level=input" in it2 and "stage.objective.level=input" not in \
        iii[0].overrides
    assert iii[1].overrides == it2  # the k-means stage calls iteration 2's own labels node
    # the labelled stage as Hydra composes it: best validation checkpoint, resumable, the
    # warm-start override in place
    cfg = module._cfg(module.stage_overrides(plan["(ii) BRAVEn + fine-tune"][1], args))
    assert cfg.eval_checkpoint == "best" and cfg.ckpt_path == "last"
    assert cfg.init[0].prefix == "objective.teacher.model."
    assert cfg.init[0].path == str(tmp_path / "braven_pretrain" / "checkpoints" / "last.ckpt")


def test_pretrained_from_is_read_not_trained(tmp_path):
    module = _module()
    src = tmp_path / "elsewhere"
    args = _args(tmp_path / "out", tmp_path, only=["iv"], pretrained_from=str(src))
    [pre, semi] = module.pipelines(args)["(iv) BRAVEn + semi (labelled warm-up)"]
    assert pre.source == str(src)
    assert f"init.0.path={src / 'checkpoints' / 'last.ckpt'}" in semi.overrides
    with pytest.raises(FileNotFoundError, match="summary.json"):
        module.run_stage(pre, args)
    src.mkdir()
    (src / "summary.json").write_text(json.dumps({"global_step": 3, "stage_wall_s": 9.0}))
    with pytest.raises(ValueError, match="ran 3 steps"):
        module.run_stage(pre, args)
    (src / "summary.json").write_text(json.dumps({"global_step": 2, "stage_wall_s": 9.0}))
    rec = module.run_stage(pre, args)
    assert rec["reused"] and rec["steps"] == 2 and rec["dir"] == str(src.resolve())


def _train_rows(path: Path) -> list[int]:
    rows = csv.DictReader(path.open())
    return [int(r["step"]) for r in rows
            if any(k.startswith("train/") and v for k, v in r.items())]


@pytest.mark.slow
def test_five_pipelines_end_to_end(tiny_synth_root, tmp_path, capsys):
    module = _module()
    args = _args(tmp_path, tiny_synth_root)
    results = module.run(args)
    pipes = results["pipelines"]
    iii = "(iii) AV-HuBERT (2 iterations) + fine-tune"
    iv = "(iv) BRAVEn + semi (labelled warm-up)"
    assert {k: p["steps"] for k, p in pipes.items()} == {
        "(i) supervised": [2], "(ii) BRAVEn + fine-tune": [2, 2], iii: [1, 0, 1, 2],
        iv: [2, 2], "(v) Zhang contextual masking + fine-tune": [2, 2]}
    for name, pipe in pipes.items():
        assert "video/clean" in pipe["wer"] and "audiovisual/babble_0" in pipe["wer"], name
        # tested at the best validation checkpoint, not the last weights
        summary = json.loads((Path(pipe["stages"][-1]["dir"]) / "summary.json").read_text())
        assert pipe["evaluated_checkpoint"] == summary["best_checkpoint"], name
        assert not pipe["evaluated_checkpoint"].endswith("last.ckpt") and pipe["best_step"] == 2
        if name != "(i) supervised":
            assert set(pipe["target_met"]) == {"video/clean", "audiovisual/clean"}
    # (iv) reuses (ii)'s pre-training: one run, marked as shared
    assert pipes[iv]["stages"][0]["dir"] == pipes["(ii) BRAVEn + fine-tune"]["stages"][0]["dir"]
    assert pipes[iv]["stages"][0]["shared_with"] == "(ii) BRAVEn + fine-tune"
    table = (tmp_path / "wer.md").read_text()
    assert table.startswith("| pipeline |") and "2* + 2" in table
    # (iii): iteration 2's targets are k-means of iteration 1's encoder, its label_dir
    meta = json.loads((tmp_path / "iii_kmeans_iter2" / "kmeans.json").read_text())
    assert meta["feature"] == "layer" and meta["num_clusters"] == 8
    assert meta["ckpt"] == str(tmp_path / "iii_avhubert_iter1" / "checkpoints" / "last.ckpt")
    objectives = [torch.load(tmp_path / f"iii_avhubert_iter{k}" / "checkpoints" / "last.ckpt",
                             weights_only=True)["avsr_config"]["stage"]["objective"]
                  for k in (1, 2)]
    assert objectives[0]["label_dir"].endswith("mfcc_k8")
    assert objectives[1]["label_dir"] == str(tmp_path / "iii_kmeans_iter2")
    assert [o["level"] for o in objectives] == ["feature", "input"]
    # the semi stage's first step is labelled-only, the second decodes pseudo-labels
    rows = list(csv.DictReader((tmp_path / "iv_semi" / "csv" / "metrics.csv").open()))
    scale = {int(r["step"]): float(r["train/unlabelled_scale"]) for r in rows
             if r.get("train/unlabelled_scale")}
    assert scale == {0: 0.0, 1: 1.0}

    # a second invocation without --reuse would overwrite: refused
    with pytest.raises(FileExistsError, match="--reuse"):
        module.run(args)
    # with --reuse it reads the finished stages and resumes an interrupted one from its
    # last.ckpt (here at its final step: nothing is trained again)
    (tmp_path / "braven_pretrain" / "summary.json").unlink()
    trained = _train_rows(tmp_path / "braven_pretrain" / "csv" / "metrics.csv")
    capsys.readouterr()
    again = module.run(_args(tmp_path, tiny_synth_root, reuse=True))
    out = capsys.readouterr().out
    assert out.count("reused") == 9 and out.count("resuming") == 1
    assert _train_rows(tmp_path / "braven_pretrain" / "csv" / "metrics.csv") == trained
    assert again["pipelines"][iv]["stages"][0]["resumed_from_step"] == 2
    assert {k: p["wer"] for k, p in again["pipelines"].items()} == \
        {k: p["wer"] for k, p in pipes.items()}


def test_merge_joins_separate_runs_in_pipeline_order(tmp_path):
    module = _module()
    wer = {"video/clean": 40.0, "audiovisual/clean": 20.0}
    parts = (("(iv) BRAVEn + semi (USR)", "iv", (0.5, 0.9)), ("(i) supervised", "i", (1.0, 1.0)),
             ("(ii) BRAVEn + fine-tune", "ii", (0.7, 0.7)))
    for name, sub, (wv, wav) in parts:
        (tmp_path / sub).mkdir()
        stages = [{"stage": "x", "steps": 4, "wall_s": 1.0, "dir": f"/runs/{sub}"}]
        if sub != "i":  # (iv) used (ii)'s pre-training (--pretrained-from)
            stages.insert(0, {"stage": "braven_pretrain", "steps": 8, "wall_s": 3.0,
                              "dir": "/runs/ii/braven_pretrain"})
        part = {"args": {"only": [sub]}, "pipelines": {name: {
            "wer": {"video/clean": 40.0 * wv, "audiovisual/clean": 20.0 * wav},
            "stages": stages, "steps": [s["steps"] for s in stages],
            "wall_s": [s["wall_s"] for s in stages], "best_step": 4}}}
        (tmp_path / sub / "results.json").write_text(json.dumps(part))
    merged = module.report.merge([str(tmp_path / d) for d in ("iv", "i", "ii")],
                                 str(tmp_path / "all"))
    assert list(merged["pipelines"]) == ["(i) supervised", "(ii) BRAVEn + fine-tune",
                                         "(iv) BRAVEn + semi (USR)"]
    iv = merged["pipelines"]["(iv) BRAVEn + semi (USR)"]
    assert iv["relative"] == {"video/clean": -50.0, "audiovisual/clean": -10.0}
    assert iv["target_met"] == {"video/clean": True, "audiovisual/clean": False}
    assert iv["stages"][0]["shared_with"] == "(ii) BRAVEn + fine-tune"
    table = (tmp_path / "all" / "wer.md").read_text()
    assert "20.0 (-50 %)" in table  # relative to (i), whichever directory came first
    assert "| 8* + 4 | 3* + 1 | 4 |" in table and "yes / no" in table
    # results of the four-pipeline driver (no per-stage records) still merge
    old = {"args": {}, "pipelines": {"(iii) AV-HuBERT iter. 1 + fine-tune": {
        "wer": wer, "steps": [100, 1500], "wall_s": [147.0, 1782.0]}}}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(old))
    module.report.merge([str(tmp_path / "i"), str(tmp_path / "old")], str(tmp_path / "o"))
    assert "| 100 + 1500 | 147 + 1782 |" in (tmp_path / "o" / "wer.md").read_text()
    with pytest.raises(ValueError, match="already merged"):
        module.report.merge([str(tmp_path / "i"), str(tmp_path / "i")], str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="results.json"):
        module.report.merge([str(tmp_path / "nothing")], str(tmp_path / "x"))
