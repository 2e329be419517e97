"""Seconds per training step and peak RSS of a recipe's model on real batches of its corpus.

    python benchmarks/train_step.py +experiment=synth_grid [overrides] --steps 6

Uses the experiment's datamodule (cached media, real transforms) and the stage's loss; the
first two steps are warm-up and not timed.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        out = Path(tempfile.gettempdir()) / "avsr_bench"
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={out}"])
    dm = hydra.utils.instantiate(cfg.data)
    tok = dm.load_tokenizer()
    with open_dict(cfg):
        cfg.vocab_size = tok.vocab_size
    dm.setup("fit")
    batches = []
    it = iter(dm.train_dataloader())
    for _ in range(args.steps):
        batches.append(next(it))
    model = hydra.utils.instantiate(cfg.model)
    task = hydra.utils.instantiate(cfg.stage, model=model, tokenizer=tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times, frames = [], 0
    for i, b in enumerate(batches):
        t = time.perf_counter()
        loss = task.objective(task.model, b)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t
        if i >= 2:
            times.append(dt)
            frames += int(b["video_lengths"].sum())
        print(f"step {i}: {dt:.2f} s  batch {tuple(b['video'].shape)}", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"s/step {sum(times) / len(times):.2f}  video frames/s {frames / sum(times):.0f}  "
          f"peak RSS {rss:.2f} GiB  params {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")


if __name__ == "__main__":
    main()
