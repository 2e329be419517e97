"""OmegaConf resolvers of avsr's configs, registered when ``avsr`` is imported."""

from __future__ import annotations

from omegaconf import OmegaConf

__all__ = ["cpu_precision", "register_resolvers"]


def cpu_precision(fast: str = "bf16-mixed", fallback: str = "32-true") -> str:
    """``fast`` where this CPU runs bf16 natively (oneDNN: AVX512-BF16 or AMX), else
    ``fallback``: emulated bf16 is slower than fp32, so CPU recipes ask through this.

    Used in configs as ``${cpu_precision:bf16-mixed,32-true}``.
    """
    import torch  # lazily: `python -m avsr.data.synthetic --help` must not pay for torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return fast if native else fallback


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)
    for name, fn in (("loader_workers", _loader_workers), ("loader_pin_memory", _loader_pin)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _loader_workers(accelerator: str = "cpu") -> int:
    from avsr.data.loading import loader_workers  # lazily, as cpu_precision: torch

    return loader_workers(accelerator)


def _loader_pin(accelerator: str = "cpu") -> bool:
    from avsr.data.loading import loader_pin_memory

    return loader_pin_memory(accelerator)
