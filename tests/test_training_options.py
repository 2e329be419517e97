"""Speed and logging options of training: bf16 autocast with float32 losses, activation
checkpointing, torch.compile, gradient accumulation, and the same metric names in the CSV,
TensorBoard and wandb (offline) loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from test_faults import _batch, _task

from avsr.lightning.callbacks import PerformanceOptions
from avsr.utils.activation_checkpointing import enable_activation_checkpointing

REPO = Path(__file__).resolve().parents[1]
SPEED_METRICS = {"train/loss", "train/lr", "train/utterances_per_s", "train/frames_per_s",
                 "train/peak_memory_mb"}


def _losses(task, batch):
    """The supervised objective's (loss, logged parts, per-stream outputs) of one batch."""
    parts, out = task.objective.stream_losses(task.model, batch)
    loss, logs = task.objective.combine(parts)
    return loss, logs, out


def _grads(task, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    task.zero_grad()
    loss, _, _ = _losses(task, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters()
                           if p.grad is not None}


def test_bf16_autocast_keeps_ctc_and_softmax_in_float32():
    task = _task(10)
    batch = _batch(0)
    ref, _, _ = _losses(task, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs, out = _losses(task, batch)
        assert out["audio"].enc.dtype == torch.bfloat16  # the matrix products ran in bf16
    assert out["audio"].ctc_log_probs.dtype == torch.float32
    assert loss.dtype == torch.float32 and logs["loss_ctc_audio"].dtype == torch.float32
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=0.05)


def test_bf16_mixed_trainer_step_on_cpu():
    task = _task(10)
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(task, torch.utils.data.DataLoader([_batch(0), _batch(1)], batch_size=None))
    assert trainer.global_step == 2 and task.nonfinite_guard.total == 0
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in task.parameters())


def test_activation_checkpointing_gives_the_same_gradients_and_names():
    task = _task(10)
    for m in task.modules():  # dropout on: the recomputation must replay the same masks
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.2
    batch = _batch(0)
    names = list(task.state_dict())
    torch.manual_seed(1)
    ref_loss, ref = _grads(task, batch)
    done = enable_activation_checkpointing(task, ["model.encoder.layers", "model.decoder.layers"])
    assert done and all(n.startswith(("model.encoder.layers.", "model.decoder.layers."))
                        for n in done)
    assert list(task.state_dict()) == names
    torch.manual_seed(1)
    loss, grads = _grads(task, batch)
    assert loss.item() == ref_loss.item()
    for n in ref:
        torch.testing.assert_close(grads[n], ref[n], atol=1e-6, rtol=1e-5)


def test_activation_checkpointing_rejects_unknown_names():
    task = _task(10)
    with pytest.raises(ValueError,
                       match=r"no submodule 'model.encoder.layerz'.*model.encoder.layers"):
        enable_activation_checkpointing(task, ["model.encoder.layerz"])


@pytest.mark.parametrize("experiment,encoder", [
    *[("synth_grid", e) for e in ("transformer", "transformer_relpos", "transformer_convpos",
                                  "conformer", "conformer_relpos")],
    ("synth_words", "tcn")])
def test_activation_checkpointing_reaches_every_encoder(experiment, encoder):
    """``model.encoder.layers`` names the block stack of every encoder config, including the
    relative-position ones (ESPnet's ``encoders`` keys) that the USR and auto_avsr recipes use."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}",
                                          f"model/encoder={encoder}", "vocab_size=12"])
    model = hydra.utils.instantiate(cfg.model)
    holder = torch.nn.Module()
    holder.model = model
    done = enable_activation_checkpointing(holder, ["model.encoder.layers"])
    stack = holder.get_submodule("model.encoder.layers")
    assert len(done) == len(stack) > 0
    assert all(getattr(layer, "_avsr_checkpointed", False) for layer in stack)


@pytest.mark.slow
def test_compile_option_matches_eager():
    task = _task(10)
    task.eval()
    batch = _batch(0)
    ref, _, _ = _losses(task, batch)
    options = PerformanceOptions(compile=True, compile_kwargs={"backend": "aot_eager",
                                                               "dynamic": True})

    class _T:  # the trainer attributes setup() reads
        strategy = type("S", (), {"root_device": torch.device("cpu")})()

    options.setup(_T(), task, "fit")
    loss, _, _ = _losses(task, batch)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert "model.encoder._orig_mod" not in dict(task.named_modules())  # names unchanged


@pytest.mark.slow
def test_loggers_share_metric_names_and_accumulation_halves_updates(tiny_synth_root, tmp_path):
    from avsr.train import train

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_grid", "evaluate=false", "logger=[tensorboard,wandb]",
            "trainer.max_steps=3", "trainer.max_time=null", "trainer.log_every_n_steps=1",
            "trainer.accumulate_grad_batches=2", *tiny_overrides(tiny_synth_root, tmp_path)])
    summary = train(cfg)
    assert summary["global_step"] == 3

    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        csv_names = set(csv.DictReader(f).fieldnames or [])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tb_names = set(events.Tags()["scalars"])
    for names in (csv_names, tb_names):
        assert SPEED_METRICS <= names, SPEED_METRICS - names
    train_names = {n for n in csv_names if n.startswith("train/")}
    assert train_names <= tb_names
    # wandb offline keeps its records in a binary log; history keys are stored verbatim
    raw = next(tmp_path.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert [n for n in train_names if n.encode() not in raw] == []

    # 3 updates of 2 micro-batches: the loader handed out 6 batches, the LR schedule 3 steps
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["callbacks"]["ExactResume"]["train_loader"]["position"] == 6
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 3


def test_speed_monitor_counts_nested_batches():
    # the semi-supervised stage's batch is {"labelled": ..., "unlabelled": ...}: both count
    from avsr.lightning.callbacks.speed_monitor import batch_counts

    lab = {"ids": ["a", "b"], "video_lengths": torch.tensor([10, 20]),
           "audio_lengths": torch.tensor([6400, 12800])}
    unl = {"ids": ["c"], "video_lengths": torch.tensor([5]), "audio_lengths": None}
    assert batch_counts(lab) == (2, 30)
    assert batch_counts({"labelled": lab, "unlabelled": unl}) == (3, 35)
    assert batch_counts({"labelled": lab, "unlabelled": {"ids": []}}) == (2, 30)
