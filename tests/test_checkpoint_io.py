import math
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


def test_time_budgeted_cosine_follows_the_clock_and_resumes(monkeypatch):
    import avsr.lightning.schedulers as sched_mod

    clock = [100.0]
    monkeypatch.setattr(sched_mod.time, "monotonic", lambda: clock[0])

    def build():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, warmup_cosine(opt, total_steps=10_000, warmup_fraction=0.1,
                                  time_budget_s=100.0)

    opt, sched = build()
    lrs = []
    for _ in range(4):  # 25 s per step: the budget, not the 10,000 steps, sets the pace
        clock[0] += 25.0
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * (0.25 - 0.1) / 0.9)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # fully annealed at the budget
    state = sched.state_dict()

    # resumed in another process after a long pause: the pause is not training time
    monkeypatch.setattr(sched_mod, "_SESSION", "another-process")
    _, fresh = build()
    fresh.load_state_dict(state)
    clock[0] += 3600.0
    assert fresh.lr_lambdas[0](4) == pytest.approx(0.0, abs=1e-12)
    assert fresh.lr_lambdas[0].elapsed_s == pytest.approx(100.0)
