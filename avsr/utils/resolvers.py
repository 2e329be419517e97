"""OmegaConf resolvers of avsr's configs, registered when ``avsr`` is imported."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

__all__ = ["cpu_precision", "frontend_dim", "register_resolvers"]


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


# torchvision ResNet output width per block kind: 512 · block.expansion
_TORCHVISION_DIMS = {"basic": 512, "bottleneck": 2048}


def frontend_dim(frontend: Any, absent: int = 512) -> int:
    """Feature size D of the front-end a config node builds (its module's ``output_dim``),
    read from the node's keys without building it; ``absent`` for a null front-end (the
    size that then only shapes the fusion's unused or learned-fill parameters).

    Used in configs as ``audio_dim: ${frontend_dim:${model.audio_frontend}}``, so fusion and
    encoder input sizes follow the front-ends instead of being set twice.

    - wav2vec 2.0 (``encoder_embed_dim``): ``output_dim`` with the ``conv`` rate adapter when
      given, else ``encoder_embed_dim``;
    - filterbank (``output_dim``): ``output_dim``;
    - torchvision ResNet trunk (``block``): 512 (basic) or 2048 (bottleneck);
    - ResNet front-ends (``widths``): the last stage's width.
    """
    if frontend is None:
        return int(absent)
    get = frontend.get
    if get("encoder_embed_dim") is not None:
        conv = get("rate", "conv") == "conv" and get("output_dim") is not None
        return int(frontend["output_dim"] if conv else frontend["encoder_embed_dim"])
    if get("output_dim") is not None:
        return int(frontend["output_dim"])
    if get("block") is not None:
        if frontend["block"] not in _TORCHVISION_DIMS:
            raise ValueError(f"frontend_dim: unknown torchvision block {frontend['block']!r}")
        return _TORCHVISION_DIMS[frontend["block"]]
    if get("widths") is not None:
        return int(frontend["widths"][-1])
    raise ValueError(f"frontend_dim: cannot tell the output size of front-end "
                     f"{get('_target_', frontend)!r}; set the fusion sizes explicitly")


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)
    if not OmegaConf.has_resolver("frontend_dim"):
        OmegaConf.register_new_resolver("frontend_dim", frontend_dim)
    for name, fn in (("loader_workers", _loader_workers), ("loader_pin_memory", _loader_pin)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _loader_workers(accelerator: str = "cpu") -> int:
    from avsr.data.loading import loader_workers  # lazily, as cpu_precision: torch

    return loader_workers(accelerator)


def _loader_pin(accelerator: str = "cpu") -> bool:
    from avsr.data.loading import loader_pin_memory

    return loader_pin_memory(accelerator)
