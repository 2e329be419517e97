"""Pre-training, fine-tuning and semi-supervised stages: real tiny Trainer runs that resume
from their checkpoints, and a pre-training checkpoint loading into fine-tuning with the
pre-trained parts frozen for the configured updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir

from avsr.data.io import load_video
from avsr.ssl.kmeans import ensure_labels
from avsr.ssl.labels import read_labels
from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
COMMON = ["evaluate=false", "trainer.max_epochs=100", "trainer.max_time=null",
          "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
          "trainer.log_every_n_steps=1"]
PRETRAINED = ("audio_frontend", "video_frontend", "fusion", "encoder")


def _cfg(root: Path, out: Path, *extra: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*COMMON, *extra, *tiny_overrides(root, out)])


class _StartStep(pl.Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step


def _run_and_resume(root: Path, out: Path, *extra: str) -> dict:
    """Train 2 steps, resume to 3 from last.ckpt; returns the final checkpoint."""
    assert train(_cfg(root, out, *extra, "trainer.max_steps=2"))["global_step"] == 2
    last = out / "checkpoints" / "last.ckpt"
    probe = _StartStep()
    summary = train(_cfg(root, out, *extra, "trainer.max_steps=3", f"ckpt_path={last}"),
                    extra_callbacks=[probe])
    assert probe.start_step == 2 and summary["global_step"] == 3
    return torch.load(last, map_location="cpu", weights_only=True)


def _part(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def braven_run(tiny_synth_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("braven")
    ckpt = _run_and_resume(tiny_synth_root, out, "+experiment=synth_low_braven")
    return out / "checkpoints" / "last.ckpt", ckpt


def test_braven_pretrain_resumes_with_its_teacher(braven_run):
    path, ckpt = braven_run
    assert ckpt["global_step"] == 3
    state = ckpt["state_dict"]
    student = _part(state, "model.encoder.")
    teacher = _part(state, "objective.teacher.model.encoder.")
    assert student.keys() == teacher.keys()
    # the teacher is an EMA (0.999 -> 1): close to the student but not equal to it
    diff = max((student[k] - teacher[k]).abs().max().item() for k in student)
    assert 0 < diff < 0.1
    assert not any(k.startswith("objective.teacher.model.decoder") for k in state)
    assert any(k.startswith("objective.predictor.") for k in state)


def test_pretrain_checkpoint_loads_into_finetuning_frozen_then_trained(
        braven_run, tiny_synth_root, tmp_path):
    path, ckpt = braven_run
    pre = ckpt["state_dict"]
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class _Snap(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snapshots[trainer.global_step] = {
                k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
            if trainer.global_step < 2:  # FreezeSchedule (registered first) froze them
                assert not any(p.requires_grad for p in pl_module.model.encoder.parameters())
                assert all(p.requires_grad for p in pl_module.model.decoder.parameters())

    summary = train(_cfg(tiny_synth_root, tmp_path, "+experiment=synth_low_finetune",
                         f"init.0.path={path}", "callbacks.freeze_pretrained.steps=2",
                         "trainer.max_steps=3"), extra_callbacks=[_Snap()])
    assert summary["global_step"] == 3
    start, after2 = snapshots[0], snapshots[2]
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    for k, v in start.items():
        top = k.split(".")[0]
        if top in PRETRAINED and v.is_floating_point():
            assert torch.equal(v, pre[f"model.{k}"]), k  # loaded from the pre-training run
            if "running_" not in k:
                assert torch.equal(after2[k], v), k  # frozen for 2 updates
    changed = [k for k in start if k.startswith("encoder.") and start[k].is_floating_point()
               and not torch.equal(final[f"model.{k}"], start[k])]
    assert changed  # then trained
    dec = [k for k in start if k.startswith("decoder.")]
    assert any(not torch.equal(after2[k], start[k]) for k in dec)  # never frozen


def test_layer_kmeans_labels_at_25_hz(braven_run, tiny_synth_root, tmp_path):
    path, _ = braven_run
    meta = ensure_labels(str(tiny_synth_root), str(tmp_path / "km"), feature="layer",
                         num_clusters=8, fit_fraction=0.5, ckpt=str(path), layer=1,
                         splits=("val",))
    assert meta["label_rate"] == 25 and meta["utterances"] == {"val": 6}
    for line in (tiny_synth_root / "val_ids.txt").read_text().split():
        labels = read_labels(tmp_path / "km", line)
        assert len(labels) == load_video(tiny_synth_root / f"{line}.mp4").shape[0]
        assert all(0 <= x < 8 for x in labels)


@pytest.mark.slow
def test_avhubert_pretrain_resumes(tiny_synth_root, tmp_path):
    ckpt = _run_and_resume(tiny_synth_root, tmp_path, "+experiment=synth_low_avhubert",
                           "ssl_labels.num_clusters=12", "stage.objective.level=input")
    state = ckpt["state_dict"]
    assert state["objective.head.embeddings"].shape[0] == 12
    assert "objective.audio_mask_emb" in state


@pytest.mark.slow
def test_semi_resumes_from_pretraining(braven_run, tiny_synth_root, tmp_path):
    path, pre = braven_run
    ckpt = _run_and_resume(tiny_synth_root, tmp_path, "+experiment=synth_low_semi",
                           f"init.0.path={path}")
    state = ckpt["state_dict"]
    for m in ("audio", "video", "audiovisual"):
        assert (f"objective.ctc_heads.{m}.weight" in state
                and f"objective.att_heads.{m}.weight" in state)
    # whole-model teacher
    assert any(k.startswith("objective.teacher.model.decoder.") for k in state)
    assert not any(k.startswith("objective.labelled.") for k in state)  # weights stored once
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # both samplers' states


class _HeadsProbe(pl.Callback):
    """Per step: were the pseudo-labels decoded, and did the heads equal the output layers
    just before the update?"""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[bool, bool]] = {}

    def on_after_backward(self, trainer, pl_module) -> None:
        same = torch.equal(pl_module.objective.att_heads["video"].weight,
                           pl_module.model.decoder.output_projection.weight)
        self.steps[trainer.global_step] = (same, False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1
        same, _ = self.steps[step]
        self.steps[step] = (same, "train/pseudo_att_kept" in trainer.logged_metrics)


@pytest.mark.slow
def test_semi_labelled_warmup_then_pseudo_labels_with_copied_heads(
        braven_run, tiny_synth_root, tmp_path):
    path, _ = braven_run
    probe = _HeadsProbe()
    summary = train(_cfg(tiny_synth_root, tmp_path, "+experiment=synth_low_semi",
                         f"init.0.path={path}", "trainer.max_steps=3",
                         "stage.objective.unlabelled_start_step=1",
                         "stage.objective.heads_from_model=true"),
                    extra_callbacks=[probe])
    assert summary["global_step"] == 3
    # step 0: labelled only, random heads; step 1: heads copied, teacher labels decoded
    assert probe.steps[0] == (False, False)
    assert probe.steps[1] == (True, True)
    assert probe.steps[2][1] and not probe.steps[2][0]  # the heads then train on their own
