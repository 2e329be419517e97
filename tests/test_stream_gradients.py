"""benchmarks/stream_gradients.py: per-stream gradients by model part and their cosines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

spec = importlib.util.spec_from_file_location(
    "stream_gradients", Path(__file__).resolve().parents[1] / "benchmarks" / "stream_gradients.py")
sg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sg)


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.audio_frontend = nn.Linear(3, 4)
        self.video_frontend = nn.Linear(3, 4)
        self.encoder = nn.Linear(4, 2)


class _Objective:
    """Two streams sharing the encoder, each with its own front-end."""

    def stream_losses(self, model, batch):
        a = model.encoder(model.audio_frontend(batch["x"])).pow(2).sum()
        v = model.encoder(model.video_frontend(batch["x"])).sum()
        return {"audio": {"loss": a}, "video": {"loss": v}}, {}


def test_gradients_by_part_equal_autograd_and_cosines_are_right() -> None:
    model, obj = _Model(), _Objective()
    batches = [{"x": torch.randn(5, 3, generator=torch.Generator().manual_seed(i))}
               for i in range(3)]
    grads = [sg.stream_gradients(model, obj, b) for b in batches]
    assert set(grads[0]["audio"]) == {"audio_frontend", "encoder"}  # no video front-end
    parts, _ = obj.stream_losses(model, batches[0])
    want = torch.autograd.grad(parts["video"]["loss"], list(model.encoder.parameters()))
    assert torch.allclose(grads[0]["video"]["encoder"], torch.cat([w.reshape(-1) for w in want]))
    out = sg.summarise(grads)
    assert out["batches"] == 3 and set(out["cosine_mean_over_batches"]) == {"encoder/audio~video"}
    cos = [torch.nn.functional.cosine_similarity(g["audio"]["encoder"], g["video"]["encoder"],
                                                 dim=0).item() for g in grads]
    assert out["cosine_mean_over_batches"]["encoder/audio~video"] == pytest.approx(sum(cos) / 3)
    assert out["cosine_min_over_batches"]["encoder/audio~video"] == pytest.approx(min(cos))
    summed = [sum(g[m]["encoder"] for g in grads) for m in ("audio", "video")]
    assert out["cosine_of_summed_gradients"]["encoder/audio~video"] == pytest.approx(
        torch.nn.functional.cosine_similarity(*summed, dim=0).item())
    assert out["grad_norm_mean"]["audio_frontend/audio"] > 0
