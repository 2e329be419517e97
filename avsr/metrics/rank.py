"""Effective rank of a set of representations, the collapse monitor of self-supervised
pre-training (RankMe: Garrido et al., "RankMe: Assessing the Downstream Performance of
Pretrained Self-Supervised Representations by Their Rank", ICML 2023).

A self-distillation objective (BRAVEn, data2vec) can be satisfied by states that vary along
one or a few directions only: the loss keeps falling while the encoder forgets what a
recogniser needs. RankMe is exp of the entropy of the normalised singular values: D for
states spread evenly over D dimensions, 1 for states on one line.
"""

from __future__ import annotations

import torch

__all__ = ["rankme"]


@torch.no_grad()
def rankme(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Effective rank of N vectors.

    Args:
        x: (N, D) representations (for frames of several utterances, the valid frames only).
        eps: added to the normalised singular values inside the logarithm (RankMe's ε).

    Returns:
        A scalar in [1, min(N, D)] (float32); 1 for fewer than two vectors or all-zero ``x``.

    Raises:
        ValueError: ``x`` is not (N, D).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] < 2 or not torch.any(x != 0):
        return torch.ones((), device=x.device)
    s = torch.linalg.svdvals(x.float())
    p = s / s.sum() + eps
    return torch.exp(-(p * p.log()).sum())
