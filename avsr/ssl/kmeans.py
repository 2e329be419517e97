"""Fit k-means targets and write one label file per utterance (AV-HuBERT iterations).

    # iteration 1: MFCC + deltas at 100 Hz
    python -m avsr.ssl.kmeans --root data/synthetic/grid --feature mfcc --num-clusters 100 \
        --out data/synthetic/grid/labels/mfcc_k100
    # iteration 2: block 3 of the iteration-1 model at 25 Hz
    python -m avsr.ssl.kmeans --root data/synthetic/grid --feature layer --layer 3 \
        --ckpt logs/iter1/checkpoints/last.ckpt --num-clusters 100 --out .../iter2_k100

Fits scikit-learn's ``MiniBatchKMeans`` on the features of a random ``--fit-fraction`` of the
first split's utterances (AV-HuBERT: 10 %), labels every utterance of every ``--splits``
split and writes ``<out>/<utterance id>.km`` plus ``<out>/kmeans.json`` (rate, K, feature,
inertia). Needs the ``ssl`` extra (``pip install -e .[ssl]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsr.data.corpora import LRS3, Utterance
from avsr.ssl.features import MFCC_RATE, layer_features, utterance_mfcc
from avsr.ssl.labels import VIDEO_RATE, write_labels

__all__ = ["fit_kmeans", "run", "ensure_labels", "main"]

log = logging.getLogger(__name__)


def _features(utts: Sequence[Utterance], args: argparse.Namespace
              ) -> Iterable[tuple[str, torch.Tensor]]:
    if args.feature == "mfcc":
        for u in utts:
            yield u.id, utterance_mfcc(u)
    else:
        yield from layer_features(args.ckpt, utts, args.layer, args.modality, args.source)


def fit_kmeans(features: np.ndarray, num_clusters: int, seed: int = 0, batch_size: int = 10000,
               max_iter: int = 100):
    """MiniBatchKMeans as HuBERT's ``learn_kmeans.py`` sets it up (k-means++ init, no
    reassignment, tol 0), with 3 initialisations instead of 20 and early stopping after 20
    mini-batches without improvement: CPU-sized."""
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=num_clusters, init="k-means++", max_iter=max_iter,
                         batch_size=batch_size, tol=0.0, max_no_improvement=20, n_init=3,
                         reassignment_ratio=0.0, random_state=seed)
    km.fit(features)
    return km


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.time()
    corpus = LRS3(args.root)
    splits = {s: corpus.utterances(s) for s in args.splits}
    fit_utts = list(splits[args.splits[0]])
    rng = random.Random(args.seed)
    rng.shuffle(fit_utts)
    fit_utts = fit_utts[: max(1, round(args.fit_fraction * len(fit_utts)))]
    feats = [f.numpy() for _, f in _features(fit_utts, args) if f.shape[0] > 0]
    data = np.concatenate(feats).astype(np.float32)
    if data.shape[0] < args.num_clusters:
        raise ValueError(f"{data.shape[0]} feature frames < {args.num_clusters} clusters")
    km = fit_kmeans(data, args.num_clusters, args.seed)
    out = Path(args.out)
    counts: dict[str, int] = {}
    for split, utts in splits.items():
        n = 0
        for utt_id, f in _features(utts, args):
            labels = km.predict(f.numpy().astype(np.float32)) if f.shape[0] else []
            write_labels(out, utt_id, labels)
            n += 1
        counts[split] = n
    meta = {
        "feature": args.feature, "layer": args.layer, "ckpt": args.ckpt,
        "modality": args.modality, "num_clusters": args.num_clusters,
        "label_rate": MFCC_RATE if args.feature == "mfcc" else VIDEO_RATE,
        "fit_frames": int(data.shape[0]), "fit_utterances": len(fit_utts),
        "inertia_per_frame": float(km.inertia_) / max(1, data.shape[0]) if hasattr(
            km, "inertia_") else None,
        "utterances": counts, "wall_s": round(time.time() - start, 1),
    }
    (out / "kmeans.json").write_text(json.dumps(meta, indent=2))
    log.info("k-means labels written to %s: %s", out, meta)
    return meta


def ensure_labels(root: str, out: str, feature: str = "mfcc", num_clusters: int = 100,
                  fit_fraction: float = 0.1, splits: Sequence[str] = ("train", "val"),
                  ckpt: str | None = None, layer: int | None = None,
                  modality: str = "audiovisual", source: str = "model", seed: int = 0
                  ) -> dict[str, Any]:
    """Make the labels unless ``<out>/kmeans.json`` exists (the ``ssl_labels`` node of a
    training config; ``avsr.train`` calls it before building the stage)."""
    meta = Path(out) / "kmeans.json"
    if meta.is_file():
        log.info("k-means labels present at %s", out)
        return json.loads(meta.read_text())
    args = argparse.Namespace(root=root, out=out, feature=feature, num_clusters=num_clusters,
                              fit_fraction=fit_fraction, splits=list(splits), ckpt=ckpt,
                              layer=layer, modality=modality, source=source, seed=seed)
    return run(args)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="Fit k-means targets and write label files.")
    p.add_argument("--root", required=True, help="corpus root (LRS3 layout)")
    p.add_argument("--splits", nargs="+", default=["train", "val"],
                   help="splits to label; the first is the one k-means is fitted on")
    p.add_argument("--feature", choices=["mfcc", "layer"], default="mfcc")
    p.add_argument("--ckpt", default=None, help="avsr checkpoint (--feature layer)")
    p.add_argument("--layer", type=int, default=None, help="encoder block, 1-based")
    p.add_argument("--modality", default="audiovisual", help="input of the layer features")
    p.add_argument("--source", default="model",
                   help="model prefix in the checkpoint (model | objective.teacher.model)")
    p.add_argument("--num-clusters", type=int, default=100)
    p.add_argument("--fit-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.feature == "layer" and (args.ckpt is None or args.layer is None):
        p.error("--feature layer needs --ckpt and --layer")
    logging.basicConfig(level=logging.INFO)
    return run(args)


if __name__ == "__main__":
    main()
