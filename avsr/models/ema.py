"""Exponential-moving-average teacher (BYOL, Grill et al., NeurIPS 2020; data2vec; RAVEn /
BRAVEn and USR, Haliassos et al.).

The teacher is a frozen deep copy of the student (optionally without some sub-modules, e.g.
the decoder for an encoder-only teacher) that follows it by ``θ_t ← m θ_t + (1 − m) θ_s``
after every optimiser step, with the momentum ``m`` rising from 0.999 to 1 on a cosine
schedule (USR). It always runs in eval mode (no dropout, BatchNorm uses its running
statistics, which are copied from the student) and never receives gradients.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["EMATeacher", "cosine_momentum"]


def cosine_momentum(step: int, total_steps: int, start: float = 0.999, end: float = 1.0
                    ) -> float:
    """``end − (end − start) · (cos(π · step / total) + 1) / 2``: start at 0, end at total.
    """
    if total_steps <= 0:
        return end
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATeacher(nn.Module):
    """A frozen EMA copy of a module.

    Args:
        student: the module to copy (its current weights become the teacher's).
        exclude: names of top-level sub-modules set to ``None`` in the copy (the copied
            class must accept that, as ``AVSRModel`` does for ``decoder`` and ``ctc``).

    Attributes:
        model: the teacher module (parameters with ``requires_grad=False``).
    """

    def __init__(self, student: nn.Module, exclude: Sequence[str] = ()) -> None:
        super().__init__()
        teacher = copy.deepcopy(student)
        for name in exclude:
            if not hasattr(teacher, name):
                raise ValueError(f"{type(student).__name__} has no sub-module {name!r}")
            setattr(teacher, name, None)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.model = teacher.eval()

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher stays in eval mode whatever the parent's mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """``θ_t ← m θ_t + (1 − m) θ_s`` for every teacher parameter; buffers are copied.

        Args:
            student: the module the teacher was copied from (same parameter names).
            momentum: m in [0, 1]; 1 leaves the teacher unchanged, 0 copies the student.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        params = dict(student.named_parameters())
        for name, t in self.model.named_parameters():
            s = params[name].detach()
            if momentum == 1.0:
                continue
            t.mul_(momentum).add_(s.to(t.dtype), alpha=1.0 - momentum)
        buffers = dict(student.named_buffers())
        for name, t in self.model.named_buffers():
            if name in buffers:
                t.copy_(buffers[name])

    def forward(self, *args, **kwargs):
        """Runs the teacher without gradients."""
        with torch.no_grad():
            return self.model(*args, **kwargs)
