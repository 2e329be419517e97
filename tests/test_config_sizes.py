"""Fusion and encoder input sizes follow the front-ends' output sizes (real Hydra composition)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr.utils.resolvers import frontend_dim

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[*overrides, "paths.output_dir=/tmp/x"])


def _build(node) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return hydra.utils.instantiate(node)
    except Exception:  # noqa: BLE001 - the filterbank computes its mel matrix at init
        return hydra.utils.instantiate(node)


FRONTENDS = [
    ("audio_frontend", "resnet18_1d", []),
    ("audio_frontend", "filterbank", ["model.audio_frontend.output_dim=96"]),
    ("audio_frontend", "wav2vec2", []),
    ("audio_frontend", "wav2vec2", ["model.audio_frontend.output_dim=null"]),
    ("audio_frontend", "wav2vec2", ["model.audio_frontend.rate=avg"]),
    ("audio_frontend", "wav2vec2", ["model.audio_frontend.rate=none"]),
    ("video_frontend", "resnet18", ["model.video_frontend.widths=[4,8,16,24]"]),
    ("video_frontend", "resnet50", []),
    ("video_frontend", "resnet50", ["model.video_frontend.block=basic",
                                    "model.video_frontend.layers=[1,1,1,1]"]),
]


@pytest.mark.parametrize(("group", "option", "extra"), FRONTENDS)
def test_frontend_dim_is_the_built_modules_output_dim(group, option, extra):
    cfg = _compose([f"model/{group}={option}", *extra])
    node = cfg.model[group]
    assert frontend_dim(node) == _build(node).output_dim
    side = "audio" if group == "audio_frontend" else "video"
    assert cfg.model.fusion[f"{side}_dim"] == frontend_dim(node)


def test_experiment_sizes_follow_a_front_end_override():
    cfg = _compose(["+experiment=synth_grid", "model.audio_frontend.output_dim=96",
                    "model.video_frontend.widths=[8,16,32,40]"])
    OmegaConf.resolve(cfg)
    assert (cfg.model.fusion.audio_dim, cfg.model.fusion.video_dim) == (96, 40)
    fusion = hydra.utils.instantiate(cfg.model.fusion)
    assert fusion.post_extract_proj.in_features == 96 + 40


def test_modality_encoder_sizes_follow_front_ends_and_encoders():
    cfg = _compose(["model/fusion=modality_encoders_mlp", "model/encoder=identity",
                    "model.video_frontend.widths=[4,8,16,24]"])
    OmegaConf.resolve(cfg)
    fusion = cfg.model.fusion
    assert fusion.video_encoder.input_dim == 24 and fusion.audio_encoder.input_dim == 512
    assert fusion.fusion.video_dim == fusion.video_encoder.d_model == cfg.model.encoder.d_model


def test_absent_and_unknown_front_ends():
    cfg = _compose(["+experiment=lrw_resnet18"])
    assert cfg.model.audio_frontend is None and cfg.model.fusion.audio_dim == 512
    assert frontend_dim(None, 256) == 256
    with pytest.raises(ValueError, match="cannot tell the output size of front-end 'my.Stem'"):
        frontend_dim(OmegaConf.create({"_target_": "my.Stem", "channels": 3}))
