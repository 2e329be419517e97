"""EMA teacher: no gradient, follows the student with the scheduled momentum."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avsr.models.ema import EMATeacher, cosine_momentum


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
        self.decoder = nn.Linear(4, 2)


def test_teacher_gets_no_gradient_and_stays_in_eval():
    student = _Net()
    ema = EMATeacher(student, exclude=("decoder",))
    assert ema.model.decoder is None
    assert all(not p.requires_grad for p in ema.parameters())
    x = torch.randn(5, 3)
    loss = (student.body(x) - ema.model.body(x)).pow(2).sum()
    loss.backward()
    assert all(p.grad is None for p in ema.parameters())
    assert all(p.grad is not None for p in student.body.parameters())
    ema.train()
    assert not ema.model.training  # dropout off, BN running stats
    assert torch.equal(ema.model.body(x), ema.model.body(x))


def test_teacher_follows_its_momentum():
    student = _Net()
    ema = EMATeacher(student, exclude=("decoder",))
    t0 = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.body[1].running_mean.fill_(7.0)
    ema.update(student, 0.9)
    s = dict(student.named_parameters())
    for name, p in ema.model.named_parameters():
        expected = 0.9 * t0[name] + 0.1 * s[name].detach()
        torch.testing.assert_close(p, expected)
    assert torch.equal(ema.model.body[1].running_mean, torch.full((4,), 7.0))
    before = {k: v.clone() for k, v in ema.model.named_parameters()}
    ema.update(student, 1.0)  # momentum 1: frozen
    assert all(torch.equal(p, before[k]) for k, p in ema.model.named_parameters())


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.999)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.9995)
    assert cosine_momentum(25, 100) == pytest.approx(1 - 0.001 * (math.cos(math.pi / 4) + 1) / 2)
    values = [cosine_momentum(s, 100) for s in range(101)]
    assert values == sorted(values)
