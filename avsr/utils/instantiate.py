"""Builds the callback and logger lists from their config groups (lightning-hydra-template)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

__all__ = ["instantiate_callbacks", "instantiate_loggers"]

log = logging.getLogger(__name__)


def _instantiate_group(cfg: DictConfig | None) -> list:
    objects = []
    if not cfg:
        return objects
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"expected a mapping of {{name: config}}, got {type(cfg).__name__}")
    for name, conf in cfg.items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.debug("instantiating %s <%s>", name, conf._target_)
            objects.append(hydra.utils.instantiate(conf))
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    """Each entry of the ``callbacks`` group with a ``_target_`` becomes a callback."""
    return _instantiate_group(cfg)


def instantiate_loggers(cfg: DictConfig | None) -> list:
    """Each entry of the ``logger`` group with a ``_target_`` becomes a logger."""
    return _instantiate_group(cfg)
