"""The one training task over objectives, and the run-level init list of weight sources."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from avsr.checkpoints import load_run
from avsr.checkpoints.weights import WeightSource, apply_init, load_weights
from avsr.lightning.task import TrainTask
from avsr.models.avsr_model import AVSRModel
from avsr.models.ctc import CTCHead
from avsr.models.decoder import TransformerDecoder
from avsr.models.encoder import TransformerEncoder
from avsr.models.frontends.filterbank import FilterbankFrontend
from avsr.models.frontends.video_resnet import VideoResNet
from avsr.models.fusion import ConcatFusion
from avsr.models.word_backend import WordHead
from avsr.objectives.base import Objective
from avsr.objectives.braven import BRAVEnObjective
from avsr.objectives.word import WordClassificationObjective
from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _model(seed: int = 0) -> AVSRModel:
    torch.manual_seed(seed)
    return AVSRModel(FilterbankFrontend(output_dim=8),
                     VideoResNet(widths=[4, 4, 8, 8], stem_channels=4),
                     ConcatFusion(audio_dim=8, video_dim=8, output_dim=16),
                     TransformerEncoder(16, 2, 2, 32), TransformerDecoder(10, 16, 1, 2, 32),
                     CTCHead(16, 10))


_ADAM = functools.partial(torch.optim.Adam, lr=1e-3)


# ---------------------------------------------------------------------------- the task
def test_objective_frozen_parts_get_no_gradient():
    task = TrainTask(model=_model(), objective=BRAVEnObjective(), optimizer=_ADAM)
    assert not any(p.requires_grad for p in task.model.decoder.parameters())
    assert not any(p.requires_grad for p in task.model.ctc.parameters())
    assert all(p.requires_grad for p in task.model.encoder.parameters())


class _Counting(Objective):
    """Learns a scalar; says "nothing to learn" on odd batches; counts its hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.modalities = ("audio",)
        self.starts: list[int] = []
        self.teacher_steps: list[int] = []

    def start_step(self, model, step):
        self.starts.append(step)

    def forward(self, model, batch, generator=None):
        if batch["skip"]:
            return {"loss": None}
        return {"loss": (self.w - batch["target"]) ** 2, "part": self.w.detach()}

    def update_teacher(self, model, step, total_steps):
        self.teacher_steps.append(step)
        return 0.5


def test_task_skips_empty_batches_and_nothing_to_learn_and_moves_the_teacher():
    objective = _Counting()
    task = TrainTask(model=torch.nn.Linear(1, 1), objective=objective,
                     optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    batches = [{"ids": ["a"], "skip": False, "target": torch.tensor(0.0)},
               {"ids": [], "skip": False, "target": torch.tensor(0.0)},   # every item unreadable
               {"ids": ["b"], "skip": True, "target": torch.tensor(0.0)},  # nothing to learn
               {"ids": ["c"], "skip": False, "target": torch.tensor(0.0)}]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    # two updates of w <- w - 0.1 * 2 (w - 0): 1 -> 0.8 -> 0.64
    assert float(objective.w.detach()) == pytest.approx(0.64)
    assert objective.starts == [0, 2, 3]  # not called for the empty batch
    assert len(objective.teacher_steps) == 4 and float(trainer.callback_metrics[
        "train/ema_momentum"]) == 0.5


def test_checkpoints_of_the_former_per_stage_tasks_load():
    head = WordHead(16, 5)
    objective = WordClassificationObjective(head=head, use_boundary=True)
    task = TrainTask(model=_model(), objective=objective, optimizer=_ADAM)
    state = task.state_dict()
    # the word-classification task kept its head and boundary on itself
    old = {k.replace("objective.", "", 1) if k.startswith("objective.") else k: v.clone() + 1
           for k, v in state.items()}
    checkpoint = {"state_dict": dict(old)}
    task.on_load_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == set(state)
    task.load_state_dict(checkpoint["state_dict"])
    torch.testing.assert_close(task.objective.head.mlp[-1].weight, old["head.mlp.1.weight"])
    torch.testing.assert_close(task.objective.boundary.weight, old["boundary.weight"])


# ---------------------------------------------------------------------------- weight sources
@pytest.mark.parametrize("spec, message", [
    ({"path": "x", "checkpoint": "y"}, r"unknown keys \['checkpoint'\]"),
    ({"format": "avsr"}, "no path"),
    ({"path": "x", "format": "fairseq"}, "is not one of"),
    ({"path": "x", "format": "usr", "modules": ["encoder"]}, "keep_init"),
    ({"path": "x", "format": "avsr", "target": "encoder"}, "use modules"),
    ({"path": "x", "format": "weights", "modules": ["encoder"]}, "use target"),
])
def test_weight_source_spec_errors_name_the_entry(spec, message):
    with pytest.raises(ValueError, match=message):
        WeightSource.from_config(spec, "init.3")
    with pytest.raises(ValueError, match="init.0"):
        apply_init(_model(), [spec] if spec.get("path") else [{**spec, "path": "x",
                                                                "bogus": 1}])


def _run_checkpoint(path: Path, model: AVSRModel) -> None:
    teacher = _model(seed=7)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"objective.teacher.model.{k}": v for k, v in teacher.state_dict().items()
                  if not k.startswith(("decoder.", "ctc."))})
    torch.save({"state_dict": state}, path)


