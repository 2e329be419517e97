"""Configs read from files build only allow-listed objects.

A run checkpoint stores its config (``avsr_config``), and evaluation rebuilds the model and
data module from it with Hydra. Hydra instantiates any importable callable, so a crafted
checkpoint could name ``torch.load`` (aimed at a second, unsafe pickle) or ``os.system`` as a
``_target_``. Before anything is built, every ``_target_`` of a stored config must be a class
of avsr's model or data packages or a torch module, or one of the few avsr factory functions
listed in :data:`SAFE_FUNCTIONS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["ALLOWED_CLASS_PREFIXES", "SAFE_FUNCTIONS", "UnsafeConfigError",
           "check_stored_config", "instantiate_stored"]

# classes under these packages may be built from a stored config
ALLOWED_CLASS_PREFIXES = ("avsr.models.", "avsr.data.", "avsr.decoding.", "torch.nn.")
# functions that build data objects and read nothing but media and text
SAFE_FUNCTIONS = frozenset({"avsr.data.noise_sets.folder_noise"})


class UnsafeConfigError(ValueError):
    """A stored config names a ``_target_`` outside the allow-list."""


def _allowed(target: str) -> bool:
    if target in SAFE_FUNCTIONS:
        return True
    if not target.startswith(ALLOWED_CLASS_PREFIXES):
        return False
    try:  # importing avsr's or torch's own modules runs no stored code
        obj = hydra.utils.get_object(target)
    except Exception:  # noqa: BLE001 - unresolvable: not allowed
        return False
    return inspect.isclass(obj)


def _targets(node: Any, path: str):
    if isinstance(node, (Mapping, DictConfig)):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield path or "<root>", value
            else:
                yield from _targets(value, where)
    elif isinstance(node, (Sequence, ListConfig)) and not isinstance(node, (str, bytes)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def check_stored_config(node: Any, source: str) -> None:
    """Raise unless every ``_target_`` in ``node`` is allow-listed.

    Args:
        node: a config (dict or DictConfig) read from a file.
        source: the file and node, for the message (``"ckpt.ckpt: model"``).

    Raises:
        UnsafeConfigError: names the file, the key and the refused target.
    """
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    for where, target in _targets(node, ""):
        if not isinstance(target, str) or not _allowed(target):
            raise UnsafeConfigError(
                f"{source}: refused to build {where}._target_={target!r}: a config read from a "
                f"file may only build classes under {', '.join(ALLOWED_CLASS_PREFIXES)} or "
                f"{sorted(SAFE_FUNCTIONS)}")


def instantiate_stored(node: Any, source: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of a config read from a file, after
    :func:`check_stored_config`."""
    check_stored_config(node, source)
    return hydra.utils.instantiate(node, **kwargs)
