"""Initialise parts of a freshly built model from saved weights, by config.

The run-level ``init_weights`` node maps submodule names to specs; a spec is a mapping with
``path`` (and optionally ``prefix``, ``strict``); any other mapping nests one submodule level
deeper::

    init_weights:
      video_frontend:                 # model.video_frontend <- an exported front-end
        path: logs/synth_words/frontend_video.pt
      # video_frontend:               # model.video_frontend.trunk <- MoCo v2 (Pan et al.)
      #   trunk: {path: moco_v2_800ep_pretrain.pth.tar, prefix: module.encoder_q., strict: false}

    python -m avsr.train +experiment=synth_grid +init_weights.video_frontend.path=frontend_video.pt

Accepted files: a plain ``state_dict``, a dict with a ``state_dict`` entry (exports of
``python -m avsr.export_frontend``, Lightning and MoCo checkpoints). ``prefix`` selects the keys
that start with it and strips it (``model.video_frontend.`` for a Lightning checkpoint of this
project). Weights are applied once, at model build, before training; a resumed run then loads
its own checkpoint over them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsr.checkpoints import read_checkpoint

__all__ = ["load_init", "apply_inits", "read_state_dict"]

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a weights file whose keys start with ``prefix``, with the prefix stripped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no tensors, or none under ``prefix``.
    """
    path = Path(path)
    obj = read_checkpoint(path, what="init weights")
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: not a state_dict or a checkpoint with a 'state_dict'")
    tensors = {k[len(prefix):]: v for k, v in state.items()
               if isinstance(v, torch.Tensor) and k.startswith(prefix)}
    if not tensors:
        raise ValueError(f"{path}: no weights under prefix {prefix!r} (first keys: "
                         f"{list(state)[:3]})")
    return tensors


def load_init(module: nn.Module, path: str | Path, prefix: str = "",
              strict: bool = True) -> dict[str, list[str]]:
    """Load the weights of ``path`` (under ``prefix``) into ``module``.

    Args:
        module: the target (sub)module.
        path: weights file (see the module docstring).
        prefix: key prefix selecting and stripped from the file's keys.
        strict: every weight of ``module`` and every selected key must match (shapes too).
            Non-strict loads the keys that match by name and shape, logs the rest, and still
            fails when nothing matched.

    Returns:
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}`` key lists.

    Raises:
        KeyError: strict and the keys differ, or nothing matched.
    """
    state = read_state_dict(path, prefix)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    missing = sorted(k for k in own if k not in usable)
    unexpected = sorted(k for k in state if k not in usable)
    if strict and (missing or unexpected):
        raise KeyError(f"init from {path} (prefix {prefix!r}): {len(missing)} missing or "
                       f"mis-shaped, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. "
                       f"{unexpected[:3]} (strict: false loads the matching ones)")
    if not usable:
        raise KeyError(f"init from {path} (prefix {prefix!r}): no key matches the module")
    module.load_state_dict(usable, strict=False)
    if missing or unexpected:
        log.warning("init from %s: %d missing (e.g. %s), %d unexpected (e.g. %s)", path,
                    len(missing), missing[:3], len(unexpected), unexpected[:3])
    return {"loaded": sorted(usable), "missing": missing, "unexpected": unexpected}


def apply_inits(model: nn.Module, init: Mapping[str, Any] | None) -> dict[str, dict]:
    """Apply an ``init_weights`` node (see the module docstring) to ``model``.

    Returns:
        ``{submodule name: load_init report}``.

    Raises:
        AttributeError: a named submodule does not exist.
        ValueError: a spec has keys other than ``path``, ``prefix``, ``strict``.
    """
    reports: dict[str, dict] = {}

    def visit(node: Mapping[str, Any], name: str) -> None:
        if "path" in node:
            extra = set(node) - {"path", "prefix", "strict"}
            if extra:
                raise ValueError(f"init_weights.{name}: unknown keys {sorted(extra)}")
            target = model.get_submodule(name) if name else model
            reports[name] = load_init(target, node["path"], node.get("prefix") or "",
                                      bool(node.get("strict", True)))
            log.info("initialised %s from %s (%d tensors)", name or "the model",
                     node["path"], len(reports[name]["loaded"]))
            return
        for key, child in node.items():
            if not isinstance(child, Mapping):
                where = f"{name}.{key}" if name else str(key)
                raise ValueError(f"init_weights.{where}: expected a mapping with 'path' or a "
                                 f"submodule name, got {child!r}")
            visit(child, f"{name}.{key}" if name else str(key))

    if init:
        visit(init, "")
    return reports
