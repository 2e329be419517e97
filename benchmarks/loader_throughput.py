"""Data-loader throughput: video frames/s of decode + transform for several worker counts.

    python benchmarks/loader_throughput.py --root data/synthetic/grid --workers 0 2 4 8 \
        [--split train] [--batch-size 8] [--max-seconds 20] [--json out.json]

The training split of an LRS3-layout corpus (e.g. one made by ``python -m avsr.data.synthetic``)
goes through :class:`~avsr.data.dataset.AVDataset` with the training transforms of
``configs/data/default.yaml`` (88 px video crop with flip and time masks, audio time masks; no
babble noise, no tokenizer) and a ``torch.utils.data.DataLoader`` with each worker count, one
pass (cut at ``--max-seconds``, at least one batch). Reported: video frames/s overall and per
worker (0 workers: the main process counts as one), the first batch's latency apart (worker
start-up). Compare with the frames/s a training step consumes (train_throughput.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from avsr.data.corpora import LRS3  # noqa: E402
from avsr.data.dataset import AVDataset  # noqa: E402
from avsr.data.transforms import AudioTransform, VideoTransform  # noqa: E402


def measure(utterances, workers: int, batch_size: int, max_seconds: float) -> dict:
    dataset = AVDataset(utterances, None, VideoTransform(train=True, crop_size=88),
                        AudioTransform(train=True), max_bad_fraction=1.0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=dataset.collate, persistent_workers=False)
    start = time.perf_counter()
    first = None
    frames = items = batches = 0
    for batch in loader:
        now = time.perf_counter()
        if first is None:
            first = now - start
        frames += int(batch["video_lengths"].sum())
        items += len(batch["ids"])
        batches += 1
        if now - start >= max_seconds:
            break
    wall = time.perf_counter() - start
    return {"workers": workers, "items": items, "batches": batches, "video_frames": frames,
            "wall_s": wall, "first_batch_s": first, "frames_per_s": frames / wall,
            "frames_per_s_per_worker": frames / wall / max(workers, 1),
            "items_per_s": items / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="LRS3-layout corpus root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="pass over the utterances this many times (a small corpus)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (main process)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    utterances = LRS3(args.root).utterances(args.split) * args.repeat
    out = {"root": str(args.root), "split": args.split, "utterances": len(utterances),
           "batch_size": args.batch_size, "rows": []}
    for workers in args.workers:
        try:
            row = measure(utterances, workers, args.batch_size, args.max_seconds)
        except Exception as e:  # noqa: BLE001 - keep the other worker counts
            row = {"workers": workers, "error": repr(e)[:2000]}
        out["rows"].append(row)
        print(json.dumps(row), file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
