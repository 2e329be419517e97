"""The paper pipelines of scripts/ end to end on their synthetic twins, at tiny sizes.

Each script runs one stage at a time with --dry-run; the commands it prints (exactly what it
would run) are executed in this interpreter (a new Python process per stage would cost more
than the tiny stage itself). Then the real script, with every stage finished, must skip them
all without starting Python; an interrupted stage resumes at its step; a stage whose input is
missing names the stage that makes it."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir

from avsr import evaluate as evaluate_module
from avsr import export_frontend
from avsr.ssl import kmeans
from avsr.train import train

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
CONFIGS = str(REPO / "configs")
TRAIN = ["trainer.max_steps=2", "trainer.max_epochs=100", "trainer.max_time=null",
         "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
         "++trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
         "data.max_frames=200"]
EVAL = "decode.max_len_ratio=0.2 eval.limit=2 eval.noise.types=[] eval.progress=false eval.write_hyps=false"




def _tiny(root: Path, *, drop: Sequence[str] = ()) -> list[str]:
    """tiny_overrides for a stage of a script (which sets the output folders itself)."""
    return [o for o in tiny_overrides(root, root) if not o.startswith(("paths.output_dir",
                                                                        *drop))] + TRAIN


class _StartStep(pl.Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step


def _compose(name: str, args: Sequence[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        # hydra.run.dir is the process's folder; paths.output_dir says the same in-process
        return compose(name, overrides=[a for a in args if not a.startswith("hydra.")])


def _execute(line: str, callbacks: Sequence[pl.Callback] = ()) -> None:
    """Run one printed command ``+ python -m MODULE ARGS`` in this interpreter."""
    argv = shlex.split(line[2:])
    assert argv[1] == "-m", line
    module, args = argv[2], argv[3:]
    if module == "avsr.train":
        train(_compose("train", args), extra_callbacks=list(callbacks))
    elif module == "avsr.evaluate":
        args = evaluate_module._data_overrides_layer_on_checkpoint(args)
        evaluate_module.main.__wrapped__(_compose("evaluate", args))
    elif module == "avsr.ssl.kmeans":
        kmeans.main(args)
    elif module == "avsr.export_frontend":
        assert export_frontend.main(args) == 0
    else:
        raise AssertionError(f"unexpected command: {line}")


def _script(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          cwd=REPO, check=check)


def _pipeline(name: str, out: Path, stages: int, *args: str,
              callbacks: dict[int, list[pl.Callback]] | None = None) -> list[str]:
    """Every stage of a script, one at a time: its printed commands executed here."""
    commands = []
    for k in range(1, stages + 1):
        printed = _script(name, "--dry-run", "--stage", str(k), "--stop-stage", str(k),
                          "--out", str(out), *args).stdout
        for line in printed.splitlines():
            if line.startswith("+ "):
                commands.append(line)
                _execute(line, (callbacks or {}).get(k, ()))
    return commands


def _all_skipped(name: str, out: Path, *args: str) -> str:
    """The real script (no --dry-run) over finished stages: nothing runs (no interpreter)."""
    result = _script(name, "--out", str(out), "--python", "false", *args)
    assert "+ " not in result.stdout, result.stdout
    return result.stdout


def _summary(out: Path, stage: str) -> dict:
    return json.loads((out / stage / "summary.json").read_text())


@pytest.mark.slow
def test_usr_pipeline_resumes_an_interrupted_stage(tiny_synth_root, tmp_path):
    out = tmp_path / "usr"
    args = ["--synthetic", "true", "--data-root", str(tiny_synth_root), "--finetune", "true",
            "--finetune-args", "init.0.modules=null", "--eval-args", EVAL, "--",
            *_tiny(tiny_synth_root), "data.labelled_fraction=0.5"]
    # stage 1 stopped after one of its two steps: its last.ckpt exists, its summary not
    _pipeline("usr.sh", out, 1, *args[:-1], "data.labelled_fraction=0.5",
              "trainer.max_steps=1")
    (out / "1_pretrain" / "summary.json").unlink()
    printed = _script("usr.sh", "--dry-run", "--stage", "1", "--stop-stage", "1", "--out",
                      str(out), *args).stdout
    assert "resuming from" in printed and "ckpt_path=last" in printed
    probe = _StartStep()
    commands = _pipeline("usr.sh", out, 4, *args, callbacks={1: [probe]})
    assert probe.start_step == 1  # the second step only
    assert [c.split()[4] for c in commands if "avsr.train" in c] == [
        "+experiment=synth_low_braven", "+experiment=synth_low_semi",
        "+experiment=synth_low_finetune"]
    assert _summary(out, "1_pretrain")["global_step"] == 2
    assert _summary(out, "2_semi")["global_step"] == 2
    wer = json.loads((out / "4_eval" / "wer.json").read_text())
    assert {"audio/clean", "video/clean", "audiovisual/clean"} <= set(wer["summary"])
    assert wer["checkpoint"].endswith("3_finetune/checkpoints/last.ckpt")
    assert _all_skipped("usr.sh", out, *args).count("finished earlier") == 4


@pytest.mark.slow
def test_avhubert_pipeline_iterates_cluster_targets(tiny_synth_root, tmp_path):
    out = tmp_path / "avhubert"
    args = ["--synthetic", "true", "--data-root", str(tiny_synth_root), "--iterations", "2",
            "--clusters", "8 8", "--layers", "1", "--eval-args", EVAL, "--",
            *_tiny(tiny_synth_root)]
    commands = _pipeline("avhubert.sh", out, 5, *args)
    assert sum("avsr.ssl.kmeans" in c for c in commands) == 2
    iteration2 = json.loads((out / "3_kmeans_iter2" / "kmeans.json").read_text())
    assert (iteration2["feature"], iteration2["layer"], iteration2["num_clusters"]) == (
        "layer", 1, 8)
    assert iteration2["ckpt"].endswith("2_iter1/checkpoints/last.ckpt")
    # the last iteration masks at input level with modality dropout, on its own targets
    last = json.loads((out / "3_iter2" / "summary.json").read_text())
    assert last["global_step"] == 2
    cfg = (out / "3_iter2" / "csv" / "hparams.yaml").read_text()
    assert "level: input" in cfg and "3_kmeans_iter2" in cfg
    assert (out / "5_eval" / "wer.json").is_file()
    assert _all_skipped("avhubert.sh", out, *args).count("finished earlier") == 6


@pytest.mark.slow
def test_zhang_pipeline_one_model_for_a_v_av(tiny_synth_root, tmp_path):
    out = tmp_path / "zhang"
    args = ["--synthetic", "true", "--data-root", str(tiny_synth_root), "--clusters", "8",
            "--eval-args", EVAL, "--", *_tiny(tiny_synth_root), "model.fusion.num_heads=2",
            "model.fusion.ffn_dim=32"]
    _pipeline("zhang.sh", out, 4, *args)
    hparams = (out / "2_pretrain" / "csv" / "hparams.yaml").read_text()
    assert "p_mask_audio_stream: 0.25" in hparams and "level: feature" in hparams
    wer = json.loads((out / "4_eval" / "wer.json").read_text())["summary"]
    assert {"audio/clean", "video/clean", "audiovisual/clean"} <= set(wer)
    assert _all_skipped("zhang.sh", out, *args).count("finished earlier") == 4
    # a stage whose input is missing says which stage makes it and how to run that one
    missing = _script("zhang.sh", "--synthetic", "true", "--out", str(tmp_path / "none"),
                      "--stage", "3", check=False)
    assert missing.returncode != 0
    assert "made by stage 2 (pre-training with flexible masking)" in missing.stderr
    assert "--stage 2 --stop-stage 2" in missing.stderr


@pytest.mark.slow
def test_pan2022_pipeline_word_front_end_into_fused_model(tiny_synth_root, tmp_path):
    out = tmp_path / "pan"
    words = [o for o in _tiny(tiny_synth_root, drop=("model.decoder.", "model.encoder."))]
    words += ["data.vocab_size=null", "data.corpus.min_train_per_word=2",
              "data.corpus.max_per_word={train:3,val:2,test:2}", "model.encoder.d_model=12",
              "model.encoder.num_layers=1", f"data.corpus.out_dir={tmp_path / 'words'}",
              "+trainer.limit_test_batches=1"]
    av = _tiny(tiny_synth_root, drop=("model.fusion.",)) + ["data.labelled_fraction=0.5"]
    args = ["--synthetic", "true", "--data-root", str(tiny_synth_root),
            "--word-args", " ".join(words), "--av-args", " ".join(av), "--eval-args", EVAL]
    _pipeline("pan2022.sh", out, 4, *args)
    assert (out / "2_frontend" / "video_frontend.pt").is_file()
    assert _summary(out, "3_av")["global_step"] == 2
    assert (out / "4_eval" / "wer.json").is_file()
    assert _all_skipped("pan2022.sh", out, *args).count("finished earlier") == 4


@pytest.mark.slow
def test_autoavsr_pipeline(tiny_synth_root, tmp_path):
    out = tmp_path / "autoavsr"
    args = ["--synthetic", "true", "--data-root", str(tiny_synth_root), "--eval-args", EVAL,
            "--", *_tiny(tiny_synth_root)]
    _pipeline("autoavsr.sh", out, 2, *args)
    assert _summary(out, "1_train")["global_step"] == 2
    assert (out / "2_eval" / "wer.json").is_file()
    assert _all_skipped("autoavsr.sh", out, *args).count("finished earlier") == 2


@pytest.mark.parametrize(("script", "args"), [
    ("usr.sh", ["--size", "large", "--resource", "high", "--finetune", "true"]),
    ("usr.sh", ["--size", "baseplus"]),
    ("avhubert.sh", ["--iterations", "5"]),
    ("avhubert.sh", ["--size", "large", "--labels", "433h", "--init-from", "x.pt",
                     "--stage", "4"]),
    ("pan2022.sh", []),
    ("zhang.sh", ["--level", "input"]),
    ("autoavsr.sh", ["--modality", "av"]),
])
def test_paper_pipelines_print_commands_that_compose(script, args, tmp_path):
    # the LRS-scale commands (not run): every printed training / evaluation command composes
    printed = _script(script, "--dry-run", "--data-root", "/corpora", "--out", str(tmp_path),
                      *args, "--", "trainer.devices=8").stdout
    commands = [shlex.split(line[2:]) for line in printed.splitlines() if line.startswith("+ ")]
    assert commands
    for argv in commands:
        if argv[2] == "avsr.train":
            cfg = _compose("train", argv[3:])
            assert cfg.trainer.devices == 8 and cfg.paths.data_dir == "/corpora"
            assert cfg.ckpt_path == "last" and str(tmp_path) in cfg.paths.output_dir
        elif argv[2] == "avsr.evaluate":
            _compose("evaluate", evaluate_module._data_overrides_layer_on_checkpoint(argv[3:]))
