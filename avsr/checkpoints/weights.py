"""Weight sources: one spec for every way a run starts from saved weights.

A run's ``init`` is a list of sources, applied in order (a later source wins) to the freshly
built model, before the training stage is built; a resumed run then loads its own checkpoint
over them. Each source is a mapping with the keys of :class:`WeightSource`::

    init:
      # the encoder side of a pre-training run (BRAVEn, AV-HuBERT, an earlier iteration)
      - {path: logs/braven/checkpoints/last.ckpt, modules: [audio_frontend, video_frontend,
         fusion, encoder]}
      # its EMA teacher instead of the student
      - {path: ..., prefix: objective.teacher.model.}
      # an exported front-end (python -m avsr.export_frontend), or any plain state dict
      - {path: frontend_video.pt, format: weights, target: video_frontend}
      # MoCo v2's ResNet-50 trunk (Pan et al.): the keys under module.encoder_q.
      - {path: moco_v2_800ep_pretrain.pth.tar, format: weights, target: video_frontend.trunk,
         prefix: module.encoder_q., strict: false}
      # public checkpoints through avsr.convert (auto_avsr, usr, avhubert, wav2vec2)
      - {path: base_vox_iter5.pt, format: avhubert, options: {keep_init: [decoder., ctc.]}}
      # shrink and perturb the loaded encoder side instead of taking it as is
      - {path: ..., modules: [encoder], shrink: 0.6, perturb: 0.1}

Formats:

- ``avsr``: a training checkpoint of this project; keys ``<prefix><part>...`` (prefix
  ``model.`` by default) fill the model's ``modules`` (default: every part).
- ``weights``: a plain ``state_dict`` or a dict with one under ``state_dict``; the keys under
  ``prefix`` (stripped) fill the submodule ``target`` (default: the whole model).
- ``auto_avsr``, ``usr``, ``avhubert``, ``wav2vec2``: the papers' released files, mapped by
  :func:`avsr.convert.import_checkpoint` (``options`` are its format options and
  ``keep_init``).

Shrink and perturb (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020):
with ``shrink`` below 1 or ``perturb`` above 0, every loaded *parameter* becomes
``shrink * loaded + perturb * fresh``, where ``fresh`` is what the model held there before this
source (its own initialisation, or an earlier source's weights). Warm-started networks
generalise worse than freshly initialised ones trained on the same data; shrinking the
weights towards zero and adding initialisation-scale noise restores much of the gap while
keeping what was learnt. Buffers (batch-norm running statistics, step counts) load unchanged:
they are statistics of activations, not learnt weights, and a scaled running variance would
mis-normalise until training re-estimates it. The defaults (1, 0) leave loading exact.

Every file is read with :func:`~avsr.checkpoints.read_checkpoint`: nothing in it runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsr.checkpoints.reader import read_checkpoint

__all__ = ["WeightSource", "load_weights", "apply_init", "read_state_dict", "shrink_perturb",
           "CONVERTED"]

log = logging.getLogger(__name__)

#: formats mapped by avsr.convert
CONVERTED = ("auto_avsr", "usr", "avhubert", "wav2vec2")
FORMATS = ("avsr", "weights", *CONVERTED)


@dataclass
class WeightSource:
    """One entry of a run's ``init`` list.

    Attributes:
        path: the file.
        format: ``avsr``, ``weights`` or a converted format (see the module docstring).
        modules: top-level model parts to fill (``avsr``; empty: every part of the target).
        prefix: key prefix in the file, stripped (``avsr``: ``model.``; ``weights``: none).
        target: dotted name of the submodule the keys are relative to (``weights``; empty:
            the model).
        strict: every weight of the filled parts must come from the file with its shape,
            and (``weights``) every selected key of the file must be used. Non-strict loads
            what matches by name and shape, logs the rest, and still fails when nothing does.
        options: options of the converted formats.
        shrink: factor on every loaded parameter, in (0, 1] (shrink and perturb; 1: as
            loaded).
        perturb: factor on the parameter's value before loading (its fresh initialisation),
            added to the shrunk one, in [0, 1] (0: nothing added).
    """

    path: str
    format: str = "avsr"
    modules: Sequence[str] = ()
    prefix: str | None = None
    target: str = ""
    strict: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    shrink: float = 1.0
    perturb: float = 0.0

    @property
    def blends(self) -> bool:
        """Whether shrink and perturb change the loaded weights."""
        return self.shrink != 1.0 or self.perturb != 0.0

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], where: str = "init") -> WeightSource:
        """Build from a config mapping; ValueError naming the entry for unknown keys or
        formats, or options the format does not take."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; a weight source has "
                             f"{sorted(known)}")
        if not spec.get("path"):
            raise ValueError(f"{where}: no path")
        source = cls(**{k: v for k, v in spec.items() if v is not None or k == "prefix"})
        if source.format not in FORMATS:
            raise ValueError(f"{where}: format {source.format!r} is not one of {FORMATS}")
        if source.format in CONVERTED and (source.modules or source.target or source.prefix):
            raise ValueError(f"{where}: format {source.format} maps the whole model; choose "
                             "what stays at its initialisation with options.keep_init")
        if source.format == "avsr" and source.target:
            raise ValueError(f"{where}: format avsr fills top-level parts: use modules")
        if source.format == "weights" and source.modules:
            raise ValueError(f"{where}: format weights fills one target submodule: use target")
        for key, low, high, low_open in (("shrink", 0.0, 1.0, True),
                                         ("perturb", 0.0, 1.0, False)):
            value = getattr(source, key)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and value <= high
                  and (value > low if low_open else value >= low))
            if not ok:
                bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
                raise ValueError(f"{where}: {key} must be a number in {bounds}, got {value!r}")
        return source


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


