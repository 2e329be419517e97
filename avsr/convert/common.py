"""What every importer shares: reading checkpoint files, key-renaming rules, strict loading.

An importer turns a public checkpoint's state_dict into avsr's key names with an ordered list
of :class:`Rule` s (regular expression -> template, or -> ``None`` to drop a key with a stated
reason). :func:`load_mapped` then loads the result into a model all or nothing: source keys no
rule claims, target keys nothing fills, and shape mismatches are collected first and raised
together as :class:`CheckpointImportError`; the model is only touched when there are none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "CheckpointImportError", "ImportReport", "Rule", "rename", "load_mapped", "read_checkpoint",
    "state_dict_of", "strip_prefix",
]


class CheckpointImportError(ValueError):
    """A checkpoint does not map onto the target model; lists every offending key."""

    def __init__(self, source: str, unknown: Sequence[str] = (), missing: Sequence[str] = (),
                 shapes: Sequence[str] = (), note: str = "") -> None:
        self.unknown, self.missing, self.shapes = list(unknown), list(missing), list(shapes)
        lines = [f"cannot import {source}:"]
        if self.unknown:
            lines.append(f"  {len(self.unknown)} checkpoint keys with no place in the model: "
                         + ", ".join(self.unknown))
        if self.missing:
            lines.append(f"  {len(self.missing)} model keys the checkpoint does not fill: "
                         + ", ".join(self.missing))
        if self.shapes:
            lines.append(f"  {len(self.shapes)} shape mismatches: " + ", ".join(self.shapes))
        if note:
            lines.append(f"  {note}")
        super().__init__("\n".join(lines))


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        loaded: target keys filled from the checkpoint.
        dropped: checkpoint keys deliberately left out, with the reason for each.
        kept_init: target keys left at their initialisation because the caller asked
            (``keep_init`` prefixes).
        meta: anything the importer read besides weights (e.g. a fairseq ``cfg``).
    """

    loaded: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    kept_init: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per category, for logs and the CLI."""
        reasons: dict[str, int] = {}
        for reason in self.dropped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines = [f"loaded {len(self.loaded)} tensors"]
        lines += [f"dropped {n} checkpoint tensors: {r}" for r, n in reasons.items()]
        if self.kept_init:
            lines.append(f"kept {len(self.kept_init)} model tensors at initialisation "
                         f"(keep_init): {', '.join(self.kept_init[:8])}"
                         + (" ..." if len(self.kept_init) > 8 else ""))
        return "\n".join(lines)


@dataclass(frozen=True)
class Rule:
    """One renaming rule: a key matching ``pattern`` (``re.fullmatch``) becomes
    ``pattern.sub(template, key)``; a ``None`` template drops the key for ``reason``."""

    pattern: str
    template: str | None
    reason: str = ""

    def apply(self, key: str) -> tuple[bool, str | None]:
        """(matched, new key or None if dropped)."""
        m = re.fullmatch(self.pattern, key)
        if m is None:
            return False, None
        if self.template is None:
            return True, None
        return True, m.expand(self.template)


def rename(state: Mapping[str, torch.Tensor], rules: Iterable[Rule], source: str
           ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Apply the first matching rule to every key.

    Returns:
        (renamed state, dropped keys with reasons).

    Raises:
        CheckpointImportError: keys no rule matches, or two keys renamed to the same name.
    """
    rules = list(rules)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: dict[str, str] = {}
    unknown: list[str] = []
    clashes: list[str] = []
    for key, value in state.items():
        for rule in rules:
            matched, new = rule.apply(key)
            if not matched:
                continue
            if new is None:
                dropped[key] = rule.reason
            elif new in out:
                clashes.append(f"{origin[new]} and {key} -> {new}")
            else:
                out[new], origin[new] = value, key
            break
        else:
            unknown.append(key)
    if unknown or clashes:
        raise CheckpointImportError(source, unknown=unknown,
                                    note="clashes: " + "; ".join(clashes) if clashes else "")
    return out, dropped


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Keys under ``prefix`` with it cut; other keys are left out."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_mapped(model: nn.Module, mapped: Mapping[str, torch.Tensor], source: str,
                dropped: Mapping[str, str] | None = None,
                keep_init: Sequence[str] = ()) -> ImportReport:
    """Load renamed weights into ``model``, all or nothing.

    Args:
        model: the target avsr model.
        mapped: checkpoint tensors under the model's key names.
        source: name of the checkpoint, for messages.
        dropped: checkpoint keys the importer left out on purpose, with reasons (reported).
        keep_init: prefixes of model keys that may stay at their initialisation (e.g.
            ``["decoder.", "ctc."]`` when fine-tuning from an encoder-only pre-training
            checkpoint). Every other model key must be filled.

    Returns:
        An :class:`ImportReport`.

    Raises:
        CheckpointImportError: before anything is loaded, listing checkpoint keys the model
            lacks, model keys the checkpoint does not fill, and shape mismatches.
    """
    target = model.state_dict()
    unknown = sorted(k for k in mapped if k not in target)
    kept = sorted(k for k in target if k not in mapped and k.startswith(tuple(keep_init)))
    missing = sorted(k for k in target if k not in mapped and k not in kept)
    shapes = sorted(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                    for k, v in mapped.items() if k in target and v.shape != target[k].shape)
    if unknown or missing or shapes:
        raise CheckpointImportError(source, unknown, missing, shapes)
    # copies the values: shared or overlapping storages in the checkpoint are fine
    full = dict(target)
    full.update({k: v.detach() for k, v in mapped.items()})
    model.load_state_dict(full, strict=True)
    return ImportReport(loaded=sorted(mapped), dropped=dict(dropped or {}), kept_init=kept)


def read_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint file on the CPU without running code from it.

    Plain tensors, state dicts and Lightning checkpoints load with ``weights_only``; anything
    else (fairseq pickles with ``cfg`` and ``task_state``, ``argparse.Namespace`` hyper
    parameters) goes through :mod:`avsr.convert.unpickler`, which rebuilds only tensors and
    plain containers and stands in inert records for every other class.
    """
    from avsr.checkpoints.reader import read_checkpoint as read

    return read(path, foreign=True)


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a loaded checkpoint.

    Accepts a plain state dict, a Lightning checkpoint (``state_dict``), a fairseq checkpoint
    (``model``) or a dict with ``model_state_dict``.
    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise CheckpointImportError(source, note="no tensor state_dict found (looked for a plain "
                                "state dict and the keys state_dict, model, model_state_dict)")
