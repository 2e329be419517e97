"""Which utterances a training loader draws from: the low-resource labelled split and the
pools of self- and semi-supervised training."""

from __future__ import annotations

import random
from collections.abc import Sequence

from avsr.data.corpora import Utterance

__all__ = ["TRAIN_DATA", "labelled_indices", "labelled_subset", "training_pool"]

#: what the training loader gives: the labelled part, every training utterance (transcripts
#: ignored: self-supervised pre-training), or both as two loaders (semi-supervised training)
TRAIN_DATA = ("labelled", "all", "labelled+unlabelled")


def labelled_indices(ids: Sequence[str], fraction: float, seed: int) -> list[int]:
    """Positions of the items a low-resource run labels: ``fraction`` of them, drawn once by
    ``seed`` from the id order (independent of the listing order), in listing order; all
    when the fraction is 1 (at least one)."""
    if fraction >= 1.0:
        return list(range(len(ids)))
    order = sorted(range(len(ids)), key=ids.__getitem__)
    random.Random(seed).shuffle(order)
    return sorted(order[: max(1, round(fraction * len(ids)))])


def labelled_subset(utterances: Sequence[Utterance], fraction: float, seed: int
                    ) -> list[Utterance]:
    """The utterances whose transcripts a low-resource run uses (:func:`labelled_indices`)."""
    utts = list(utterances)
    return [utts[i] for i in labelled_indices([u.id for u in utts], fraction, seed)]


def training_pool(role: str, train_data: str) -> str | None:
    """``"all"`` when loader ``role`` draws from every training utterance (the unlabelled
    loader, or the training loader of ``train_data="all"``), ``"labelled"`` for the labelled
    training loader, None for the evaluation roles."""
    if train_data not in TRAIN_DATA:
        raise ValueError(f"train_data must be one of {TRAIN_DATA}, got {train_data!r}")
    if role == "unlabelled" or (role == "train" and train_data == "all"):
        return "all"
    return "labelled" if role == "train" else None
