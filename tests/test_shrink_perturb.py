"""Shrink and perturb in the weight-source spec (Ash & Adams, NeurIPS 2020): each loaded
parameter becomes ``shrink * loaded + perturb * fresh``; buffers load as they are."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from torch import nn

from avsr.checkpoints.weights import WeightSource, apply_init, load_weights

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


class _Tiny(nn.Module):
    """A parameter, a buffer and a tied weight: what shrink and perturb must tell apart."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.embed = nn.Embedding(5, 4)
        self.out = nn.Linear(4, 5, bias=False)
        self.out.weight = self.embed.weight


def _pair(tmp_path: Path) -> tuple[dict[str, torch.Tensor], _Tiny, dict[str, torch.Tensor], Path]:
    torch.manual_seed(0)
    source = _Tiny()
    with torch.no_grad():
        source.encoder[1].running_var.fill_(3.0)  # a buffer that differs from the fresh one
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    torch.manual_seed(1)
    target = _Tiny()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    return source.state_dict(), target, fresh, path


def test_loaded_parameters_are_shrunk_and_perturbed_exactly(tmp_path):
    loaded, target, fresh, path = _pair(tmp_path)
    # powers of two: both products are exact, so the sum is one rounding whatever the order
    report = load_weights(target, {"path": str(path), "shrink": 0.5, "perturb": 0.25})
    state = target.state_dict()
    for key in ("encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "embed.weight"):
        assert torch.equal(state[key], 0.5 * loaded[key] + 0.25 * fresh[key]), key
    # the tied output weight is the same tensor, changed once (not shrunk twice)
    assert target.out.weight is target.embed.weight
    assert "out.weight" in report["loaded"]
    # buffers are statistics of activations: loaded as stored
    for key in ("encoder.1.running_mean", "encoder.1.running_var",
                "encoder.1.num_batches_tracked"):
        assert torch.equal(state[key], loaded[key]), key


def test_only_the_chosen_parts_blend(tmp_path):
    loaded, target, fresh, path = _pair(tmp_path)
    load_weights(target, {"path": str(path), "modules": ["encoder"], "shrink": 0.5})
    state = target.state_dict()
    assert torch.equal(state["encoder.0.weight"], 0.5 * loaded["encoder.0.weight"])
    assert torch.equal(state["embed.weight"], fresh["embed.weight"])  # not loaded: untouched


def test_defaults_load_bit_identically(tmp_path):
    loaded, target, _, path = _pair(tmp_path)
    load_weights(target, {"path": str(path), "shrink": 1.0, "perturb": 0.0})
    for key, value in target.state_dict().items():
        assert torch.equal(value, loaded[key]), key


@pytest.mark.parametrize("key, value, bounds", [
    ("shrink", 0.0, r"\(0, 1\]"), ("shrink", 1.5, r"\(0, 1\]"), ("shrink", "half", r"\(0, 1\]"),
    ("perturb", -0.1, r"\[0, 1\]"), ("perturb", float("nan"), r"\[0, 1\]"),
    ("perturb", True, r"\[0, 1\]"),
])
def test_out_of_range_factors_name_the_entry(key, value, bounds):
    with pytest.raises(ValueError, match=rf"init.2: {key} must be a number in {bounds}"):
        WeightSource.from_config({"path": "x", key: value}, "init.2")


def test_through_the_init_list_of_a_real_run_config(tmp_path):
    """synth_low_finetune's init entry with init.0.shrink / init.0.perturb from the command
    line, applied as avsr.train applies it."""
    torch.manual_seed(3)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_low_finetune", "vocab_size=10",
                                          f"init.0.path={tmp_path / 'pre.ckpt'}",
                                          "init.0.shrink=0.5", "init.0.perturb=0.125",
                                          *tiny_overrides(tmp_path, tmp_path)])
    pre = hydra.utils.instantiate(cfg.model)
    torch.save({"state_dict": {f"model.{k}": v for k, v in pre.state_dict().items()}},
               tmp_path / "pre.ckpt")
    model = hydra.utils.instantiate(cfg.model)
    fresh = {k: p.detach().clone() for k, p in model.named_parameters()}
    from omegaconf import OmegaConf

    apply_init(model, OmegaConf.to_container(cfg.init, resolve=True))
    src = pre.state_dict()
    for key, param in model.named_parameters():
        if key.startswith(("audio_frontend.", "video_frontend.", "fusion.", "encoder.")):
            assert torch.equal(param, 0.5 * src[key] + 0.125 * fresh[key]), key
        else:  # the decoder and the CTC head start fresh
            assert torch.equal(param, fresh[key]), key
