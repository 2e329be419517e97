"""Averaging the last N checkpoints of a run."""

from __future__ import annotations

import pytest
import torch

from avsr.average_checkpoints import average_state_dicts, main


def _ckpt(path, step: int, value: float) -> None:
    state = {"model.w": torch.full((2, 3), value), "model.bn.num_batches_tracked":
             torch.tensor(step), "model.h": torch.full((1,), value, dtype=torch.float16)}
    torch.save({"global_step": step, "state_dict": state, "avsr_config": {"x": 1},
                "optimizer_states": [{}]}, path)


def test_average_last_n_by_step(tmp_path):
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()
    for step, value in [(10, 1.0), (30, 3.0), (20, 2.0), (40, 6.0)]:
        _ckpt(ckdir / f"step{step}.ckpt", step, value)
    _ckpt(ckdir / "last.ckpt", 40, 6.0)  # same step as step40: counted once
    report = main(["--dir", str(ckdir), "--last", "3", "--out", str(tmp_path / "avg.ckpt")])
    assert report["steps"] == [20, 30, 40]
    avg = torch.load(tmp_path / "avg.ckpt", weights_only=True)
    assert torch.equal(avg["state_dict"]["model.w"], torch.full((2, 3), 11.0 / 3))
    assert avg["state_dict"]["model.h"].dtype == torch.float16
    assert int(avg["state_dict"]["model.bn.num_batches_tracked"]) == 40  # from the newest
    assert avg["avsr_config"] == {"x": 1} and "optimizer_states" not in avg


def test_average_rejects_mismatched_states():
    with pytest.raises(ValueError, match="different keys"):
        average_state_dicts([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([{"a": torch.zeros(1)}, {"a": torch.zeros(2)}])
