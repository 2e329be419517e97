"""Learning-rate schedules as ``LambdaLR`` factories (built by Hydra with ``_partial_``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_cosine"]


def warmup_cosine(optimizer: Optimizer, *, total_steps: int, warmup_steps: int = 0,
                  warmup_fraction: float | None = None, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up then cosine decay to ``min_lr_ratio`` × the peak rate, stepped per update.

    auto_avsr and USR both use this shape (linear warm-up, per-step cosine to 0).

    Args:
        optimizer: the optimiser whose groups' ``lr`` are the peak rates.
        total_steps: number of optimiser steps of the whole run.
        warmup_steps: linear warm-up steps (ignored when ``warmup_fraction`` is given).
        warmup_fraction: warm-up as a fraction of ``total_steps``.
        min_lr_ratio: final rate as a fraction of the peak.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_fraction is not None:
        warmup_steps = int(round(warmup_fraction * total_steps))
    warmup_steps = max(0, min(warmup_steps, total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
