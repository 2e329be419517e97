"""Where a CPU training step's time goes, and candidate speed-ups against it in the same run.

    python benchmarks/step_profile.py --model synth_grid --steps 4 --threads 2

One fixed random batch of the model (train_throughput.py's ``build``: synth_grid is 8 x 60
frames at 44 px) is trained (forward, hybrid loss over A, V, AV, backward, AdamW). Reported:

- ``parts``: seconds per step of each top-level model part's forward (video front-end, audio
  front-end, fusion, encoder, decoder, ...; forward hooks), the loss head, backward and the
  optimizer step, fp32 eager;
- ``ops``: the operators with the most self CPU time over the profiled steps (torch.profiler);
- ``variants``: s/step of candidate changes, each against the fp32 eager step measured in the
  same process (``ratio`` > 1 is faster), with the largest difference of the loss from fp32
  eager: ``malloc`` (glibc's mmap/trim thresholds raised, as ``GLIBC_TUNABLES`` in ``make
  demo`` and the loader workers), ``channels_last`` (front-end activations in channels-last
  memory layout), ``bf16`` (autocast, the recipe's precision where the CPU has native bf16),
  ``threads1`` (one intra-op thread instead of ``--threads``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_throughput import MODELS, build  # noqa: E402

from avsr.data.loading import raise_malloc_thresholds  # noqa: E402


def make_step(task, data, autocast: bool = False):
    opt = torch.optim.AdamW(task.parameters(), lr=1e-4)

    def step() -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            loss = task.objective(task.model, data)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())
    return step


def timed(step, steps: int) -> tuple[float, list[float]]:
    step()  # warm-up
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], losses


def parts(name: str, steps: int) -> dict[str, float]:
    """Seconds per step of each model part's forward, the rest of the forward, backward, opt."""
    task, data = build(name)
    acc: dict[str, float] = {}
    starts: dict[str, float] = {}
    for part, module in task.model.named_children():
        module.register_forward_pre_hook(
            lambda m, a, p=part: starts.__setitem__(p, time.perf_counter()))
        module.register_forward_hook(lambda m, a, o, p=part: acc.__setitem__(
            p, acc.get(p, 0.0) + time.perf_counter() - starts[p]))
    opt = torch.optim.AdamW(task.parameters(), lr=1e-4)
    total = {"forward (all)": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i in range(steps + 1):
        if i == 1:  # the first step is the warm-up
            acc.clear()
            total = dict.fromkeys(total, 0.0)
        t0 = time.perf_counter()
        loss = task.objective(task.model, data)["loss"]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        total["forward (all)"] += t1 - t0
        total["backward"] += t2 - t1
        total["optimizer"] += t3 - t2
    out = {f"forward: {k}": v / steps for k, v in acc.items()}
    out["forward: rest (losses, stacking)"] = (total["forward (all)"] - sum(acc.values())) / steps
    out.update({k: v / steps for k, v in total.items()})
    return out


def ops(name: str, steps: int, top: int) -> list[dict]:
    task, data = build(name)
    step = make_step(task, data)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    return [{"op": e.key, "self_s_per_step": e.self_cpu_time_total / 1e6 / steps,
             "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
            for e in rows[:top]]


def variants(name: str, steps: int, threads: int) -> list[dict]:
    """fp32 eager and each candidate, interleaved twice (A B A B) so load drifts cancel."""
    out: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}

    def run(variant: str) -> None:
        torch.set_num_threads(1 if variant == "threads1" else threads)
        task, data = build(name)  # same seed: same weights and batch for every variant
        if variant == "channels_last":
            for module in task.model.modules():
                if isinstance(module, torch.nn.Conv2d | torch.nn.Conv3d):
                    fmt = (torch.channels_last if isinstance(module, torch.nn.Conv2d)
                           else torch.channels_last_3d)
                    module.to(memory_format=fmt)
        sec, ls = timed(make_step(task, data, autocast=variant == "bf16"), steps)
        out.setdefault(variant, []).append(sec)
        losses.setdefault(variant, ls)

    names = ["fp32-eager", "channels_last", "threads1"]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        names.append("bf16")
    for _ in range(2):
        for v in names:
            run(v)
    # glibc's defaults cannot be restored once raised: this one runs last, against the
    # fp32 eager figures above
    raise_malloc_thresholds()
    for _ in range(2):
        run("malloc")
    torch.set_num_threads(threads)
    base = min(out["fp32-eager"])
    return [{"variant": v, "s_per_step": min(t), "ratio": base / min(t),
             "max_loss_diff": max(abs(a - b) for a, b in zip(losses[v], losses["fp32-eager"]))}
            for v, t in out.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synth_grid", choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"model": args.model, "threads": args.threads, "steps": args.steps}
    result["variants"] = None
    result["parts"] = parts(args.model, args.steps)
    print(json.dumps(result["parts"], indent=1), file=sys.stderr)
    result["ops"] = ops(args.model, args.steps, args.top)
    for r in result["ops"]:
        print(f"{r['op']:40s} {r['self_s_per_step']:.3f} s {r['share']:.0%}", file=sys.stderr)
    result["variants"] = variants(args.model, args.steps, args.threads)
    print(json.dumps(result["variants"], indent=1), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
