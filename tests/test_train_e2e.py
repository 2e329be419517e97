"""End-to-end: real Hydra composition, a real Lightning Trainer on the tiny synthetic corpus,
checkpoint + resume, and the evaluation matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir

from avsr.evaluate import evaluate_checkpoint, load_model_from_checkpoint
from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
# the paper recipes need LRS2/LRS3 (tests/test_recipes.py builds them); the others run here
PAPER_RECIPES = ("avhubert_", "autoavsr_", "pan2022_", "usr_", "zhang_")
# word-level recipes (LRW data, no decoder: tiny_overrides do not apply) run in tests/test_lrw.py
WORD_RECIPES = ("lrw_", "synth_words")
# real-speech recipes (Asterisk prompts, not the synthetic layout) run in tests/test_asterisk.py
REAL_SPEECH_RECIPES = ("real_",)
# per-modality encoders (tiny_overrides' fusion sizes do not apply): tests/test_pipelines.py
PIPELINE_TWINS = ("synth_pan",)
# sweeps of synth_grid's arms (their default arm is synth_grid itself): tests/test_claims.py
CLAIM_SWEEPS = ("claim_",)
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIGS) / "experiment").glob("*.yaml")
                     if not p.stem.startswith(PAPER_RECIPES + WORD_RECIPES + REAL_SPEECH_RECIPES
                                              + PIPELINE_TWINS + CLAIM_SWEEPS))


def _cfg(root: Path, out: Path, *extra: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*extra, *tiny_overrides(root, out)])


class _StartProbe(pl.Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None
        self.start_opt_step: float | None = None
        self.start_lr: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step
        opt = trainer.optimizers[0]
        states = list(opt.state.values())
        self.start_opt_step = float(states[0]["step"]) if states else 0.0
        self.start_lr = opt.param_groups[0]["lr"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_every_experiment(experiment, tiny_synth_root, tmp_path):
    cfg = _cfg(tiny_synth_root, tmp_path, f"+experiment={experiment}", "debug=fdr")
    summary = train(cfg)
    assert summary["global_step"] == 1
    assert (tmp_path / "summary.json").is_file()


def test_train_checkpoint_resume_and_evaluate(tiny_synth_root, tmp_path):
    out = tmp_path / "run"
    common = ["+experiment=synth_grid", "evaluate=false", "trainer.max_epochs=100",
              "trainer.max_time=null", "trainer.val_check_interval=2",
              "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=1"]
    summary = train(_cfg(tiny_synth_root, out, *common, "trainer.max_steps=2"))
    last = out / "checkpoints" / "last.ckpt"
    assert summary["global_step"] == 2 and last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    saved_opt_step = float(next(iter(ckpt["optimizer_states"][0]["state"].values()))["step"])
    assert saved_opt_step == 2.0
    assert "avsr_config" in ckpt

    probe = _StartProbe()
    summary = train(_cfg(tiny_synth_root, out, *common, "trainer.max_steps=4",
                         f"ckpt_path={last}"), extra_callbacks=[probe])
    assert probe.start_step == 2  # continues, does not restart
    assert probe.start_opt_step == saved_opt_step  # Adam moments restored, not fresh
    assert probe.start_lr == pytest.approx(ckpt["optimizer_states"][0]["param_groups"][0]["lr"])
    assert summary["global_step"] == 4
    ckpt2 = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt2["global_step"] == 4
    assert ckpt2["lr_schedulers"][0]["last_epoch"] == 4

    # the checkpoint alone rebuilds the model
    model, run_cfg = load_model_from_checkpoint(last)
    assert model.ctc.ctc_lo.out_features == run_cfg.vocab_size
    assert model.decoder.output_projection.out_features == run_cfg.vocab_size

    cfg = _cfg(tiny_synth_root, out, *common)
    result = evaluate_checkpoint(last, cfg.eval, cfg.decode, out / "eval")
    # 3 modalities x (clean + babble 0 dB + white 0 dB)
    assert len(result["rows"]) == 9
    for row in result["rows"]:
        assert set(row["wer"]) == {"ctc_greedy", "attention_greedy", "beam"}
        assert all(w >= 0 for w in row["wer"].values())
    data = json.loads((out / "eval" / "wer.json").read_text())
    assert data["rows"][0]["modality"] == "audio"
    assert (out / "eval" / "wer.md").read_text().startswith("| modality |")
    assert (out / "eval" / "wer_vs_snr.png").stat().st_size > 1000
    # video-only rows do not depend on audio noise
    video = [r for r in result["rows"] if r["modality"] == "video"]
    assert len({json.dumps(r["wer"]) for r in video}) == 1
    # per-utterance hypotheses: one file per modality x condition x decoder, and their word
    # edits add up to the table's WER
    assert len(result["hyp_files"]) == 27
    row = next(r for r in result["rows"]
               if r["modality"] == "audio" and r["condition"] == "babble +0 dB")
    lines = (out / "eval" / "hyps" / "audio_babblep0dB_beam.tsv").read_text().splitlines()
    assert lines[0] == "id\tedits\tref_words\tref\thyp"
    fields = [line.split("\t") for line in lines[1:]]
    assert len(fields) == row["utterances"]
    edits, words = sum(int(f[1]) for f in fields), sum(int(f[2]) for f in fields)
    assert edits / words == pytest.approx(row["wer"]["beam"])
    assert [f[0] for f in fields] == sorted(f[0] for f in fields)


def test_resume_last_when_missing_starts_fresh(tiny_synth_root, tmp_path):
    cfg = _cfg(tiny_synth_root, tmp_path, "+experiment=synth_grid", "debug=fdr",
               "ckpt_path=last")
    assert train(cfg)["global_step"] == 1


def test_bad_ckpt_path_is_a_clear_error(tiny_synth_root, tmp_path):
    cfg = _cfg(tiny_synth_root, tmp_path, "+experiment=synth_grid", "debug=fdr",
               f"ckpt_path={tmp_path}/nope.ckpt")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        train(cfg)


def test_bad_eval_checkpoint_fails_before_training(tmp_path):
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"),
                               version_base="1.3"):
        cfg = compose("train", overrides=["eval_checkpoint=newest",
                                          f"paths.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="eval_checkpoint"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
