"""Does ``torch.compile`` of the decoder step pay off in beam search? Compile time and step time.

    python benchmarks/decode_compile.py [--steps 20] [--threads 1]

The synth_grid decoder (random weights) steps a beam-40 grid of 32 utterances (1,280 rows,
145 memory frames) ``--steps`` times from sos, eager and as ``torch.compile(step,
dynamic=True)`` (inductor): the first three compiled steps (compilation and recompilations
as the prefix grows) are timed apart from the steady state. Reports the wall
times of the step calls only (the reorder between steps is an identity ``select``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import decode as bench  # noqa: E402


@torch.inference_mode()
def _steps(decoder, step, memory, lengths, beam: int, steps: int) -> float:
    groups = memory.shape[0]
    state = decoder.init_state(memory, lengths, max_len=steps + 2)
    _, state = step(torch.full((groups,), 2), state)
    state = state.select(torch.arange(groups).repeat_interleave(beam), None)
    rows = groups * beam
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for _ in range(steps):
        tokens = torch.randint(3, 15, (rows,), generator=g)
        start = time.perf_counter()
        _, state = step(tokens, state)
        total += time.perf_counter() - start
        state = state.select(torch.arange(rows), None)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    decoder = bench._synthetic_model().decoder
    memory = torch.randn(32, 145, decoder.d_model)
    lengths = torch.randint(50, 146, (32,), generator=torch.Generator().manual_seed(1))
    _steps(decoder, decoder.step, memory, lengths, 40, 2)
    eager = _steps(decoder, decoder.step, memory, lengths, 40, args.steps)
    compiled = torch.compile(decoder.step, dynamic=True)
    start = time.perf_counter()
    _steps(decoder, compiled, memory, lengths, 40, 3)
    compile_s = time.perf_counter() - start
    steady = _steps(decoder, compiled, memory, lengths, 40, args.steps)
    print(f"{args.steps} steps of 1,280 rows: eager {eager:.2f} s, compiled {steady:.2f} s "
          f"({eager / steady:.2f}x); compilation (first 3 steps) {compile_s:.0f} s")


if __name__ == "__main__":
    main()
