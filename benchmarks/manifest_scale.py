"""Listing and sampling a VoxCeleb2-scale training set (1 M utterances) from a manifest.

    python benchmarks/manifest_scale.py [--lines 1000000] [--ranks 2] [--max-frames 1800] \
        [--plain] [--json out.json]

Writes an AV-HuBERT tsv of ``--lines`` VoxCeleb2-like utterances (ids
``dev/mp4/idNNNNN/<video>/<utt>``, 2-16 s at 25 fps, no transcripts) to a temporary folder,
then measures, each phase apart:

1. listing: :class:`avsr.data.manifests.AVHuBERTManifest` reads it into an
   :class:`avsr.data.table.UtteranceTable`;
2. bucketing: :class:`avsr.data.sampler.FrameBudgetBatchSampler` on its lengths, one per rank
   (``--ranks`` DDP ranks of one world);
3. one epoch of sampler indices on every rank; checked: every utterance exactly once across
   the ranks, every rank the same number of batches, every batch within the frame budget;
4. a mid-epoch resume: rank 0's sampler saves its state half-way; a new sampler loaded from
   it gives exactly the rest of the epoch.

Times are wall seconds of a plain run; peak memory is a second run of each phase under
``tracemalloc`` (Python and numpy allocations; ``tracemalloc`` slows allocation, hence two
runs), plus the process's peak RSS. For comparison, the memory of the same records as a list
of :class:`~avsr.data.corpora.Utterance` objects (what a corpus reader returned before).
``--plain`` skips the tracemalloc runs and that list: the peak RSS is then the pipeline's own
(interpreter, torch and numpy imports included).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsr.data.loader import utterance_lengths  # noqa: E402
from avsr.data.manifests import AVHuBERTManifest  # noqa: E402
from avsr.data.sampler import FrameBudgetBatchSampler  # noqa: E402


def write_manifest(folder: Path, lines: int, seed: int = 0) -> Path:
    """A VoxCeleb2-like AV-HuBERT tsv of ``lines`` utterances (frames 50-400)."""
    rng = random.Random(seed)
    path = folder / "train.tsv"
    with path.open("w") as f:
        f.write("/data/vox2\n")
        for k in range(lines):
            uid = f"dev/mp4/id{k // 200:05d}/{k // 8:011d}/{k % 8:05d}"
            n = rng.randint(50, 400)
            f.write(f"{uid}\t{uid}.mp4\t{uid}.wav\t{n}\t{n * 640}\n")
    return path


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _peak(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """(result, bytes still held by the result's allocations, peak bytes during ``fn``)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, held, peak


def _epoch(samplers: list[FrameBudgetBatchSampler]) -> list[list[list[int]]]:
    return [list(s) for s in samplers]


def check_epoch(per_rank: list[list[list[int]]], lengths: np.ndarray, max_frames: int) -> None:
    """Every item exactly once across ranks, equal batch counts, batches within budget."""
    counts = np.zeros(lengths.size, dtype=np.int64)
    for batches in per_rank:
        for b in batches:
            counts[b] += 1
            if len(b) > 1 and len(b) * int(lengths[b].max()) > max_frames:
                raise AssertionError(f"batch over budget: {len(b)} x {lengths[b].max()}")
    if not (counts == 1).all():
        raise AssertionError(f"{int((counts == 0).sum())} items unseen, "
                             f"{int((counts > 1).sum())} seen twice")
    if len({len(b) for b in per_rank}) != 1:
        raise AssertionError(f"ranks differ in batch count: {[len(b) for b in per_rank]}")


def check_resume(sampler: FrameBudgetBatchSampler, make: Callable[[], FrameBudgetBatchSampler]
                 ) -> int:
    """Stop half-way, resume in a new sampler: the rest of the epoch exactly."""
    full = list(sampler)
    half = len(full) // 2
    it = iter(sampler)
    for _ in range(half):
        next(it)
    state = sampler.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    rest = list(resumed)
    if rest != full[half:]:
        raise AssertionError("the resumed sampler does not give the rest of the epoch")
    return len(rest)


def run(lines: int, ranks: int, max_frames: int, plain: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": lines, "ranks": ranks, "max_frames": max_frames}
    # --plain: no tracemalloc pass (each phase runs once, timed)
    measure = (lambda fn: (None, 0, 0)) if plain else _peak
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, out["write_s"] = _timed(lambda: write_manifest(folder, lines))
        out["manifest_mb"] = (folder / "train.tsv").stat().st_size / 2**20

        def listing():
            return AVHuBERTManifest(folder, label=None).utterances("train")

        table, out["listing_s"] = _timed(listing)
        _, held, peak = measure(listing)
        out["listing_held_mb"], out["listing_peak_mb"] = held / 2**20, peak / 2**20
        out["table_bytes_per_utt"] = held / len(table)

        lengths = np.asarray(utterance_lengths(table))

        def make(rank: int) -> Callable[[], FrameBudgetBatchSampler]:
            return lambda: FrameBudgetBatchSampler(lengths, max_frames, seed=0,
                                                   num_replicas=ranks, rank=rank)

        samplers, out["bucketing_s"] = _timed(lambda: [make(r)() for r in range(ranks)])
        _, held, peak = measure(lambda: make(0)())
        out["bucketing_held_mb_per_rank"] = held / 2**20
        out["sampler_bytes_per_utt"] = held / len(table)
        out["bucketing_peak_mb_per_rank"] = peak / 2**20

        per_rank, out["epoch_s"] = _timed(lambda: _epoch(samplers))
        out["batches_per_rank"] = len(per_rank[0])
        check_epoch(per_rank, lengths, max_frames)
        out["every_utterance_once"] = True
        fresh = [make(r)() for r in range(ranks)]
        _, _, peak = measure(lambda: [len(s) for s in fresh])  # one epoch's plan, all ranks
        out["epoch_plan_peak_mb"] = peak / 2**20
        del per_rank

        out["resumed_batches"], out["resume_s"] = _timed(
            lambda: check_resume(make(0)(), make(0)))
        out["resume_exact"] = True

        if not plain:  # the same records as Utterance objects (what the readers gave before)
            _, held, _ = measure(lambda: list(table))
            out["utterance_list_bytes_per_utt"] = held / len(table)
    if plain:
        out = {k: v for k, v in out.items() if k == "manifest_mb"
               or not k.endswith(("_mb", "_per_utt", "_mb_per_rank"))}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=1800)
    p.add_argument("--plain", action="store_true", help="times and peak RSS only")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    result = run(args.lines, args.ranks, args.max_frames, args.plain)
    result["python"] = platform.python_version()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