def test_avsr_source_fills_chosen_parts_from_student_or_teacher(tmp_path):
    source, path = _model(seed=1), tmp_path / "run.ckpt"
    _run_checkpoint(path, source)
    target = _model(seed=2)
    decoder_before = {k: v.clone() for k, v in target.decoder.state_dict().items()}
    reports = apply_init(target, [{"path": None},  # a recipe's placeholder: skipped
                                  {"path": str(path), "modules": ["encoder", "fusion"]}])
    assert len(reports) == 1 and all(k.startswith(("encoder.", "fusion."))
                                     for k in reports[0]["loaded"])
    for k, v in target.encoder.state_dict().items():
        torch.testing.assert_close(v, source.encoder.state_dict()[k])
    for k, v in target.decoder.state_dict().items():
        torch.testing.assert_close(v, decoder_before[k])  # not asked for: untouched
    load_weights(target, {"path": str(path), "prefix": "objective.teacher.model.",
                          "modules": ["encoder"]})
    teacher = _model(seed=7).encoder.state_dict()
    for k, v in target.encoder.state_dict().items():
        torch.testing.assert_close(v, teacher[k])
    # the teacher has no decoder: strict loading names what is missing
    with pytest.raises(ValueError, match="missing or mis-shaped"):
        load_weights(target, {"path": str(path), "prefix": "objective.teacher.model.",
                              "modules": ["decoder"]})
    with pytest.raises(ValueError, match="no part 'nope'"):
        load_weights(target, {"path": str(path), "modules": ["nope"]})


def test_weights_source_into_a_submodule(tmp_path):
    source = _model(seed=3)
    torch.save(source.video_frontend.state_dict(), tmp_path / "front.pt")
    target = _model(seed=4)
    report = load_weights(target, {"path": str(tmp_path / "front.pt"), "format": "weights",
                                   "target": "video_frontend"})
    assert report["missing"] == [] and report["unexpected"] == []
    for k, v in target.video_frontend.state_dict().items():
        torch.testing.assert_close(v, source.video_frontend.state_dict()[k])


def test_load_run_parts_of_an_encoder_side_teacher(tmp_path):
    """The EMA teacher of pre-training holds no decoder: its encoder side loads alone."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "vocab_size=10",
                                          *tiny_overrides(tmp_path, tmp_path)])
    import hydra
    from omegaconf import OmegaConf

    model = hydra.utils.instantiate(cfg.model)
    teacher = {f"objective.teacher.model.{k}": v + 1 for k, v in model.state_dict().items()
               if not k.startswith(("decoder.", "ctc."))}
    torch.save({"avsr_config": OmegaConf.to_container(cfg, resolve=True),
                "state_dict": {**{f"model.{k}": v for k, v in model.state_dict().items()},
                               **teacher}}, tmp_path / "pre.ckpt")
    with pytest.raises(ValueError, match="does not match"):
        load_run(tmp_path / "pre.ckpt", source="objective.teacher.model")
    run = load_run(tmp_path / "pre.ckpt", source="objective.teacher.model",
                   parts=("audio_frontend", "video_frontend", "fusion", "encoder"))
    key = next(k for k in run.model.state_dict() if k.startswith("encoder."))
    torch.testing.assert_close(run.model.state_dict()[key],
                               teacher[f"objective.teacher.model.{key}"])


@pytest.mark.parametrize("override, new", [
    ("+init_from={format: usr, path: x.pth}", "init=\\[\\{format: FORMAT"),
    ("+init_weights.video_frontend.path=f.pt", "format: weights"),
    ("+stage.init=[{checkpoint: c.ckpt}]", "modules"),
])
def test_the_replaced_weight_keys_are_errors_not_silent(override, new, tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", override,
                                          *tiny_overrides(tmp_path, tmp_path)])
    with pytest.raises(ValueError, match=new):
        train(cfg)
