"""Ablation sweeps: the sweep experiments, a real Hydra multirun, and avsr.sweep_report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr.sweep_report import find_run, load_runs, main, markdown_table, relative_table

REPO = Path(__file__).resolve().parents[1]
CONFIGS = str(REPO / "configs")


def _write_run(run: Path, overrides: list[str], summary: dict[str, float] | None,
               parameters: int = 2_000_000) -> None:
    """A run directory as avsr.train leaves it (only the files the report reads)."""
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is None:
        return
    (run / "eval").mkdir()
    rows = [{"modality": k.split("/")[0], "condition": k.split("/")[1],
             "wer": {"ctc_greedy": v / 50, "attention_greedy": v / 100}}
            for k, v in summary.items()]
    (run / "eval" / "wer.json").write_text(json.dumps({"rows": rows, "summary": summary}))
    (run / "summary.json").write_text(json.dumps(
        {"parameters": parameters, "global_step": 150, "train_wall_s": 300.0}))


def test_report_gathers_every_run(tmp_path, capsys):
    common = "+experiment=sweep_fusion"
    _write_run(tmp_path / "0", [common, "model/fusion=concat"],
               {"audio/clean": 20.0, "audiovisual/babble +0 dB": 30.0})
    _write_run(tmp_path / "1", [common, "model/fusion=sum"],
               {"audio/clean": 25.0, "video/clean": 40.0})
    _write_run(tmp_path / "10", [common, "model/fusion=transformer"], None)  # still running
    runs = load_runs(tmp_path)
    # job order (10 after 1), named by the override that differs, not the common one
    assert [r.name for r in runs] == ["model/fusion=concat", "model/fusion=sum",
                                      "model/fusion=transformer"]
    assert runs[0].wer == {"audio/clean": 20.0, "audiovisual/babble +0 dB": 30.0}
    assert (runs[0].parameters, runs[0].steps, runs[0].train_minutes) == (2_000_000, 150, 5.0)
    lines = markdown_table(runs).splitlines()
    assert lines[0] == ("| run | params (M) | steps | train (min) | audio/clean | "
                        "audiovisual/babble +0 dB | video/clean |")
    assert lines[2] == "| model/fusion=concat | 2.00 | 150 | 5.0 | 20.0 | 30.0 | – |"
    assert lines[3] == "| model/fusion=sum | 2.00 | 150 | 5.0 | 25.0 | – | 40.0 |"
    assert lines[4].startswith("| model/fusion=transformer (incomplete) | – |")
    # another decoder's column of wer.json
    assert load_runs(tmp_path, decoder="ctc_greedy")[1].wer == {"audio/clean": 50.0,
                                                                 "video/clean": 80.0}

    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    out = tmp_path / "report"
    assert (out / "sweep.md").read_text().strip() == markdown_table(runs)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["name"] for r in json.loads((out / "sweep.json").read_text())][1] == \
        "model/fusion=sum"
    assert "model/fusion=sum" in capsys.readouterr().out


def _write_arm(sweep: Path, arm: str, job: int, wer: dict[str, float],
               val: dict[str, float]) -> None:
    """An arm of a claim sweep: a folder named after the arm, Hydra's job number inside."""
    run = sweep / arm
    _write_run(run, ["+experiment=claim_unified", f"arm={arm}"], wer)
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {job}\n")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(fit_wall_s=3000.0, global_step=1000,
                   metrics={"train/loss": 1.0, **{f"val/wer_{m}": v for m, v in val.items()}})
    (run / "summary.json").write_text(json.dumps(summary))


def test_report_compares_runs_with_references(tmp_path, capsys):
    _write_arm(tmp_path, "unified", 0,
               {"audio/clean": 0.8, "video/clean": 7.5, "audiovisual/clean": 0.6,
                "audio/babble +0 dB": 20.0},
               {"audio": 0.037, "video": 0.107, "audiovisual": 0.04})
    _write_arm(tmp_path, "audio_only", 1, {"audio/clean": 1.0, "audio/babble +0 dB": 16.0},
               {"audio": 0.05})
    _write_arm(tmp_path, "video_only", 2, {"video/clean": 10.0}, {"video": 0.12})
    runs = load_runs(tmp_path)
    # Hydra's job order, not the folders' alphabetical one; named by the arm
    assert [r.name for r in runs] == ["arm=unified", "arm=audio_only", "arm=video_only"]
    assert runs[0].train_minutes == 50.0  # fit_wall_s (spans resumed attempts) first
    assert runs[1].val_wer == {"audio": 5.0}
    lines = markdown_table(runs).splitlines()
    assert lines[0].endswith("| val/wer_audio | val/wer_video | val/wer_audiovisual |")
    assert lines[3].endswith("| 5.0 | – | – |")
    # a reference by its whole name or by its override's value
    refs = [find_run(runs, "arm=audio_only"), find_run(runs, "video_only")]
    assert relative_table(runs, refs).splitlines() == [
        "| run | audio/clean vs arm=audio_only | audio/babble +0 dB vs arm=audio_only | "
        "video/clean vs arm=video_only |",
        "|---|---|---|---|",
        "| arm=unified | -20.0 % (1.0 → 0.8) | +25.0 % (16.0 → 20.0) | -25.0 % (10.0 → 7.5) |",
    ]
    with pytest.raises(ValueError, match="'stacking'.*arm=unified"):
        find_run(runs, "stacking")

    assert main([str(tmp_path), "--reference", "audio_only", "--reference", "video_only"]) == 0
    md = (tmp_path / "sweep.md").read_text()
    assert markdown_table(runs) in md and relative_table(runs, refs) in md
    assert "-25.0 % (10.0 → 7.5)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--reference", "stacking"])


def test_report_rejects_a_directory_without_runs(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])


@pytest.mark.parametrize(("experiment", "key", "values"), [
    ("sweep_fusion", "model/fusion", "concat,sum,cross_attention,transformer"),
    ("sweep_modality_dropout", "model.fusion.p_modality", "0.0,0.25,0.5,0.75"),
])
def test_sweep_experiments_declare_their_sweep(experiment, key, values):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}",
                                          "paths.output_dir=/tmp/x"], return_hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params[key] == values
    # the same CPU budget for every run (a schedule over the steps, not the clock), the short
    # evaluation matrix
    assert cfg.trainer.max_steps == 200
    assert cfg.stage.scheduler.time_budget_s is None
    assert list(cfg.eval.noise.types) == ["babble"] and list(cfg.eval.noise.snrs) == [0]
    # each run in its own directory
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


@pytest.mark.slow
def test_multirun_then_report(tiny_synth_root, tmp_path):
    """The README's sweep command, shrunk: two fusion modules, one run directory each."""
    sweep = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides(tiny_synth_root, tmp_path)
                 if not o.startswith(("paths.output_dir=", "num_threads="))]
    cmd = [sys.executable, "-m", "avsr.train", "-m", "+experiment=synth_grid",
           "model/fusion=concat,sum", *overrides, "num_threads=1", "decode=greedy",
           "trainer.max_steps=2", "trainer.max_time=null", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    runs = load_runs(sweep)
    assert [r.name for r in runs] == ["model/fusion=concat", "model/fusion=sum"]
    assert [r.path.name for r in runs] == ["0", "1"]
    for r in runs:
        assert r.steps == 2
        assert set(r.wer) == {f"{m}/{c}" for m in ("audio", "video", "audiovisual")
                              for c in ("clean", "babble +0 dB", "white +0 dB")}
    assert main([str(sweep)]) == 0
    assert (sweep / "sweep.png").is_file() and (sweep / "sweep.md").is_file()
