"""What Lightning does not restore on resume: the global RNG states and the sampler position.

Lightning restores weights, optimiser, schedulers and loop counters, but not the global RNGs
that drive data augmentation (crops, flips, masks, noise SNRs) and dropout: without them a
resumed run sees different augmentations from the kill on. It also stores the state of
stateful loaders (our :class:`~avsr.data.loader.AVDataLoader`: sampler epoch and
position) but loads it only when the train loader is built after the loop state is restored;
``configure_optimizers`` reading ``trainer.estimated_stepping_batches`` builds it before, and
the resumed epoch then restarts from its first batch (checked with Lightning 2.6).

:class:`ExactResume` stores the torch (CPU and CUDA), NumPy and Python RNG states of every
rank and the train loader state in each checkpoint, and puts them back at ``on_train_start``,
after everything that runs between loading and the first batch.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

__all__ = ["ExactResume", "get_rng_states", "set_rng_states"]

log = logging.getLogger(__name__)


def get_rng_states() -> dict[str, Any]:
    """The global torch, CUDA, NumPy and Python RNG states of this process."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        # plain types and tensors only: checkpoints load with torch.load(weights_only=True)
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states from :func:`get_rng_states`."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(states["python"])


class ExactResume(pl.Callback):
    """Save every rank's RNG states and the train loader state; restore both at train start.

    Exact with ``num_workers=0`` (augmentation runs in the training process) and with DataLoader
    workers: the batches and their order resume from the sampler state, and each item's
    augmentation is seeded by its place in the epoch
    (:class:`~avsr.data.loading.SeededBatchSampler`), not by a worker's RNG stream.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._loader_state: dict[str, Any] | None = None
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        states = get_rng_states()
        if dist.is_available() and dist.is_initialized():
            # every rank draws a different amount (item lengths differ): keep each rank's state
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            states_by_rank = gathered
        else:
            states_by_rank = [states]
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        loader_state = loader.state_dict() if hasattr(loader, "state_dict") else None
        return {"ranks": states_by_rank, "train_loader": loader_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loader_state = state_dict.get("train_loader")
        ranks = state_dict.get("ranks") or []
        if not ranks:
            return
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world != len(ranks):
            log.warning("checkpoint holds RNG states of %d ranks, this run has %d: random "
                        "draws will differ from the interrupted run", len(ranks), world)
        self._pending = ranks[rank] if rank < len(ranks) else ranks[0]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self._loader_state is not None and hasattr(loader, "load_state_dict"):
            # idempotent when Lightning loaded the same state itself
            loader.load_state_dict(self._loader_state)
        self._loader_state = None
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
