"""Per-step collectives of a training step, safe to call outside torch.distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["world_size", "sum_across_ranks", "any_rank", "zero_gradient_loss"]


def world_size() -> int:
    """Ranks of the default process group (1 outside torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (a copy; ``values`` itself outside DDP)."""
    if world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on any rank (one all-reduce under DDP; ``flag`` outside)."""
    if world_size() == 1:
        return flag
    return bool(sum_across_ranks(torch.tensor([float(flag)], device=device)) > 0)


def zero_gradient_loss(module: nn.Module) -> torch.Tensor:
    """A zero loss that reaches every trainable parameter of ``module``.

    Lightning's DDP cannot skip ``training_step`` (returning None raises), and the other ranks
    wait for this rank's gradients: a rank with nothing to learn from (an empty batch, or a
    step skipped for a non-finite loss) contributes zeros instead.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    start = params[0].new_zeros(()) if params else torch.zeros(())
    return sum((p.sum() for p in params), start) * 0.0
