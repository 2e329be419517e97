"""Guards of the training step: non-finite losses, and per-step sums across DDP ranks."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from avsr.utils.distributed import any_rank, sum_across_ranks, world_size, zero_gradient_loss

__all__ = ["GuardedCheckpoint", "NonFiniteLossError", "NonFiniteLossGuard", "any_rank",
           "skipped_step", "sum_across_ranks", "world_size", "zero_gradient_loss"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a NaN or infinite loss: the run cannot recover alone."""


class NonFiniteLossGuard:
    """Skip the update of a step whose loss is NaN or infinite; stop after ``max_consecutive``.

    A single bad batch (an overflow, a corrupt item) must not poison the weights of a week-long
    run, but a run that only produces NaN must stop with a message instead of spinning. Under
    DDP the caller passes the flag reduced over ranks, so every rank skips the same steps.

    Args:
        max_consecutive: consecutive non-finite steps that stop the run (0 disables the stop).
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 0:
            raise ValueError(f"max_consecutive must be >= 0, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0

    def update(self, nonfinite: bool, step: int) -> bool:
        """Record one step; returns True when its update must be skipped.

        Raises:
            NonFiniteLossError: the ``max_consecutive``-th non-finite step in a row.
        """
        if not nonfinite:
            self.consecutive = 0
            return False
        self.consecutive += 1
        self.total += 1
        log.warning("non-finite loss at step %d: update skipped (%d in a row, %d in total)",
                    step, self.consecutive, self.total)
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"the loss was NaN or infinite for {self.consecutive} consecutive steps (up to "
                f"global step {step}; {self.total} skipped in total): stopping. Lower the "
                "learning rate, check the data for corrupt items, or train in float32; resume "
                "from the last checkpoint with ckpt_path=last once fixed.")
        return True

    def vote(self, loss: torch.Tensor, step: int) -> bool:
        """:meth:`update` with this step's flag reduced over ranks (one all-reduce under DDP),
        so every rank skips the same steps."""
        return self.update(any_rank(not bool(torch.isfinite(loss)), loss.device), step)

    def empty_batch(self, module: nn.Module, step: int) -> torch.Tensor | None:
        """What ``training_step`` returns for a batch with no items (every item an unreadable
        file, or the sampler's shard ran short): alone, None (the step is skipped); under DDP
        the other ranks wait for this one, so it takes part in the step's vote and contributes
        zero gradients."""
        if world_size() == 1:
            return None
        params = next(module.parameters(), None)
        device = params.device if params is not None else torch.device("cpu")
        self.update(any_rank(False, device), step)
        return zero_gradient_loss(module)

    def state_dict(self) -> dict[str, Any]:
        return {"consecutive": self.consecutive, "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consecutive = int(state.get("consecutive", 0))
        self.total = int(state.get("total", 0))


def skipped_step(module: nn.Module) -> torch.Tensor | None:
    """What ``training_step`` returns for a step every rank skips: None alone; a zero gradient
    under DDP, which cannot skip a step."""
    return zero_gradient_loss(module) if world_size() > 1 else None


class GuardedCheckpoint:
    """LightningModule mixin (listed before ``pl.LightningModule``): checkpoints carry
    ``self.nonfinite_guard``'s counts, so a resumed run stops after the same number of
    consecutive non-finite steps as an uninterrupted one."""

    nonfinite_guard: NonFiniteLossGuard

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nonfinite_guard"] = self.nonfinite_guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "nonfinite_guard" in checkpoint:
            self.nonfinite_guard.load_state_dict(checkpoint["nonfinite_guard"])
