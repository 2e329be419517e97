"""Activation checkpointing of chosen layers, without changing module names or weights.

Each selected layer's ``forward`` is replaced, on the instance, by a call through
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant): the layer's activations are freed
after the forward pass and recomputed during backward, trading about one extra forward of
those layers for their activation memory (Chen et al., "Training Deep Nets with Sublinear
Memory Cost", 2016). The RNG state is replayed, so dropout masks and gradients are unchanged.
State-dict keys stay the same, so checkpoints load with or without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["enable_activation_checkpointing"]


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # inference: nothing to save memory on
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def enable_activation_checkpointing(root: nn.Module, targets: Sequence[str]) -> list[str]:
    """Checkpoint every layer of the ``targets`` of ``root``.

    Args:
        root: the module holding the targets (e.g. the LightningModule).
        targets: dotted submodule names, e.g. ``["model.encoder.layers"]``. A ``ModuleList`` or
            ``Sequential`` target checkpoints each of its children; any other module is
            checkpointed as a whole. Every encoder exposes its block stack as ``layers``.

    Returns:
        The names of the modules now checkpointed.

    Raises:
        ValueError: a target names no submodule of ``root`` (a typo would otherwise leave a
            Large model silently un-checkpointed); the message lists the layer stacks there are.
    """
    done = []
    for target in targets:
        try:
            module = root.get_submodule(target)
        except AttributeError:
            stacks = sorted({name for name, m in root.named_modules()
                             if isinstance(m, nn.ModuleList) and len(m)})
            raise ValueError(f"activation_checkpointing: no submodule {target!r} in "
                             f"{type(root).__name__}; its layer stacks are {stacks}") from None
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            layers = [(f"{target}.{name}", m) for name, m in module.named_children()]
        else:
            layers = [(target, module)]
        for name, layer in layers:
            if getattr(layer, "_avsr_checkpointed", False):
                continue
            layer.forward = functools.partial(_checkpointed, layer.forward)
            layer._avsr_checkpointed = True
            done.append(name)
    return done
