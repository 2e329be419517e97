"""Training throughput: steps/s, frames/s, peak memory, model FLOPs per step and MFU.

    python benchmarks/train_throughput.py --models synth_grid base --steps 3 --threads 1

For each model (``synth_grid``: the ``+experiment=synth_grid`` model; ``base``: the default
Base-size model, 12 x 512 encoder, ResNet-18 front-ends; ``large``: USR/AV-HuBERT Large, 24 x
1024 encoder, 16 heads, FFN 4096, 9-layer decoder, 473 M parameters) one fixed random batch
(``--batch`` x ``--frames`` overrides the per-model default) is trained
(forward, hybrid loss over the A, V and AV streams, backward, AdamW step) under several
variants, each against the same plain fp32 eager step, the way USR and auto_avsr train:

- ``fp32-eager``: the baseline (float32, no compile, TF32 off);
- ``bf16-autocast``: ``torch.autocast(bfloat16)`` as ``trainer.precision=bf16-mixed`` runs it
  (losses and log-softmax stay float32);
- ``compile``: ``torch.compile`` of the encoder and decoder (``callbacks.performance``);
- on CUDA also ``bf16+tf32+compile``.

FLOPs come from ``torch.utils.flop_counter`` over one whole step (matrix products and
convolutions, forward and backward); MFU divides the achieved FLOP/s by the matmul rate of
this device measured in the same run (float32, and bfloat16 for the bf16 variants). Peak
memory is ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU
(cumulative over the run: read it as an upper bound). ``--time-budget S`` stops timing a
variant after S seconds of timed steps (the median of those taken counts); ``--json`` is
rewritten after every row, and a failing variant is recorded with its error
(benchmarks/device_check.sh runs this under a timeout on a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import hydra
import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from avsr.data.io import SAMPLES_PER_FRAME  # noqa: E402
from avsr.data.tokenizer import BLANK_ID, EOS_ID  # noqa: E402
from avsr.lightning.callbacks.speed_monitor import peak_memory_mb  # noqa: E402

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
MODELS = {
    # overrides, batch size, frames per item, video pixels
    "synth_grid": (["+experiment=synth_grid", "vocab_size=128"], 8, 60, 44),
    "base": (["vocab_size=1000"], 2, 50, 88),
    # USR/AV-HuBERT Large (../shared/REFERENCE.md, configs/experiment/usr_large_lrs3_low.yaml):
    # 24 x 1024 encoder, 16 heads, FFN 4096; decoder 9 x 1024
    "large": (["vocab_size=1000", "model.encoder.d_model=1024", "model.encoder.num_layers=24",
               "model.encoder.num_heads=16", "model.encoder.ffn_dim=4096",
               "model.decoder.num_layers=9", "model.decoder.ffn_dim=4096"], 2, 50, 88),
}


def build(name: str, batch: int | None = None, frames: int | None = None):
    overrides, batch0, frames0, pixels = MODELS[name]
    batch, frames = batch or batch0, frames or frames0
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        out = Path(tempfile.gettempdir()) / "avsr_bench"
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={out}"])
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    # random token ids and no corpus: avsr's SentencePiece special ids, as a trained one has
    ids = SimpleNamespace(blank_id=BLANK_ID, sos_id=EOS_ID, eos_id=EOS_ID)
    task = hydra.utils.instantiate(cfg.stage, model=model, tokenizer=ids)
    g = torch.Generator().manual_seed(0)
    length = 12
    data = {
        "video": torch.randn(batch, frames, 1, pixels, pixels, generator=g),
        "video_lengths": torch.full((batch,), frames),
        "audio": torch.randn(batch, frames * SAMPLES_PER_FRAME, generator=g),
        "audio_lengths": torch.full((batch,), frames * SAMPLES_PER_FRAME),
        "tokens": torch.randint(3, cfg.vocab_size, (batch, length), generator=g),
        "token_lengths": torch.full((batch,), length),
        "ids": [str(i) for i in range(batch)], "texts": [""] * batch,
    }
    return task, data


def to(data: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in data.items()}


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 1536, reps: int = 3,
                trials: int = 5) -> float:
    """Measured dense matmul FLOP/s of this device for ``dtype`` (best of ``trials``: the
    least disturbed by other processes)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(task, opt, data, autocast: torch.dtype | None, device: torch.device):
    def step() -> float:
        ctx = (torch.autocast(device.type, dtype=autocast) if autocast is not None
               else contextlib.nullcontext())
        with ctx:
            loss = task.objective(task.model, data)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)
    return step


