"""The claim sweeps (issue 21): their arms against synth_grid, and a rerun that skips finished
arms and resumes interrupted ones (a real Hydra multirun at tiny size)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hydra
import pytest
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from pytorch_lightning.callbacks import Timer

from avsr.sweep_report import load_runs
from avsr.train import _fit_wall_s, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = str(REPO / "configs")

# what every arm of a claim sweep changes in synth_grid: resumable reruns, the short
# evaluation matrix
SWEEP_KEYS = {"task_name", "ckpt_path", "skip_finished", "eval.noise.types", "eval.noise.snrs"}
# and what each arm changes besides
ARM_KEYS = {
    ("claim_unified", "unified"): set(),
    ("claim_unified", "audio_only"): {"data.modalities", "model.video_frontend",
                                      "model.fusion.video_dim", "stage.objective.modalities",
                                      "eval.modalities"},
    ("claim_unified", "video_only"): {"data.modalities", "model.audio_frontend",
                                      "model.fusion.audio_dim", "stage.objective.modalities",
                                      "eval.modalities"},
    ("claim_dropout", "stacking"): set(),
    ("claim_dropout", "dropout"): {"stage.objective.modalities", "model.fusion.p_modality"},
}


def _compose(*overrides: str, hydra_config: bool = False):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*overrides, "paths.output_dir=/tmp/x"],
                       return_hydra_config=hydra_config)


@functools.cache
def _composed(*overrides: str):
    """:func:`_compose`, shared by the tests that only read the config."""
    return _compose(*overrides)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf (lists are leaves), interpolations left as written."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@pytest.mark.parametrize(("experiment", "arm"), list(ARM_KEYS), ids=[a for _, a in ARM_KEYS])
def test_arm_differs_from_synth_grid_only_in_its_keys(experiment, arm):
    base = _composed("+experiment=synth_grid")
    cfg = _composed(f"+experiment={experiment}", f"arm={arm}")
    a = _flat(OmegaConf.to_container(base, resolve=False))
    b = _flat(OmegaConf.to_container(cfg, resolve=False))
    changed = {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}
    expected = SWEEP_KEYS | ARM_KEYS[experiment, arm]
    # a nulled front-end changes its whole subtree: count it as its own key
    touched = {next((e for e in expected if k == e or k.startswith(e + ".")), k) for k in changed}
    assert touched == expected
    # same budget, seed and schedule as the main job
    assert cfg.trainer.max_steps == base.trainer.max_steps == 1000 and cfg.seed == base.seed
    assert cfg.stage.scheduler.time_budget_s is None
    # a single-stream model keeps the unified model's fusion shapes (its own stream's path)
    assert (cfg.model.fusion.audio_dim, cfg.model.fusion.video_dim) == \
        (base.model.fusion.audio_dim, base.model.fusion.video_dim) == (128, 128)


@pytest.mark.parametrize(("experiment", "arms"), [
    ("claim_unified", "unified,audio_only,video_only"), ("claim_dropout", "stacking,dropout")])
def test_claim_sweeps_are_resumable_multiruns_of_named_arms(experiment, arms):
    cfg = _compose(f"+experiment={experiment}", hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params.arm == arms
    sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    # fixed folders, one per arm and named after it: a rerun finds them again
    assert "${now:" not in sweep["dir"] and sweep["subdir"] == "${hydra.runtime.choices.arm}"
    assert cfg.ckpt_path == "last" and cfg.skip_finished is True
    assert cfg.hydra.runtime.choices.arm == arms.split(",")[0]


# tiny sizes of the parts an arm may keep
_TINY = {"audio": ["model.audio_frontend.output_dim=8", "model.fusion.audio_dim=8"],
         "video": ["model.video_frontend.widths=[4,4,8,8]",
                   "model.video_frontend.stem_channels=4", "model.fusion.video_dim=8"]}


@pytest.mark.parametrize(("experiment", "arm"), [("claim_unified", "audio_only"),
                                                 ("claim_unified", "video_only"),
                                                 ("claim_dropout", "dropout")])
def test_every_parameter_of_an_arm_gets_a_gradient(experiment, arm):
    """DDP rejects parameters without a gradient (unless it searches for them every step):
    the single-stream arms must hold no front-end their stream never runs."""
    media = list(_composed(f"+experiment={experiment}", f"arm={arm}").data.modalities)
    cfg = _compose(f"+experiment={experiment}", f"arm={arm}",
                   *(o for m in media for o in _TINY[m]), "model.encoder.d_model=16",
                   "model.encoder.num_layers=1", "model.encoder.num_heads=2",
                   "model.encoder.ffn_dim=32", "model.decoder.num_layers=1",
                   "model.decoder.num_heads=2", "model.decoder.ffn_dim=32",
                   "model.fusion.p_modality=0.0")  # dropout's draw would make this random
    with open_dict(cfg):
        cfg.vocab_size = 12
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    objective = hydra.utils.instantiate(cfg.stage.objective)
    objective.bind_tokenizer(SimpleNamespace(blank_id=0, sos_id=1, eos_id=1))
    frames = 8
    batch = {"ids": ["a", "b"], "tokens": torch.tensor([[3, 4, 5], [6, 7, 0]]),
             "token_lengths": torch.tensor([3, 2]),
             "audio_lengths": torch.tensor([frames * 640] * 2),
             "video_lengths": torch.tensor([frames] * 2)}
    if "audio" in media:
        batch["audio"] = torch.randn(2, frames * 640)
    if "video" in media:
        batch["video"] = torch.randn(2, frames, 1, 16, 16)
    objective(model, batch)["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_skip_finished_returns_the_summary_before_any_work(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"global_step": 7}))
    # the corpus path does not exist: reading it, or anything else, would fail
    cfg = _compose("+experiment=claim_dropout", "data.corpus.root=/nonexistent")
    cfg.paths.output_dir = str(tmp_path)
    assert train(cfg) == {"global_step": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    # off unless asked for: ckpt_path=last with a larger max_steps trains a finished run on
    assert _composed("+experiment=synth_grid").skip_finished is False


def test_fit_wall_time_spans_resumed_attempts():
    timer = Timer()
    timer.load_state_dict({"time_elapsed": {"train": 600.0}})  # a resumed checkpoint's count
    assert _fit_wall_s(SimpleNamespace(callbacks=[timer]), attempt_s=2.0) >= 600.0
    assert _fit_wall_s(SimpleNamespace(callbacks=[]), attempt_s=2.0) == 2.0


@pytest.mark.slow
def test_rerun_skips_finished_arms_and_resumes_interrupted_ones(tiny_synth_root, tmp_path):
    """claim_dropout's multirun shrunk to 2 steps per arm, then the same command again."""
    sweep = tmp_path / "sweep"
    overrides = [o for o in tiny_overrides(tiny_synth_root, tmp_path)
                 if not o.startswith(("paths.output_dir=", "num_threads=", "eval.limit="))]
    cmd = [sys.executable, "-m", "avsr.train", "-m", "+experiment=claim_dropout", *overrides,
           "num_threads=1", "decode=greedy", "eval.limit=2", "trainer.max_steps=2",
           f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run() -> str:
        proc = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True,
                              text=True, timeout=600)
        return proc.stdout + proc.stderr

    run()
    runs = load_runs(sweep)
    # readable arm folders and report names, in the sweep's order
    assert [(r.name, r.path.name) for r in runs] == [("arm=stacking", "stacking"),
                                                     ("arm=dropout", "dropout")]
    assert all(r.steps == 2 and r.wer for r in runs)
    stacking, dropout = (sweep / "stacking", sweep / "dropout")
    kept = (stacking / "summary.json").read_bytes()
    kept_ckpt = (stacking / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    # the dropout arm cut off after its last checkpoint (during its evaluation, say)
    (dropout / "summary.json").unlink()
    timer = torch.load(dropout / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["callbacks"]["Timer"]["time_elapsed"]["train"]

    printed = run()
    assert "finished earlier" in printed
    assert (stacking / "summary.json").read_bytes() == kept  # never retrained
    assert (stacking / "checkpoints" / "last.ckpt").stat().st_mtime_ns == kept_ckpt
    resumed = json.loads((dropout / "summary.json").read_text())
    assert resumed["resumed_from"] == str(dropout / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 2 and resumed["eval"]
    assert resumed["fit_wall_s"] >= round(timer, 1)  # the first attempt's time is kept
