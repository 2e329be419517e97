"""Per-utterance cluster label files, as AV-HuBERT's ``.km`` lines but one file per utterance.

``<label_dir>/<utterance id>.km`` holds the space-separated cluster ids of one utterance at
``label_rate`` Hz; ``<label_dir>/kmeans.json`` says the rate, the cluster count and the
features they came from (written by ``python -m avsr.ssl.kmeans``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["ClusterLabels", "read_labels", "write_labels", "IGNORE"]

#: target id of frames without a label (padding)
IGNORE = -100
VIDEO_RATE = 25


def write_labels(label_dir: str | Path, utt_id: str, labels: Sequence[int]) -> Path:
    path = Path(label_dir) / f"{utt_id}.km"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(str(int(x)) for x in labels) + "\n")
    return path


def read_labels(label_dir: str | Path, utt_id: str) -> list[int]:
    path = Path(label_dir) / f"{utt_id}.km"
    if not path.is_file():
        raise FileNotFoundError(f"no cluster labels for {utt_id!r} ({path}); run "
                                "python -m avsr.ssl.kmeans first")
    return [int(x) for x in path.read_text().split()]


class ClusterLabels:
    """Reads label files (memoised) and aligns them to the model's 25 Hz frames.

    Model frame t covers [t/25, (t+1)/25) s; it takes the label whose frame holds the centre
    of that interval (index ``floor((t + 0.5) · rate / 25)``), i.e. every 4th MFCC label at
    100 Hz, the label itself at 25 Hz.

    Args:
        label_dir: directory of ``.km`` files with a ``kmeans.json``.
        label_rate: labels per second; ``None`` reads it from ``kmeans.json``.
        num_clusters: cluster count; ``None`` reads it from ``kmeans.json``.
    """

    def __init__(self, label_dir: str | Path, label_rate: float | None = None,
                 num_clusters: int | None = None) -> None:
        self.label_dir = Path(label_dir)
        meta_path = self.label_dir / "kmeans.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.label_rate = float(label_rate or meta.get("label_rate", VIDEO_RATE))
        self.num_clusters = int(num_clusters or meta.get("num_clusters", 0))
        if self.num_clusters <= 0:
            raise ValueError(f"{meta_path}: num_clusters unknown; give num_clusters")
        self._cache: dict[str, torch.Tensor] = {}

    def utterance(self, utt_id: str) -> torch.Tensor:
        if utt_id not in self._cache:
            self._cache[utt_id] = torch.tensor(read_labels(self.label_dir, utt_id),
                                               dtype=torch.long)
        return self._cache[utt_id]

    def batch(self, ids: Sequence[str], frames: int, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) long targets at 25 Hz, ``IGNORE`` past each length or the label file's end."""
        out = torch.full((len(ids), frames), IGNORE, dtype=torch.long)
        t = torch.arange(frames)
        idx = ((t + 0.5) * self.label_rate / VIDEO_RATE).floor().long()
        for b, utt in enumerate(ids):
            lab = self.utterance(utt)
            n = min(int(lengths[b]), frames)
            ok = idx[:n] < lab.numel()
            out[b, :n][ok] = lab[idx[:n][ok]]
        return out.to(lengths.device)
