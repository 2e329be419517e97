"""Learning-rate schedules as ``LambdaLR`` factories (built by Hydra with ``_partial_``)."""

from __future__ import annotations

import math
import time
import uuid

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_cosine"]

# Identifies this process: a schedule restored from a checkpoint written by another process
# must not count the time between the two runs as training time.
_SESSION = uuid.uuid4().hex


class _WarmupCosine:
    """The factor of :func:`warmup_cosine`. A class, not a closure, so that ``LambdaLR``
    checkpoints its fields (the elapsed training time of a time-budgeted schedule)."""

    def __init__(self, total_steps: int, warmup_steps: int, warmup_fraction: float | None,
                 min_lr_ratio: float, time_budget_s: float | None) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        self.time_budget_s = time_budget_s
        self.elapsed_s = 0.0
        self.session = ""
        self.last_clock = 0.0

    def _cosine(self, progress: float) -> float:
        progress = min(1.0, max(0.0, progress))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        if self.time_budget_s is None:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            return self._cosine((step - self.warmup_steps)
                                / max(1, self.total_steps - self.warmup_steps))
        now = time.monotonic()
        if self.session != _SESSION:  # first call in this process: start the clock here
            self.session, self.last_clock = _SESSION, now
        self.elapsed_s += now - self.last_clock
        self.last_clock = now
        progress = min(1.0, max(step / self.total_steps, self.elapsed_s / self.time_budget_s))
        warm = self.warmup_fraction or 0.0
        if progress < warm:
            return max(progress / warm, 1.0 / self.total_steps)
        return self._cosine((progress - warm) / max(1e-9, 1.0 - warm))


def warmup_cosine(optimizer: Optimizer, *, total_steps: int, warmup_steps: int = 0,
                  warmup_fraction: float | None = None, min_lr_ratio: float = 0.0,
                  time_budget_s: float | None = None) -> LambdaLR:
    """Linear warm-up then cosine decay to ``min_lr_ratio`` × the peak rate, stepped per update.

    auto_avsr and USR both use this shape (linear warm-up, per-step cosine to 0).

    With ``time_budget_s`` the schedule runs on whichever comes first, steps or wall-clock
    time: progress = max(step / total_steps, training seconds / time_budget_s), and the
    warm-up is ``warmup_fraction`` of that progress. A run given a fixed time (Lightning's
    ``trainer.max_time``) then anneals fully on any machine instead of being cut mid-cosine,
    as budgeted training recommends (Li et al., "Budget-Aware Training", ICLR 2020). The
    elapsed time is checkpointed; resuming continues the clock. Such a schedule depends on
    the machine's speed, so a resumed run is not step-for-step identical to an uninterrupted
    one; leave it ``None`` where that matters.

    Args:
        optimizer: the optimiser whose groups' ``lr`` are the peak rates.
        total_steps: number of optimiser steps of the whole run (an upper bound with a budget).
        warmup_steps: linear warm-up steps (ignored when ``warmup_fraction`` is given).
        warmup_fraction: warm-up as a fraction of ``total_steps`` (or of the budget).
        min_lr_ratio: final rate as a fraction of the peak.
        time_budget_s: training seconds at which the schedule reaches its end, or None.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive or None, got {time_budget_s}")
    if warmup_fraction is not None:
        warmup_steps = int(round(warmup_fraction * total_steps))
    warmup_steps = max(0, min(warmup_steps, total_steps))
    return LambdaLR(optimizer, _WarmupCosine(total_steps, warmup_steps, warmup_fraction,
                                             min_lr_ratio, time_budget_s))
