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

``--augment cpu device`` measures both places of the augmentation in one run: ``cpu`` as above
(float crops from the workers), ``device`` as ``data.augment_on=device`` (the workers send padded
uint8 frames and raw audio; :class:`~avsr.data.device_augment.BatchAugment` augments each
received batch, on ``--augment-device``: the CPU as a stand-in for the GPU, or cuda). Device rows
give the loader's frames per CPU second without the augmentation (what the GPU host's cores
pay), the batched augmentation's own rate on ``--augment-device`` (``augment_frames_per_s``; on
the CPU also per CPU second) and that of its per-item random draws, which stay on the CPU
(``draw_frames_per_cpu_s``), and the bytes per frame a batch carries from the workers.

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
from avsr.data.device_augment import BatchAugment, RawVideo  # noqa: E402
from avsr.data.loading import raise_malloc_thresholds, worker_init  # noqa: E402
from avsr.data.shards import ShardDataset, ShardIndex  # noqa: E402
from avsr.data.transforms import AudioTransform, VideoTransform  # noqa: E402


def train_transforms() -> tuple[VideoTransform, AudioTransform]:
    return VideoTransform(train=True, crop_size=88), AudioTransform(train=True)


def make_dataset(utterances, storage: str, augment: str = "cpu") -> AVDataset:
    cls = ShardDataset if storage == "shards" else AVDataset
    video, audio = train_transforms() if augment == "cpu" else (RawVideo(), None)
    return cls(utterances, None, video, audio, max_bad_fraction=1.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceAugmentTimer:
    """Augments received batches as ``on_after_batch_transfer`` would, and times it apart:
    the transfer + batched augmentation (wall, and CPU seconds when the device is the CPU)
    and the per-item random draws alone (always on the CPU)."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.augment = BatchAugment.from_transforms(*train_transforms()).to(self.device)
        self.wall = self.cpu = self.draw_cpu = 0.0
        self.bytes = 0

    def __call__(self, batch: dict) -> dict:
        size = len(batch["ids"])
        if size == 0:
            return batch
        batch["seeds"] = torch.arange(size)  # seeded draws, as the data module's sampler gives
        self.bytes += sum(batch[k].numel() * batch[k].element_size() for k in ("video", "audio")
                          if batch.get(k) is not None)
        cpu = _cpu_s()
        gens = self.augment.generators(batch["seeds"], size)
        self.augment.audio.draw(batch["audio_lengths"].tolist(), gens)
        v = batch["video"]
        self.augment.video.draw(batch["video_lengths"].tolist(), v.shape[2], v.shape[3], gens)
        self.draw_cpu += _cpu_s() - cpu
        start, cpu = time.perf_counter(), _cpu_s()
        moved = {k: (x.to(self.device, non_blocking=True) if torch.is_tensor(x) else x)
                 for k, x in batch.items()}
        out = self.augment(moved)
        _sync(self.device)
        self.wall += time.perf_counter() - start
        self.cpu += _cpu_s() - cpu
        return out

    def row(self, frames: int) -> dict:
        out = {"augment_device": str(self.device),
               "augment_frames_per_s": frames / max(1e-9, self.wall),
               "draw_frames_per_cpu_s": frames / max(1e-9, self.draw_cpu),
               "batch_bytes_per_frame": self.bytes / max(1, frames)}
        if self.device.type == "cpu":
            out["augment_frames_per_cpu_s"] = frames / max(1e-9, self.cpu)
        return out


def _cpu_s(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def stages(utterances, storage: str, max_seconds: float, augment: tuple[str, ...] = ("cpu",),
           batch_size: int = 8) -> dict:
    """Single-process frames per wall second and per CPU second of: media read only, read +
    transforms, item + collate (CPU seconds: what one dedicated core would do; the wall rate
    depends on the machine's load); with ``device`` in ``augment`` also the uint8 item +
    collate of ``augment_on=device`` and its batched augmentation on the CPU (a stand-in for
    the GPU: ``batch_size`` items per batch)."""
    dataset = make_dataset(utterances, storage)
    out = {}
    if "device" in augment:
        out.update(device_stages(utterances, storage, max_seconds, batch_size))
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


def device_stages(utterances, storage: str, max_seconds: float, batch_size: int) -> dict:
    """``augment_on=device`` in one process: uint8 items + collate, then the CPU stand-in of
    the batched augmentation (timed apart)."""
    dataset = make_dataset(utterances, storage, "device")
    timer = DeviceAugmentTimer("cpu")
    frames, start, cpu, aside, aside_cpu = 0, time.perf_counter(), _cpu_s(), 0.0, 0.0
    for first in range(0, len(dataset), batch_size):
        batch = dataset.collate([dataset[i] for i in range(first, min(first + batch_size,
                                                                       len(dataset)))])
        frames += int(batch["video_lengths"].sum())
        t, c = time.perf_counter(), _cpu_s()
        timer(batch)
        aside, aside_cpu = aside + time.perf_counter() - t, aside_cpu + _cpu_s() - c
        if time.perf_counter() - start - aside >= max_seconds:
            break
    wall, cpu = time.perf_counter() - start - aside, _cpu_s() - cpu - aside_cpu
    return {"uint8 item+collate": {"frames_per_s": frames / wall,
                                   "frames_per_cpu_s": frames / max(1e-9, cpu)},
            "batched device augment (on the CPU)": {
                "frames_per_s": timer.row(frames)["augment_frames_per_s"],
                "frames_per_cpu_s": timer.row(frames)["augment_frames_per_cpu_s"],
                "draw_frames_per_cpu_s": timer.row(frames)["draw_frames_per_cpu_s"]}}


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
            storage: str = "media", augment: str = "cpu", augment_device: str = "cpu") -> dict:
    """One DataLoader pass. The loader's wall and CPU time exclude the device augmentation
    (timed apart by :class:`DeviceAugmentTimer`: on a GPU it overlaps the loader)."""
    dataset = make_dataset(utterances, storage, augment)
    timer = DeviceAugmentTimer(augment_device) if augment == "device" else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=dataset.collate, persistent_workers=False,
                        worker_init_fn=worker_init)
    start, cpu, cpu_children = time.perf_counter(), _cpu_s(), _cpu_s(children=True)
    first = None
    frames = items = batches = 0
    aside = aside_cpu = 0.0  # the device augmentation's time, taken out of the loader's
    iterator = iter(loader)
    for batch in iterator:
        now = time.perf_counter()
        if first is None:
            first = now - start
        frames += int(batch["video_lengths"].sum())
        items += len(batch["ids"])
        batches += 1
        if timer is not None:
            t, c = time.perf_counter(), _cpu_s()
            timer(batch)
            aside, aside_cpu = aside + time.perf_counter() - t, aside_cpu + _cpu_s() - c
        if now - start - aside >= max_seconds:
            break
    wall = time.perf_counter() - start - aside
    del iterator  # joins the workers: their CPU time is in RUSAGE_CHILDREN from here
    cpu = _cpu_s() - cpu + _cpu_s(children=True) - cpu_children - aside_cpu
    extra = {} if timer is None else timer.row(frames)
    return {"storage": storage, "augment": augment, "workers": workers, "items": items,
            "batches": batches, **extra,
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
    parser.add_argument("--augment", nargs="+", choices=("cpu", "device"), default=["cpu"],
                        help="where the training augmentation runs (data.augment_on)")
    parser.add_argument("--augment-device", default="cpu",
                        help="device of the batched augmentation in --augment device rows")
    parser.add_argument("--shards", type=Path, default=None,
                        help="shard directory (written from --root when it has no index)")
    parser.add_argument("--stages", action="store_true", help="single-process breakdown")
    parser.add_argument("--consumption", choices=("base", "synth_grid", "large"), default=None)
    parser.add_argument("--peak-tflops", type=float, default=990.0)
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--margin", type=float, default=3.0)
    parser.add_argument("--cores-per-gpu", type=int, default=14,
                        help="a typical node's cores per GPU, for the consumption multiple")
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
            row = stages(sets[storage], storage, args.max_seconds, tuple(args.augment),
                         args.batch_size)
            out.setdefault("stages", {}).setdefault(malloc, {})[storage] = row
            print(json.dumps({"malloc": malloc, storage: row}), file=sys.stderr)
            save()
    raise_malloc_thresholds()  # the main process decodes for 0 workers
    if args.consumption:  # after the stages: the model's step would move the thresholds
        out["consumption"] = consumption(args.consumption, args.peak_tflops, args.mfu)
        print(json.dumps(out["consumption"]), file=sys.stderr)
    for storage in args.storage:
        for augment in args.augment:
            for workers in args.workers:
                try:
                    row = measure(sets[storage], workers, args.batch_size, args.max_seconds,
                                  storage, augment, args.augment_device)
                except Exception as e:  # noqa: BLE001 - keep the other worker counts
                    row = {"storage": storage, "augment": augment, "workers": workers,
                           "error": repr(e)[:2000]}
                out["rows"].append(row)
                print(json.dumps(row), file=sys.stderr)
                save()
    if "consumption" in out:
        target = args.margin * out["consumption"]["frames_per_s_per_gpu"]
        out["needed"] = {}
        for storage in args.storage:
            for augment in args.augment:
                rows = [r for r in out["rows"] if r.get("storage") == storage and
                        r.get("augment") == augment and r["workers"] > 0 and "error" not in r]
                if not rows:
                    continue
                rate = max(r["frames_per_s_per_worker"] for r in rows)
                cpu = max(r["frames_per_cpu_s"] for r in rows)
                # wall rates hold on an idle machine; CPU-second rates say what dedicated
                # cores would do on a shared one
                key = storage if augment == "cpu" else f"{storage}+device_augment"
                out["needed"][key] = {
                    "target_frames_per_s_per_gpu": target,
                    "best_frames_per_s_per_worker": rate,
                    "workers_per_gpu": math.ceil(target / rate),
                    "best_frames_per_cpu_s": cpu,
                    "cores_per_gpu": math.ceil(target / cpu),
                    f"consumption_multiple_at_{args.cores_per_gpu}_cores":
                        cpu * args.cores_per_gpu / out["consumption"]["frames_per_s_per_gpu"]}
    save()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