def run_variant(name: str, variant: str, device: torch.device, steps: int,
                time_budget: float | None = None, batch: int | None = None,
                frames: int | None = None) -> dict:
    """``time_budget``: stop timing steps once this many seconds of timed steps have passed
    (at least one is timed; the warm-up and compilation are not bounded by it)."""
    task, data = build(name, batch, frames)
    task.to(device).train()
    data = to(data, device)
    autocast = torch.bfloat16 if "bf16" in variant else None
    torch.set_float32_matmul_precision("high" if "tf32" in variant else "highest")
    if "compile" in variant:
        for sub in (task.model.encoder, task.model.decoder):
            sub.compile(dynamic=False)
    opt = torch.optim.AdamW(task.parameters(), lr=1e-4)
    step = step_fn(task, opt, data, autocast, device)
    frames = int(data["video_lengths"].sum())
    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up (and compilation)
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if "compile" in variant:
        step()  # second warm-up: compiled backward
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
        if time_budget is not None and sum(times) >= time_budget:
            break
    sec = sorted(times)[len(times) // 2]  # median
    return {"model": name, "variant": variant, "s_per_step": sec, "steps_per_s": 1 / sec,
            "frames_per_s": frames / sec, "utterances_per_s": len(data["ids"]) / sec,
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops / sec / 1e9,
            "peak_memory_mb": peak_memory_mb(device),
            "params_m": sum(p.numel() for p in task.parameters()) / 1e6,
            "batch": len(data["ids"]), "frames_per_item": int(data["video_lengths"][0]),
            "timed_steps": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the rows here (rewritten after each row, so a run "
                             "killed by a timeout keeps what it measured)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of timed steps per model and variant (fewer steps then)")
    parser.add_argument("--batch", type=int, default=None, help="batch size for every model")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="n of the n x n x n products that measure the peak rate "
                             "(default: 8192 on CUDA, 1536 on CPU)")
    parser.add_argument("--frames", type=int, default=None, help="frames per item")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = args.variants or (["fp32-eager", "bf16-autocast", "compile"] if device.type == "cpu"
                                 else ["fp32-eager", "bf16-autocast", "bf16+tf32+compile"])
    torch.set_float32_matmul_precision("highest")
    n = args.matmul_size or (8192 if device.type == "cuda" else 1536)
    # only the dtypes a variant needs (bf16 products can be very slow on a CPU)
    peak = {"fp32": matmul_rate(device, torch.float32, n)
            if any("bf16" not in v for v in variants) else float("nan"),
            "bf16": matmul_rate(device, torch.bfloat16, n)
            if any("bf16" in v for v in variants) else float("nan")}
    print(f"device {device} threads {args.threads}: measured matmul fp32 "
          f"{peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s",
          file=sys.stderr)
    rows = []
    out = {"device": str(device), "threads": args.threads,
           "matmul_gflops": {k: v / 1e9 if v == v else None for k, v in peak.items()},
           "rows": rows}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    for name in args.models:
        base = None
        for variant in variants:
            try:
                row = run_variant(name, variant, device, args.steps, args.time_budget,
                                  args.batch, args.frames)
            except Exception as e:  # noqa: BLE001 - one failing variant must not lose the rest
                rows.append({"model": name, "variant": variant, "error": repr(e)[:2000]})
                print(f"{name:10s} {variant:18s} FAILED: {e!r}"[:2000], file=sys.stderr)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            rate = peak["bf16" if "bf16" in variant else "fp32"]
            row["mfu"] = row["achieved_gflops"] * 1e9 / rate
            base = base or row
            row["speedup_vs_fp32_eager"] = base["s_per_step"] / row["s_per_step"]
            rows.append(row)
            print(f"{name:10s} {variant:18s} {row['s_per_step']:7.3f} s/step "
                  f"{row['frames_per_s']:8.1f} frames/s {row['gflop_per_step']:8.1f} GFLOP/step "
                  f"MFU {row['mfu']:.1%}  peak {row['peak_memory_mb']:.0f} MiB  "
                  f"x{row['speedup_vs_fp32_eager']:.2f} vs fp32 eager", file=sys.stderr)
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
            if device.type == "cuda":
                del row
                torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
