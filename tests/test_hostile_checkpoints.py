"""Hostile checkpoints: every user-facing loading path refuses a pickle that would run code, and
every path that builds objects from a stored config refuses a target outside the allow-list.

The payload writes a marker file when unpickled; each test asserts the refusal names the file
and that the marker was never written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides, write_clip
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr.checkpoints import (
    UnsafeCheckpointError,
    UnsafeConfigError,
    check_stored_config,
    read_checkpoint,
)
from avsr.data.corpora import Utterance

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls ``os.system`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run(tiny_synth_root, tmp_path_factory) -> dict:
    """A real one-step run: its checkpoint, config and model state."""
    from avsr.train import train

    out = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "debug=fdr", "evaluate=false",
                                          *tiny_overrides(tiny_synth_root, out)])
    train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    return {"ckpt": ckpt, "checkpoint": torch.load(ckpt, weights_only=True), "root": tiny_synth_root}


@pytest.fixture()
def evil(run, tmp_path) -> tuple[Path, Path]:
    """The real checkpoint with a payload added beside its weights."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({**run["checkpoint"], "payload": _Payload(marker)}, path)
    return path, marker


def _clip(tmp_path: Path) -> Path:
    clip = tmp_path / "clip.mp4"
    write_clip(clip, num_frames=12)
    return clip


def _decode_cfg():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=["ckpt=x", "decode=greedy"]).decode


def _loading_paths(tmp_path: Path, run: dict):
    """Every user-facing way a file becomes weights: name -> callable(path)."""
    from avsr.average_checkpoints import average_checkpoints
    from avsr.evaluate import evaluate_checkpoint
    from avsr.export_frontend import export_frontend
    from avsr.lightning.finetune import apply_init
    from avsr.ssl.features import layer_features
    from avsr.train_lm import load_lm_checkpoint
    from avsr.transcribe import transcribe
    from avsr.utils.init_weights import load_init

    def evaluate(path):
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("evaluate", overrides=["ckpt=x", "eval.limit=1", "decode=greedy"])
        evaluate_checkpoint(path, cfg.eval, cfg.decode, tmp_path / "eval")

    def model():
        from avsr.checkpoints import load_run

        return load_run(run["ckpt"]).model

    utt = Utterance("u", str(_clip(tmp_path)), str(_clip(tmp_path)), "", None)
    return {
        "avsr.evaluate": evaluate,
        "avsr.transcribe": lambda p: transcribe(p, _clip(tmp_path), "video", _decode_cfg()),
        "avsr.average_checkpoints": lambda p: average_checkpoints([p, p], tmp_path / "avg.ckpt"),
        "avsr.export_frontend": lambda p: export_frontend(p, tmp_path / "front.pt"),
        "init_weights": lambda p: load_init(model().video_frontend, p, "model.video_frontend."),
        "stage.init": lambda p: apply_init(model(), [{"checkpoint": str(p),
                                                      "modules": ["encoder"]}]),
        "decode.lm_ckpt": load_lm_checkpoint,
        "ssl.features": lambda p: list(layer_features(p, [utt], layer=1)),
    }


def test_every_loading_path_refuses_a_code_payload(run, evil, tmp_path):
    path, marker = evil
    for name, load in _loading_paths(tmp_path, run).items():
        with pytest.raises(UnsafeCheckpointError, match=str(path)):
            load(path)
        assert not marker.exists(), f"{name} ran the payload"
    assert not (tmp_path / "avg.ckpt").exists() and not (tmp_path / "front.pt").exists()


def test_importers_read_foreign_pickles_as_inert_stubs(run, evil):
    from avsr.convert import import_checkpoint
    from avsr.checkpoints import load_run

    path, marker = evil
    with pytest.raises(Exception):  # noqa: B017 - not a USR checkpoint; what matters: no code
        import_checkpoint(load_run(run["ckpt"]).model, format="usr", path=str(path))
    loaded = read_checkpoint(path, foreign=True)
    assert type(loaded["payload"]).__name__ == "system"  # an inert record of posix.system
    assert not marker.exists()


def test_resume_refuses_a_code_payload(run, evil, tmp_path):
    """``ckpt_path=`` resume goes through Lightning's own loader."""
    path, marker = evil
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    overrides = ["+experiment=synth_grid", "debug=fdr", "evaluate=false",
                 *tiny_overrides(run["root"], tmp_path / "resume"), f"ckpt_path={path}",
                 f"hydra.run.dir={tmp_path / 'resume'}"]
    proc = subprocess.run([sys.executable, "-m", "avsr.train", *overrides], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode != 0 and "Weights only load failed" in proc.stderr
    assert not marker.exists()


def test_stored_config_cannot_name_a_loader(run, tmp_path):
    """A checkpoint that passes ``weights_only`` but whose config says
    ``model._target_: torch.load`` of a second, unsafe pickle."""
    marker = tmp_path / "PWNED"
    second = tmp_path / "second.pt"
    torch.save(_Payload(marker), second)
    checkpoint = dict(run["checkpoint"])
    config = dict(checkpoint["avsr_config"])
    config["model"] = {"_target_": "torch.load", "f": str(second), "weights_only": False}
    checkpoint["avsr_config"] = config
    path = tmp_path / "config_attack.ckpt"
    torch.save(checkpoint, path)
    lm_path = tmp_path / "lm.pt"
    torch.save({"lm_config": {"_target_": "torch.load", "f": str(second),
                              "weights_only": False}, "state_dict": {}}, lm_path)
    for name, load in _loading_paths(tmp_path, run).items():
        if name in ("avsr.average_checkpoints", "avsr.export_frontend", "init_weights",
                    "stage.init"):
            continue  # these read tensors only; nothing of the config is built
        target = lm_path if name == "decode.lm_ckpt" else path
        with pytest.raises(UnsafeConfigError, match="torch.load"):
            load(target)
        assert not marker.exists(), f"{name} ran the payload"


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "torch.load",
                                    "avsr.data.synthetic.generate_corpus",
                                    "avsr.evaluate.evaluate_checkpoint", "torch.nn.Module.apply",
                                    "subprocess.Popen", "avsr.models.nonexistent.Thing"])
def test_allow_list_refuses(target):
    with pytest.raises(UnsafeConfigError, match="refused"):
        check_stored_config({"model": {"encoder": {"_target_": target}}}, "x.ckpt")


def test_allow_list_accepts_every_model_and_data_config_of_the_recipes():
    """Every experiment's model and data node (what a run checkpoint stores) passes."""
    experiments = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))
    assert experiments
    for name in experiments:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=[f"+experiment={name}"])
        for node in ("model", "data"):
            check_stored_config(OmegaConf.to_container(cfg[node], resolve=False),
                                f"{name}: {node}")
