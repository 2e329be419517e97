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

``--storage media shards`` measures both storages in one run: ``media`` decodes the mp4s with
PyAV, ``shards`` reads pre-decoded frames (:mod:`avsr.data.shards`) from ``--shards DIR``,
written first from ``--root`` when DIR holds no index (the write time is reported). Each storage
also gets a single-process breakdown (``--stages``): media read only, read + transforms, and the
whole item + collate, frames per wall second and per CPU second, with glibc's default malloc
thresholds and then with the raised ones the loader workers use. Rows also give frames per CPU
second of the whole pipeline (main process and workers): what dedicated cores would deliver on a
machine shared with other jobs.

``--consumption base`` adds the reference: the video frames/s one GPU consumes training the Base
model, estimated as ``--peak-tflops`` (H200 dense bf16, 990) x ``--mfu`` (0.4) / FLOPs per video
frame of one whole training step (forward + backward of the A, V and AV streams, counted by
``torch.utils.flop_counter`` on a 2 x 50-frame batch, as train_throughput.py does), and the
workers per GPU each storage needs for ``--margin`` (3) times that rate.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from avsr.data.corpora import LRS3  # noqa: E402
from avsr.data.dataset import AVDataset  # noqa: E402
from avsr.data.loading import raise_malloc_thresholds, worker_init  # noqa: E402
from avsr.data.shards import ShardDataset, ShardIndex  # noqa: E402
from avsr.data.transforms import AudioTransform, VideoTransform  # noqa: E402


def make_dataset(utterances, storage: str) -> AVDataset:
    cls = ShardDataset if storage == "shards" else AVDataset
    return cls(utterances, None, VideoTransform(train=True, crop_size=88),
               AudioTransform(train=True), max_bad_fraction=1.0)


