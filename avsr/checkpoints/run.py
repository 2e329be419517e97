"""A training checkpoint as a run (its model, config and tokenizer vocabulary), and a
language-model checkpoint as its LM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from avsr.checkpoints.config import check_stored_config, instantiate_stored
from avsr.checkpoints.reader import read_checkpoint

__all__ = ["LoadedRun", "load_run", "load_lm_checkpoint"]


@dataclass
class LoadedRun:
    """What :func:`load_run` returns.

    Attributes:
        model: the rebuilt model with the checkpoint's weights, in eval mode.
        config: the run's resolved config (checked: ``model`` and ``data`` build only
            allow-listed classes).
        vocabulary: the tokenizer's pieces by id, or ``None`` for checkpoints written before
            avsr stored them.
        path: the checkpoint file.
        checkpoint: the loaded dict (tensors and plain containers only).
    """

    model: nn.Module
    config: DictConfig
    vocabulary: list[str] | None
    path: Path
    checkpoint: dict


def load_run(path: str | Path, map_location: str | torch.device = "cpu",
             source: str = "model", parts: Sequence[str] | None = None) -> LoadedRun:
    """Rebuild the model of a training checkpoint from the config stored inside it.

    Args:
        path: an avsr training checkpoint (``last.ckpt``, ``best.ckpt``, an average).
        map_location: where tensors go.
        source: prefix of the model in the ``state_dict`` (``objective.teacher.model`` for a
            pre-training run's EMA teacher).
        parts: top-level model parts to load (each completely); None: the whole model. An EMA
            teacher of the encoder side holds no decoder: load its
            ``audio_frontend, video_frontend, fusion, encoder`` (parts the model lacks are
            skipped).

    Raises:
        FileNotFoundError, UnsafeCheckpointError: see :func:`read_checkpoint`.
        UnsafeConfigError: the stored config names a target outside the allow-list.
        ValueError: not an avsr checkpoint, or weights that do not fit the stored config.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location=map_location, what="ckpt")
    if not isinstance(checkpoint, dict) or "avsr_config" not in checkpoint:
        raise ValueError(f"{path}: not an avsr training checkpoint (no 'avsr_config' key)")
    config = OmegaConf.create(checkpoint["avsr_config"])
    for node in ("model", "data"):  # everything of it that evaluation may build
        if node in config:
            check_stored_config(config[node], f"{path}: {node}")
    model = instantiate_stored(config.model, f"{path}: model")
    prefix = source.rstrip(".") + "."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix)}
    if parts is not None:
        # a part the model does not have (e.g. no fusion module) has nothing to load
        keep = tuple(f"{p}." for p in parts if getattr(model, p, None) is not None)
        state = {k: v for k, v in state.items() if k.startswith(keep)}
        missing = [k for k in model.state_dict() if k.startswith(keep) and k not in state]
        unexpected = []
        model.load_state_dict(state, strict=False)
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: state_dict does not match the stored config "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.eval()
    return LoadedRun(model=model, config=config, vocabulary=checkpoint.get("avsr_vocabulary"),
                     path=path, checkpoint=checkpoint)


def load_lm_checkpoint(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """The language model saved by ``python -m avsr.train_lm``, in eval mode.

    Raises:
        FileNotFoundError, UnsafeCheckpointError: see :func:`read_checkpoint`.
        UnsafeConfigError: the stored LM config names a target outside the allow-list.
        ValueError: not an avsr LM checkpoint.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location=map_location, what="lm_ckpt")
    if not isinstance(ckpt, dict) or "lm_config" not in ckpt:
        raise ValueError(f"{path}: not an avsr LM checkpoint (no 'lm_config' key)")
    lm = instantiate_stored(OmegaConf.create(ckpt["lm_config"]), f"{path}: lm_config")
    lm.load_state_dict(ckpt["state_dict"])
    return lm.eval()
