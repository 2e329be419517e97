"""Where our beam search's time goes, and its physical bound.

    python benchmarks/decode_profile.py [--synthetic 32] [--beam 40] [--threads 1]

On the ``--synthetic`` utterances of ``benchmarks/decode.py`` (random synth_grid weights,
peaked CTC posteriors, 50-150 encoder frames): one warm-up search, then

- the CPU time (``time.thread_time``, so other processes' load counts far less than in wall
  time; exact for one intra-op thread) of the search's regions: the decoder step and inside
  it the FFNs and the cross-attention, the cache reorder, CTC prefix scoring (``score``) and
  the CTC forward variables (``extend``); the rest is the search's own top-k and bookkeeping;
- the matrix-product FLOPs of one search (``torch.utils.flop_counter``: linear layers,
  attention products, CTC's float64 product), per hypothesis and step;
- the matmul rate of this CPU measured in the same run: the FFN's own product (1,280 rows,
  144 -> 576) and a 1024^3 one, fp32;
- the bound: the FLOPs at that rate, against the measured time.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import decode as bench  # noqa: E402

from avsr.decoding import ctc_prefix_score  # noqa: E402
from avsr.models import decoder as decoder_module  # noqa: E402


def _timed(owner, name: str, label: str, acc: collections.Counter, counts: collections.Counter):
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.thread_time()
        out = original(*args, **kwargs)
        acc[label] += time.thread_time() - start
        counts[label] += 1
        return out

    setattr(owner, name, wrapper)
    return original


def _matmul_rate(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    done, start = 0, time.thread_time()
    while time.thread_time() - start < seconds:
        a @ b
        done += 1
    return 2 * m * k * n * done / (time.thread_time() - start)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=32)
    parser.add_argument("--beam", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctc-weight", type=float, default=0.1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.pt"
        bench._synthesize(args.synthetic, path)
        data = torch.load(path, weights_only=True)
    model = bench._synthetic_model()

    def search() -> None:
        bench._run_ours(model, data, args.beam, args.ctc_weight, batch_size=args.synthetic)

    search()  # warm-up
    start, start_cpu = time.perf_counter(), time.thread_time()
    search()
    wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu

    acc: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    layer = decoder_module.TransformerDecoderLayer
    regions = [(decoder_module.TransformerDecoder, "step", "decoder step"),
               (layer, "_ffn", "  of which FFN"),
               (layer, "_cross_attend", "  of which cross-attention"),
               (decoder_module.DecoderState, "select", "cache reorder"),
               (ctc_prefix_score.CTCPrefixScorer, "score", "CTC prefix scores"),
               (ctc_prefix_score.CTCPrefixScorer, "extend", "CTC forward variables")]
    originals = [(owner, name, _timed(owner, name, label, acc, counts))
                 for owner, name, label in regions]
    # hypothesis-steps: rows the decoder computes (all, or the live ones)
    rows_stepped = [0]
    step = decoder_module.TransformerDecoder.step

    def counting_step(self, tokens_last, state, rows=None):
        rows_stepped[0] += len(tokens_last) if rows is None else len(rows)
        return step(self, tokens_last, state, rows)

    decoder_module.TransformerDecoder.step = counting_step
    start_cpu = time.thread_time()
    search()
    cpu_regions = time.thread_time() - start_cpu
    for owner, name, original in originals:  # also undoes counting_step
        setattr(owner, name, original)
    hyp_steps = rows_stepped[0]
    with FlopCounterMode(display=False) as counter:
        search()
    flops = counter.get_total_flops()
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}

    rate_ffn = _matmul_rate(1280, 144, 576)
    rate_big = _matmul_rate(1024, 1024, 1024)
    result = {
        "utterances": args.synthetic, "beam": args.beam, "threads": args.threads,
        "wall_s": wall, "cpu_s": cpu, "cpu_s_instrumented": cpu_regions,
        "regions_cpu_s": dict(acc), "region_calls": dict(counts),
        "matmul_flops": flops, "flops_by_op": by_op, "hypothesis_steps": hyp_steps,
        "flops_per_hypothesis_step": flops / hyp_steps,
        "decoder_steps": counts["decoder step"],
        "matmul_rate_ffn_shape_gflops": rate_ffn / 1e9,
        "matmul_rate_1024_gflops": rate_big / 1e9,
        "bound_s_at_ffn_rate": flops / rate_ffn, "bound_s_at_1024_rate": flops / rate_big,
    }
    print(f"{args.synthetic} utterances, beam {args.beam}, {args.threads} thread(s): "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU (instrumented run {cpu_regions:.2f} s CPU)")
    for label, seconds in acc.items():
        print(f"  {label:28s} {seconds:6.2f} s CPU  {100 * seconds / cpu_regions:5.1f} %")
    print(f"matrix-product FLOPs {flops / 1e9:.2f} G over {hyp_steps} hypothesis-steps: "
          f"{flops / hyp_steps / 1e6:.2f} MFLOP per hypothesis and step "
          f"({counts['decoder step']} decoder steps)")
    print(f"matmul rate (same run): {rate_ffn / 1e9:.1f} GFLOP/s at the FFN shape, "
          f"{rate_big / 1e9:.1f} at 1024^3; bound {flops / rate_ffn:.2f} s / "
          f"{flops / rate_big:.2f} s against {cpu:.2f} s CPU measured")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