def _cpu_s(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def stages(utterances, storage: str, max_seconds: float) -> dict:
    """Single-process frames per wall second and per CPU second of: media read only, read +
    transforms, item + collate (CPU seconds: what one dedicated core would do; the wall rate
    depends on the machine's load)."""
    dataset = make_dataset(utterances, storage)
    out = {}
    for stage in ("read", "read+transforms", "item+collate"):
        frames, start, cpu = 0, time.perf_counter(), _cpu_s()
        for i in range(len(dataset)):
            if stage == "read":
                video, _ = dataset.load_media(i)
                frames += video.shape[0]
            elif stage == "read+transforms":
                video, audio = dataset.load_media(i)
                dataset.video_transform(video)
                dataset.audio_transform(audio)
                frames += video.shape[0]
            else:
                batch = dataset.collate([dataset[i]])
                frames += int(batch["video_lengths"].sum())
            if time.perf_counter() - start >= max_seconds:
                break
        out[stage] = {"frames_per_s": frames / (time.perf_counter() - start),
                      "frames_per_cpu_s": frames / max(1e-9, _cpu_s() - cpu)}
    return out


def consumption(model: str, peak_tflops: float, mfu: float) -> dict:
    """Video frames/s one GPU consumes training ``model`` at ``mfu`` of ``peak_tflops``."""
    from torch.utils.flop_counter import FlopCounterMode

    from train_throughput import build, step_fn

    task, data = build(model)
    opt = torch.optim.AdamW(task.parameters(), lr=1e-4)
    with FlopCounterMode(display=False) as counter:
        step_fn(task, opt, data, None, torch.device("cpu"))()
    frames = int(data["video_lengths"].sum())
    per_frame = counter.get_total_flops() / frames
    return {"model": model, "flops_per_video_frame": per_frame, "batch_frames": frames,
            "peak_tflops": peak_tflops, "mfu": mfu,
            "frames_per_s_per_gpu": peak_tflops * 1e12 * mfu / per_frame}


def measure(utterances, workers: int, batch_size: int, max_seconds: float,
            storage: str = "media") -> dict:
    dataset = make_dataset(utterances, storage)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=dataset.collate, persistent_workers=False,
                        worker_init_fn=worker_init)
    start, cpu, cpu_children = time.perf_counter(), _cpu_s(), _cpu_s(children=True)
    first = None
    frames = items = batches = 0
    iterator = iter(loader)
    for batch in iterator:
        now = time.perf_counter()
        if first is None:
            first = now - start
        frames += int(batch["video_lengths"].sum())
        items += len(batch["ids"])
        batches += 1
        if now - start >= max_seconds:
            break
    wall = time.perf_counter() - start
    del iterator  # joins the workers: their CPU time is in RUSAGE_CHILDREN from here
    cpu = _cpu_s() - cpu + _cpu_s(children=True) - cpu_children
    return {"storage": storage, "workers": workers, "items": items, "batches": batches,
            "video_frames": frames, "wall_s": wall, "first_batch_s": first,
            "frames_per_s": frames / wall,
            "frames_per_s_per_worker": frames / wall / max(workers, 1),
            "items_per_s": items / wall, "cpu_s": cpu, "frames_per_cpu_s": frames / cpu}


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
    parser.add_argument("--storage", nargs="+", choices=("media", "shards"), default=["media"])
    parser.add_argument("--shards", type=Path, default=None,
                        help="shard directory (written from --root when it has no index)")
    parser.add_argument("--stages", action="store_true", help="single-process breakdown")
    parser.add_argument("--consumption", choices=("base", "synth_grid", "large"), default=None)
    parser.add_argument("--peak-tflops", type=float, default=990.0)
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--margin", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = LRS3(args.root).utterances(args.split)
    out = {"root": str(args.root), "split": args.split, "utterances": len(base) * args.repeat,
           "batch_size": args.batch_size, "rows": []}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))

    sets = {}
    for storage in args.storage:
        utts = base
        if storage == "shards":
            if args.shards is None:
                parser.error("--storage shards needs --shards DIR")
            if not (args.shards / "index.jsonl").is_file():
                from avsr.prepare.shards import corpus_utterances, write_shards

                t = time.perf_counter()
                counts = write_shards(corpus_utterances("lrs3", args.root, [args.split]),
                                      args.shards)
                out["shard_write"] = {**counts, "wall_s": time.perf_counter() - t}
            utts = ShardIndex.open(args.shards).resolve(base)
        sets[storage] = utts * args.repeat
    # glibc's default malloc thresholds first (they cannot be restored once raised), then the
    # raised ones the loader workers use (avsr.data.loading.worker_init)
    for malloc in ("default", "raised") if args.stages else ():
        if malloc == "raised":
            raise_malloc_thresholds()
        for storage in args.storage:
            row = stages(sets[storage], storage, args.max_seconds)
            out.setdefault("stages", {}).setdefault(malloc, {})[storage] = row
            print(json.dumps({"malloc": malloc, storage: row}), file=sys.stderr)
            save()
    raise_malloc_thresholds()  # the main process decodes for 0 workers
    if args.consumption:  # after the stages: the model's step would move the thresholds
        out["consumption"] = consumption(args.consumption, args.peak_tflops, args.mfu)
        print(json.dumps(out["consumption"]), file=sys.stderr)
    for storage in args.storage:
        for workers in args.workers:
            try:
                row = measure(sets[storage], workers, args.batch_size, args.max_seconds, storage)
            except Exception as e:  # noqa: BLE001 - keep the other worker counts
                row = {"storage": storage, "workers": workers, "error": repr(e)[:2000]}
            out["rows"].append(row)
            print(json.dumps(row), file=sys.stderr)
            save()
    if "consumption" in out:
        target = args.margin * out["consumption"]["frames_per_s_per_gpu"]
        out["needed"] = {}
        for storage in args.storage:
            rates = [r["frames_per_s_per_worker"] for r in out["rows"]
                     if r.get("storage") == storage and r["workers"] > 0 and "error" not in r]
            cpu = [r["frames_per_cpu_s"] for r in out["rows"]
                   if r.get("storage") == storage and r["workers"] > 0 and "error" not in r]
            if rates:
                # wall rates hold on an idle machine; CPU-second rates say what dedicated
                # cores would do on a shared one
                out["needed"][storage] = {
                    "target_frames_per_s_per_gpu": target,
                    "best_frames_per_s_per_worker": max(rates),
                    "workers_per_gpu": math.ceil(target / max(rates)),
                    "best_frames_per_cpu_s": max(cpu),
                    "cores_per_gpu": math.ceil(target / max(cpu))}
    save()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
