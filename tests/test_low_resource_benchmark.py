"""benchmarks/low_resource.py: the budgets (pre-training at most 3x the fine-tuning), the
stage plan of the five pipelines; the orchestration of all five with the training and the
k-means faked (stage order, the configs Hydra composes for each stage, a shared pre-training,
k-means between the AV-HuBERT iterations, best-validation checkpoints, reading and resuming
stages of an earlier invocation, separate processes merged); and one real tiny run of (iii)
(two AV-HuBERT iterations, real k-means, fine-tuning, evaluation). The semi stage's labelled
warm-up itself is tested in test_ssl_stages.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, tiny_overrides

ALL = ["i", "ii", "iii", "iv", "v"]
# the rows of the real evaluation as the table names them (video under babble: the clean
# video's WER)
CONDITIONS = {"audio/clean", "video/clean", "audiovisual/clean", "audio/babble_0",
              "video/babble_0", "audiovisual/babble_0"}


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
    three = module.pipelines(_args(tmp_path, tmp_path, only=["iii"], pretrain_steps=8,
                                   finetune_steps=4, avhubert_iterations=3))
    [iii3] = three.values()  # P // N per iteration, the remainder to the last
    assert [(s.name, s.steps) for s in iii3] == [
        ("iii_avhubert_iter1", 2), ("iii_kmeans_iter2", 0), ("iii_avhubert_iter2", 2),
        ("iii_kmeans_iter3", 0), ("iii_avhubert_iter3", 4), ("iii_avhubert_finetune", 4)]
    assert f"ssl_labels.ckpt={tmp_path / 'iii_avhubert_iter2' / 'checkpoints' / 'last.ckpt'}" \
        in iii3[4].overrides
    assert ["stage.objective.level=input" in s.overrides for s in iii3[::2]] == [
        False, False, True]
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


class FakeTraining:
    """Stands in for ``avsr.train.train`` and the k-means labelling: records the composed
    config of every call in order and writes what the driver reads afterwards, as the real
    ones do (``checkpoints/last.ckpt`` with its ``global_step``, a best-validation checkpoint
    at the first validation, ``summary.json`` with ``eval`` WERs; ``kmeans.json``).
    ``interrupt=(stage, step)``: that stage dies once at ``step``, its last.ckpt left behind."""

    WER = {"synth_low_supervised": 50.0, "synth_low_finetune": 40.0, "synth_low_semi": 35.0,
           "synth_zhang_finetune": 45.0}

    def __init__(self, interrupt: tuple[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []  # (kind, stage folder)
        self.cfgs: dict[str, object] = {}
        self.started_at: dict[str, int] = {}
        self.interrupt = interrupt

    def install(self, monkeypatch, module) -> FakeTraining:
        monkeypatch.setattr(module, "train", self.train)
        monkeypatch.setattr(module, "make_labels", self.make_labels)
        return self

    def trained(self) -> list[str]:
        return [name for kind, name in self.calls if kind == "train"]

    def train(self, cfg) -> dict:
        run_dir = Path(cfg.paths.output_dir)
        self.calls.append(("train", run_dir.name))
        self.cfgs[run_dir.name] = cfg
        ckpts = Path(cfg.paths.checkpoint_dir)
        ckpts.mkdir(parents=True, exist_ok=True)
        last = ckpts / "last.ckpt"
        resume = cfg.ckpt_path == "last" and last.is_file()
        self.started_at[run_dir.name] = torch.load(last)["global_step"] if resume else 0
        if self.interrupt and self.interrupt[0] == run_dir.name:
            torch.save({"global_step": self.interrupt[1]}, last)
            self.interrupt = None
            raise RuntimeError("killed")
        steps = cfg.trainer.max_steps
        torch.save({"global_step": steps}, last)
        best = ckpts / f"epoch000-step{cfg.trainer.val_check_interval:06d}.ckpt"
        torch.save({"global_step": cfg.trainer.val_check_interval}, best)
        summary = {"best_checkpoint": str(best), "last_checkpoint": str(last),
                   "global_step": steps, "train_wall_s": 1.0,
                   "evaluated_checkpoint": str(best if cfg.eval_checkpoint == "best" else last)}
        if cfg.evaluate:
            w = self.WER[cfg.task_name]
            summary["eval"] = {"audio/clean": w / 2, "video/clean": w,
                               "audiovisual/clean": w / 2, "audio/babble +0 dB": 2 * w,
                               "video/babble +0 dB": w, "audiovisual/babble +0 dB": w}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    def make_labels(self, cfg) -> dict:
        node = cfg.ssl_labels
        meta = Path(node.out) / "kmeans.json"
        if meta.is_file():  # as ensure_labels: made once
            return json.loads(meta.read_text())
        self.calls.append(("kmeans", Path(node.out).name))
        made = {"feature": node.feature, "ckpt": node.ckpt, "layer": node.layer,
                "num_clusters": node.num_clusters, "wall_s": 1.5,
                "from_step": torch.load(node.ckpt)["global_step"]}
        meta.parent.mkdir(parents=True)
        meta.write_text(json.dumps(made))
        return made


III = "(iii) AV-HuBERT (2 iterations) + fine-tune"
IV = "(iv) BRAVEn + semi (labelled warm-up)"


def test_five_pipelines_orchestrated_interrupted_and_resumed(tmp_path, monkeypatch, capsys):
    """Stage order, budgets, the configs Hydra composes for every stage, the shared
    pre-training, the k-means between the AV-HuBERT iterations, best-validation testing, and
    --reuse (finished stages read, an interrupted one resumed), with training faked."""
    module = _module()
    root, out = tmp_path / "grid", tmp_path / "out"
    warm = "+init.0.prefix=objective.teacher.model."

    def args(**kw):
        return _args(out, root, finetune_steps=4, pretrain_steps=5, val_checks=2,
                     freeze_fraction=0.5, init_override=[warm], **kw)

    fake = FakeTraining(interrupt=("braven_pretrain", 3)).install(monkeypatch, module)
    with pytest.raises(RuntimeError, match="killed"):
        module.run(args())
    assert fake.trained() == ["i_supervised", "braven_pretrain"]
    assert list(json.loads((out / "results.json").read_text())["pipelines"]) == [
        "(i) supervised"]  # the table is written after each pipeline
    with pytest.raises(FileExistsError, match="--reuse"):  # would overwrite that run
        module.run(args())
    assert len(fake.calls) == 2

    capsys.readouterr()
    results = module.run(args(reuse=True))
    printed = capsys.readouterr().out
    assert "[i_supervised] reused" in printed and "(step 3)" in printed
    assert fake.calls[2:] == [("train", n) for n in (
        "braven_pretrain", "ii_braven_finetune", "iii_avhubert_iter1")] + [
        ("kmeans", "iii_kmeans_iter2")] + [("train", n) for n in (
            "iii_avhubert_iter2", "iii_avhubert_finetune", "iv_semi", "v_zhang_pretrain",
            "v_zhang_finetune")]  # (ii)'s pre-training trained once, used by (iv)
    assert fake.started_at == {n: 3 if n == "braven_pretrain" else 0 for n in fake.cfgs}

    cfgs = fake.cfgs
    experiment = {"i_supervised": "synth_low_supervised", "braven_pretrain": "synth_low_braven",
                  "ii_braven_finetune": "synth_low_finetune",
                  "iii_avhubert_iter1": "synth_low_avhubert",
                  "iii_avhubert_iter2": "synth_low_avhubert",
                  "iii_avhubert_finetune": "synth_low_finetune", "iv_semi": "synth_low_semi",
                  "v_zhang_pretrain": "synth_zhang_pretrain",
                  "v_zhang_finetune": "synth_zhang_finetune"}
    steps = {"i_supervised": 4, "braven_pretrain": 5, "ii_braven_finetune": 4,
             "iii_avhubert_iter1": 2, "iii_avhubert_iter2": 3, "iii_avhubert_finetune": 4,
             "iv_semi": 4, "v_zhang_pretrain": 5, "v_zhang_finetune": 4}
    init_from = {"ii_braven_finetune": "braven_pretrain", "iv_semi": "braven_pretrain",
                 "iii_avhubert_finetune": "iii_avhubert_iter2",
                 "v_zhang_finetune": "v_zhang_pretrain"}
    for name, cfg in cfgs.items():
        final = name.endswith(("supervised", "finetune", "semi"))
        assert cfg.task_name == experiment[name], name
        assert cfg.trainer.max_steps == steps[name], name
        assert cfg.trainer.val_check_interval == steps[name] // 2, name  # --val-checks 2
        assert cfg.trainer.limit_val_batches == 1 and cfg.ckpt_path == "last", name
        assert cfg.evaluate == final, name
        if final:  # the recipes' own choice is the last weights
            assert cfg.eval_checkpoint == "best", name
        if name in init_from:
            assert cfg.init[0].path == str(out / init_from[name] / "checkpoints" / "last.ckpt")
            assert cfg.init[0].prefix == "objective.teacher.model.", name  # --init-override
        else:  # (i) and every pre-training start from scratch
            assert not [s for s in cfg.init if s.path], name
            assert "prefix" not in str(cfg.init), name
        if name.endswith("finetune"):
            assert cfg.callbacks.freeze_pretrained.steps == 2, name  # 0.5 x F
    semi = cfgs["iv_semi"].stage.objective
    assert semi.unlabelled_start_step == 1 and semi.heads_from_model
    it1, it2 = cfgs["iii_avhubert_iter1"], cfgs["iii_avhubert_iter2"]
    assert it1.stage.objective.label_dir == str(root / "labels" / "mfcc_k8")
    assert it1.ssl_labels.feature == "mfcc" and it1.ssl_labels.num_clusters == 8
    assert it2.stage.objective.label_dir == str(out / "iii_kmeans_iter2")
    assert [it1.stage.objective.level, it2.stage.objective.level] == ["feature", "input"]
    # iteration 2's targets: k-means of block 1 of iteration 1's final weights
    kmeans = json.loads((out / "iii_kmeans_iter2" / "kmeans.json").read_text())
    assert kmeans == {"feature": "layer", "layer": 1, "num_clusters": 8, "wall_s": 1.5,
                      "ckpt": str(out / "iii_avhubert_iter1" / "checkpoints" / "last.ckpt"),
                      "from_step": 2}

    pipes = results["pipelines"]
    assert {k: p["steps"] for k, p in pipes.items()} == {
        "(i) supervised": [4], "(ii) BRAVEn + fine-tune": [5, 4], III: [2, 0, 3, 4],
        IV: [5, 4], "(v) Zhang contextual masking + fine-tune": [5, 4]}
    for name, pipe in pipes.items():  # tested at the best validation step, not the last
        assert pipe["best_step"] == 2 and pipe["evaluated_checkpoint"].endswith(
            "step000002.ckpt"), name
        assert set(pipe["wer"]) == CONDITIONS
    assert pipes[IV]["stages"][0]["resumed_from_step"] == 3
    assert pipes[IV]["stages"][0]["shared_with"] == "(ii) BRAVEn + fine-tune"
    assert pipes[IV]["relative"]["video/clean"] == -30.0
    assert pipes[IV]["target_met"] == {"video/clean": True, "audiovisual/clean": True}
    assert pipes["(v) Zhang contextual masking + fine-tune"]["target_met"] == {
        "video/clean": False, "audiovisual/clean": False}
    assert pipes[III]["wall_s"][1] == 1.5  # the k-means stage's own seconds
    table = (out / "wer.md").read_text()
    assert "| (iv) BRAVEn + semi (labelled warm-up) | 5* + 4 | " in table
    assert "| 2 + k-means + 3 + 4 | " in table and "35.0 (-30 %)" in table

    # everything finished: a third invocation trains nothing and gives the same table
    capsys.readouterr()
    again = module.run(args(reuse=True))
    assert len(fake.calls) == 11 and capsys.readouterr().out.count("reused") == 10
    assert {k: (p["wer"], p["steps"], p["best_step"]) for k, p in again["pipelines"].items()} \
        == {k: (p["wer"], p["steps"], p["best_step"]) for k, p in pipes.items()}
    # a finished stage of another budget is not taken for this one
    with pytest.raises(ValueError, match="i_supervised ran 4 steps"):
        module.run(_args(out, root, finetune_steps=3, pretrain_steps=5, reuse=True))


def test_separate_processes_share_the_pretraining_and_merge(tmp_path, monkeypatch):
    """``--only`` per process, (iv) on (ii)'s pre-training via --pretrained-from, then
    ``--merge`` (training faked)."""
    module = _module()
    fake = FakeTraining().install(monkeypatch, module)
    for only, extra in (("ii", {}), ("iv", {"pretrained_from": str(
            tmp_path / "ii" / "braven_pretrain")}), ("i", {})):
        module.run(_args(tmp_path / only, tmp_path, only=[only], semi_warmup_steps=0, **extra))
    assert fake.trained() == ["braven_pretrain", "ii_braven_finetune", "iv_semi", "i_supervised"]
    assert fake.cfgs["iv_semi"].init[0].path == str(
        tmp_path / "ii" / "braven_pretrain" / "checkpoints" / "last.ckpt")
    merged = module.report.merge([str(tmp_path / d) for d in ("iv", "i", "ii")],
                                 str(tmp_path / "all"))
    assert list(merged["pipelines"]) == ["(i) supervised", "(ii) BRAVEn + fine-tune",
                                         "(iv) BRAVEn + semi (USR)"]
    iv = merged["pipelines"]["(iv) BRAVEn + semi (USR)"]
    assert iv["stages"][0]["shared_with"] == "(ii) BRAVEn + fine-tune" and iv["stages"][0][
        "reused"]
    assert iv["relative"]["video/clean"] == -30.0


def test_command_line_budgets(monkeypatch):
    module = _module()
    seen = []
    monkeypatch.setattr(module, "run", lambda a: seen.append(a) or {"pipelines": {}})
    monkeypatch.setattr(sys, "argv", ["low_resource.py", "--finetune-steps", "7"])
    module.main()
    assert seen[0].finetune_steps == 7 and seen[0].pretrain_steps == 21  # P defaults to 3 F
    monkeypatch.setattr(sys, "argv", ["low_resource.py", "--steps", "7"])
    with pytest.raises(SystemExit):
        module.main()


@pytest.mark.slow
def test_avhubert_pipeline_end_to_end(tiny_synth_root, tmp_path):
    """The one real run (the cheapest pipeline that covers what the fakes cannot): two
    AV-HuBERT iterations of 1 step, real k-means between them on iteration 1's checkpoint,
    fine-tuning 2 steps, tested at its best validation checkpoint with babble noise."""
    module = _module()
    args = _args(tmp_path, tiny_synth_root, only=["iii"], avhubert_clusters=4,
                 override=_args(tmp_path, tiny_synth_root).override
                 + ["trainer.num_sanity_val_steps=0", "num_threads=1"])
    results = module.run(args)
    pipe = results["pipelines"][III]
    assert pipe["steps"] == [1, 0, 1, 2]
    assert set(pipe["wer"]) == CONDITIONS
    summary = json.loads((tmp_path / "iii_avhubert_finetune" / "summary.json").read_text())
    assert pipe["evaluated_checkpoint"] == summary["best_checkpoint"]
    assert not pipe["evaluated_checkpoint"].endswith("last.ckpt") and pipe["best_step"] == 2
    meta = json.loads((tmp_path / "iii_kmeans_iter2" / "kmeans.json").read_text())
    assert meta["feature"] == "layer" and meta["num_clusters"] == 4
    first = tmp_path / "iii_avhubert_iter1" / "checkpoints" / "last.ckpt"
    assert meta["ckpt"] == str(first)
    assert module._checkpoint_step(first) == 1  # what --reuse reads of a real checkpoint
    objectives = [torch.load(tmp_path / f"iii_avhubert_iter{k}" / "checkpoints" / "last.ckpt",
                             weights_only=True)["avsr_config"]["stage"]["objective"]
                  for k in (1, 2)]
    assert objectives[0]["label_dir"].endswith("mfcc_k4")
    assert objectives[1]["label_dir"] == str(tmp_path / "iii_kmeans_iter2")
    assert [o["level"] for o in objectives] == ["feature", "input"]
    assert (tmp_path / "wer.md").read_text().startswith("| pipeline |")


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
