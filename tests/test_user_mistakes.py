"""Mistakes that used to waste hours or mislead, each now stopped at once with a clear message.

- a mistyped ``data.corpus.root`` under a synthetic recipe started a 3,500-utterance
  generation; generation needs the recipe's own location or ``synthetic.generate=true``;
- ``ckpt_path=last`` in Hydra's time-stamped run folder silently started from scratch;
- ``evaluate`` counted a bad test file once per noise condition and decoded the whole noise
  matrix before judging the bad fraction;
- ``data.max_frames=abc`` failed with a bare ``TypeError`` after the model was built.

Real Hydra composition (and real ``python -m avsr.train`` processes where Hydra's run folder
matters), real corpora and a real trained checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SENTENCES, tiny_overrides, write_lrs3_txt
from hydra import compose, initialize_config_dir

from avsr.data.corpora import LRS3
from avsr.data.dataset import TooManyBadItemsError
from avsr.data.datamodule import AVDataModule
from avsr.evaluate import evaluate_checkpoint
from avsr.train import train
from avsr.utils.runtime import ensure_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
CONFIGS = str(REPO / "configs")
# a 4-utterance corpus: generation in seconds, the code path of the 3,500-utterance one
SMALL = ["synthetic.num_train=2", "synthetic.num_val=1", "synthetic.num_test=1",
         "synthetic.num_train_speakers=1", "synthetic.num_val_speakers=1",
         "synthetic.num_test_speakers=1", "synthetic.num_babble=1",
         "synthetic.num_babble_speakers=1", "synthetic.workers=1"]


def _compose(*overrides: str, name: str = "train"):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _generation_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "synthetic corpus" in r.getMessage()]


# ------------------------------------------------------------------- a. synthetic generation
def test_mistyped_synthetic_root_is_an_error_that_says_how_to_generate_there(
        tiny_synth_root, tmp_path, caplog):
    typo = tmp_path / "data" / "synthetic" / "gird"
    overrides = [o for o in tiny_overrides(tiny_synth_root, tmp_path / "run")
                 if not o.startswith(("synthetic=", "data.corpus.root=", "paths.data_dir="))]
    cfg = _compose("+experiment=synth_grid", *overrides, *SMALL, "debug=fdr",
                   f"paths.data_dir={tmp_path / 'data'}", f"data.corpus.root={typo}")
    with pytest.raises(FileNotFoundError) as err:
        train(cfg)
    assert str(typo) in str(err.value) and "synthetic.generate=true" in str(err.value)
    assert str(tmp_path / "data" / "synthetic" / "grid") in str(err.value)  # the default
    assert not typo.exists() and not _generation_warnings(caplog)

    # asked for: generated there, with a warning naming the path and the size
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ensure_synthetic_corpus(_compose("+experiment=synth_grid", *SMALL,
                                         f"data.corpus.root={typo}",
                                         "synthetic.generate=true").synthetic)
    assert (typo / "corpus.json").is_file()
    (warning,) = _generation_warnings(caplog)
    assert str(typo) in warning and "4 utterances" in warning


def test_the_recipes_default_location_is_generated_without_asking(tmp_path, caplog):
    """``make demo``: synth_grid with its defaults generates into data/synthetic/grid."""
    cfg = _compose("+experiment=synth_grid", *SMALL, f"paths.data_dir={tmp_path}")
    assert cfg.synthetic.out_dir == str(tmp_path / "synthetic" / "grid")
    with caplog.at_level(logging.INFO):
        ensure_synthetic_corpus(cfg.synthetic)
    assert (tmp_path / "synthetic/grid/corpus.json").is_file()
    (warning,) = _generation_warnings(caplog)
    assert str(tmp_path / "synthetic" / "grid") in warning and "4 utterances" in warning
    # the default place refuses too when generation is switched off
    off = _compose("+experiment=synth_grid", *SMALL, f"paths.data_dir={tmp_path / 'other'}",
                   "synthetic.generate=false")
    with pytest.raises(FileNotFoundError, match="synthetic.generate=true"):
        ensure_synthetic_corpus(off.synthetic)


# ---------------------------------------------------------------------- b. ckpt_path=last
def _train_command(root: Path, *extra: str) -> list[str]:
    overrides = [o for o in tiny_overrides(root, Path("unused"))
                 if not o.startswith(("paths.output_dir=", "num_threads="))]
    return [sys.executable, "-m", "avsr.train", "+experiment=synth_grid", *overrides,
            "num_threads=1", "debug=fdr", "evaluate=false", "ckpt_path=last", *extra]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_resume_last_in_a_timestamped_run_dir_is_an_error(tiny_synth_root, tmp_path):
    proc = _run(_train_command(tiny_synth_root), tmp_path)
    assert proc.returncode != 0
    assert "ckpt_path=last" in proc.stderr and "hydra.run.dir=" in proc.stderr, proc.stderr
    assert "ValueError" in proc.stderr
    runs = list((tmp_path / "logs" / "synth_grid" / "runs").iterdir())
    assert len(runs) == 1 and str(runs[0]) in proc.stderr  # the folder it would have used
    assert not list(tmp_path.rglob("checkpoints")) and not list(tmp_path.rglob("*.ckpt"))


def test_resume_last_in_a_fixed_run_dir_starts_fresh(tiny_synth_root, tmp_path):
    """``make demo``: a fixed ``hydra.run.dir``, no last.ckpt yet: a fresh start."""
    run = tmp_path / "run"
    proc = _run(_train_command(tiny_synth_root, f"hydra.run.dir={run}"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 1 and summary["last_checkpoint"]


# --------------------------------------------------------------------- c. bad test files
@pytest.fixture(scope="module")
def checkpoint(tiny_synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = _compose("+experiment=synth_grid", "debug=fdr", *tiny_overrides(tiny_synth_root, out),
                   "evaluate=false")
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def _with_bad_test_files(root: Path, dest: Path, count: int) -> Path:
    """A copy of the tiny corpus with ``count`` unreadable test clips (and their transcripts)."""
    shutil.copytree(root, dest)
    spk = next(p for p in sorted((dest / "test").iterdir()) if p.is_dir())
    for k in range(count):
        (spk / f"bad{k:02d}.mp4").write_bytes(b"not an mp4 at all" * 50)
        write_lrs3_txt(spk / f"bad{k:02d}.txt", SENTENCES[k % len(SENTENCES)], None)
    return dest


def _eval_cfg(*extra: str):
    # CTC greedy only: an untrained attention decoder runs every hypothesis to its maximum length
    return _compose("ckpt=x", "eval.modalities=[audio]", "decode=greedy",
                    "decode.decoders=[ctc_greedy]", "decode.primary_decoder=ctc_greedy",
                    "eval.progress=false",
                    "eval.noise.types=[babble,white]", "eval.noise.snrs=[0]", *extra,
                    name="evaluate")


def test_a_bad_test_file_counts_once_over_every_noise_condition(
        checkpoint, tiny_synth_root, tmp_path):
    root = _with_bad_test_files(tiny_synth_root, tmp_path / "corpus", 1)
    cfg = _eval_cfg("eval.limit=null")
    result = evaluate_checkpoint(checkpoint, cfg.eval, cfg.decode, tmp_path / "eval",
                                 {"corpus": {"root": str(root)}, "max_bad_fraction": 1.0})
    assert {r["condition"] for r in result["rows"]} == {"clean", "babble +0 dB", "white +0 dB"}
    stored = json.loads((tmp_path / "eval" / "wer.json").read_text())["skipped_media"]
    assert stored["total"] == 1
    assert sum(stored["by_problem"].values()) == 1
    assert len(stored["files"]) == 1 and stored["files"][0].endswith("bad00.mp4")


def test_too_many_bad_test_files_stop_after_the_clean_condition(
        checkpoint, tiny_synth_root, tmp_path, monkeypatch):
    root = _with_bad_test_files(tiny_synth_root, tmp_path / "corpus", 6)  # 6 of 12
    requested = []
    original = AVDataModule.test_dataloader_for

    def spy(self, noise_type, snr):
        requested.append(noise_type)
        return original(self, noise_type, snr)

    monkeypatch.setattr(AVDataModule, "test_dataloader_for", spy)
    cfg = _eval_cfg("eval.limit=2")  # a limited run never reached the end-of-pass check
    with pytest.raises(TooManyBadItemsError, match="max_bad_fraction 20"):
        evaluate_checkpoint(checkpoint, cfg.eval, cfg.decode, tmp_path / "eval",
                            {"corpus": {"root": str(root)}, "max_bad_fraction": 0.2})
    assert requested == [None]  # no noisy condition was decoded
    assert not (tmp_path / "eval" / "wer.json").exists()


# ------------------------------------------------------------------ d. numeric data options
BAD_OPTIONS = [
    ("max_frames", "abc"), ("max_frames", 0), ("max_frames_eval", -5), ("num_buckets", 2.5),
    ("max_batch_size", "8"), ("num_workers", -1), ("vocab_size", "big"),
    ("max_bad_fraction", 1.5), ("labelled_fraction", 0), ("labelled_fraction", "all"),
    ("babble_num_speakers", True), ("unlabelled_max_frames", "x"), ("cache", "false"),
]


@pytest.mark.parametrize(("key", "value"), BAD_OPTIONS)
def test_bad_numeric_data_options_are_named_when_the_datamodule_is_built(
        lrs3_root, tmp_path, key, value):
    with pytest.raises(ValueError) as err:
        AVDataModule(corpus=LRS3(lrs3_root), tokenizer_path=tmp_path / "spm.model",
                     **{key: value})
    assert f"data.{key}" in str(err.value) and repr(value) in str(err.value)


def test_max_frames_abc_fails_before_the_model_is_built(tiny_synth_root, tmp_path, caplog):
    cfg = _compose("+experiment=synth_grid", "debug=fdr",
                   *tiny_overrides(tiny_synth_root, tmp_path), "data.max_frames=abc")
    with caplog.at_level(logging.INFO), pytest.raises(Exception) as err:
        train(cfg)
    chain = [err.value, err.value.__cause__]
    assert any(isinstance(e, ValueError) and "data.max_frames" in str(e) and "'abc'" in str(e)
               for e in chain), repr(err.value)
    assert not [r for r in caplog.records if "M parameters" in r.getMessage()]


def test_whole_floats_are_accepted_as_integers(lrs3_root, tmp_path):
    dm = AVDataModule(corpus=LRS3(lrs3_root), tokenizer_path=tmp_path / "spm.model",
                      max_frames=1e3, num_workers=0.0)
    assert dm.max_frames == 1000 and isinstance(dm.max_frames, int) and dm.num_workers == 0
