import os

import pytest
import torch

from avsr.lightning.schedulers import warmup_cosine
from avsr.utils.checkpoint import atomic_torch_save


def test_atomic_save_roundtrip_and_no_leftovers(tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    atomic_torch_save({"a": torch.arange(3)}, path)
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_atomic_save_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_torch_save({"v": 2, "bad": Unpicklable()}, path)
    assert torch.load(path)["v"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_warmup_cosine_shape():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[9:], lrs[10:]))
    with pytest.raises(ValueError):
        warmup_cosine(opt, total_steps=0)
