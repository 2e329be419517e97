import torch
from hydra import compose, initialize_config_dir

import avsr  # noqa: F401  registers the resolvers
from avsr.utils.resolvers import cpu_precision
from test_configs import CONFIGS


def test_cpu_precision_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert cpu_precision("bf16-mixed", "32-true") == "bf16-mixed"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert cpu_precision("bf16-mixed", "32-true") == "32-true"


def test_synth_grid_precision_resolves():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid"])
    assert cfg.trainer.precision in ("bf16-mixed", "32-true")