def _fill(module: nn.Module, state: Mapping[str, torch.Tensor], wanted: Sequence[str],
          source: WeightSource, check_unused: bool) -> dict[str, list[str]]:
    """Load ``state`` into the keys ``wanted`` of ``module``; the key report."""
    own = module.state_dict()
    usable = {k: state[k] for k in wanted if k in state and state[k].shape == own[k].shape}
    missing = sorted(k for k in wanted if k not in usable)
    unexpected = sorted(k for k in state if k not in usable) if check_unused else []
    if source.strict and (missing or unexpected):
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in missing
                  if k in state][:3]
        raise ValueError(f"init from {source.path} (prefix {source.prefix!r}): {len(missing)} "
                         f"weights missing or mis-shaped, e.g. {missing[:3]} {shapes}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:3]} (strict: false "
                         "loads the matching ones)")
    if not usable:
        raise ValueError(f"init from {source.path} (prefix {source.prefix!r}): no weight "
                         "matches the model")
    module.load_state_dict(usable, strict=False)
    if missing or unexpected:
        log.warning("init from %s: %d missing (e.g. %s), %d unexpected (e.g. %s)", source.path,
                    len(missing), missing[:3], len(unexpected), unexpected[:3])
    return {"loaded": sorted(usable), "missing": missing, "unexpected": unexpected}


def load_weights(model: nn.Module, source: WeightSource | Mapping[str, Any]
                 ) -> dict[str, list[str]]:
    """Load one weight source into ``model``, shrunk and perturbed if the source says so.

    Returns:
        ``{"loaded": [...], "missing": [...], "unexpected": [...]}`` key lists (relative to
        the filled module).

    Raises:
        FileNotFoundError, UnsafeCheckpointError: see :func:`read_checkpoint`.
        ValueError: a bad spec, a part absent from the model, or keys that do not fit.
    """
    if not isinstance(source, WeightSource):
        source = WeightSource.from_config(source)
    filled = (model.get_submodule(source.target) if source.format == "weights"
              and source.target else model)
    # the values the loaded ones are blended with: what the module holds before this source
    fresh = ({k: p.detach().clone() for k, p in filled.named_parameters(remove_duplicate=False)}
             if source.blends else None)
    report = _load(model, source)
    if fresh is not None:
        n = shrink_perturb(filled, report["loaded"], fresh, source.shrink, source.perturb)
        log.info("init from %s: %d parameters shrunk by %g and perturbed by %g", source.path, n,
                 source.shrink, source.perturb)
    return report


@torch.no_grad()
def shrink_perturb(module: nn.Module, keys: Sequence[str], fresh: Mapping[str, torch.Tensor],
                   shrink: float, perturb: float) -> int:
    """Set each parameter of ``module`` named in ``keys`` to ``shrink * value + perturb *
    fresh[key]`` in place (Ash & Adams, NeurIPS 2020).

    Buffers named in ``keys`` are left as they are; a parameter shared under several names
    (tied embeddings) is changed once.

    Returns:
        The number of parameters changed.

    Raises:
        ValueError: a parameter whose ``fresh`` value is absent or of another shape.
    """
    params = dict(module.named_parameters(remove_duplicate=False))
    done: set[int] = set()
    for key in keys:
        param = params.get(key)
        if param is None or id(param) in done:
            continue
        before = fresh.get(key)
        if before is None or before.shape != param.shape:
            raise ValueError(f"shrink and perturb: no fresh value of shape "
                             f"{tuple(param.shape)} for parameter {key!r}")
        param.mul_(shrink).add_(before.to(param.device, param.dtype), alpha=perturb)
        done.add(id(param))
    return len(done)


def _load(model: nn.Module, source: WeightSource) -> dict[str, list[str]]:
    """Load ``source`` into ``model`` as stored; the key report of :func:`load_weights`."""
    if source.format in CONVERTED:
        from avsr.convert import import_checkpoint

        report = import_checkpoint(model, source.format, source.path, **dict(source.options))
        log.info("initialised from %s:\n%s", source.path, report.summary())
        return {"loaded": sorted(report.loaded), "missing": [], "unexpected": []}
    if source.format == "weights":
        target = model.get_submodule(source.target) if source.target else model
        state = read_state_dict(source.path, source.prefix or "")
        return _fill(target, state, list(target.state_dict()), source, check_unused=True)
    # avsr: a training checkpoint
    prefix = "model." if source.prefix is None else source.prefix
    checkpoint = read_checkpoint(source.path, what="init checkpoint")
    stored = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else {}
    state = {k[len(prefix):]: v for k, v in stored.items()
             if isinstance(v, torch.Tensor) and k.startswith(prefix)}
    own = list(model.state_dict())
    wanted: list[str] = []
    for name in source.modules or sorted({k.split(".")[0] for k in own}):
        keys = [k for k in own if k.startswith(name + ".")]
        if not keys:
            raise ValueError(f"init from {source.path}: the model has no part {name!r}")
        wanted += keys
    return _fill(model, state, wanted, source, check_unused=False)


def apply_init(model: nn.Module, init: Sequence[Mapping[str, Any]] | None) -> list[dict]:
    """Apply a run's ``init`` list in order; an entry whose ``path`` is null is skipped (a
    recipe's placeholder left unset). Returns the reports."""
    reports = []
    for i, spec in enumerate(init or ()):
        if not isinstance(spec, Mapping):
            raise ValueError(f"init.{i}: expected a mapping with a path, got {spec!r}")
        if not spec.get("path"):
            continue
        source = WeightSource.from_config(spec, f"init.{i}")
        report = load_weights(model, source)
        log.info("init.%d: %d tensors from %s", i, len(report["loaded"]), source.path)
        reports.append(report)
    return reports
