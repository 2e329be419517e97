"""Command line: ``python -m avsr.data.synthetic --out DIR [options]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m avsr.data.synthetic",
        description="Generate the synthetic audio-visual speech corpus (espeak-ng speech, "
                    "rendered mouth video) in LRS3 layout: <out>/trainval, <out>/test, "
                    "<out>/val_ids.txt, <out>/corpus.json. Re-running completes an interrupted "
                    "corpus; existing utterances are kept.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="corpus root directory")
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    p.add_argument("--train", type=int, default=1600, help="training utterances")
    p.add_argument("--val", type=int, default=200, help="validation utterances (under trainval/)")
    p.add_argument("--test", type=int, default=200, help="test utterances")
    p.add_argument("--domain", choices=("grid", "open", "mixed"), default="mixed",
                   help="text domain: GRID grammar, open vocabulary, or both (50/50)")
    p.add_argument("--train-speakers", type=int, default=24, help="training speakers")
    p.add_argument("--val-speakers", type=int, default=4, help="validation speakers")
    p.add_argument("--test-speakers", type=int, default=6, help="test speakers")
    p.add_argument("--babble", type=int, default=32,
                   help="utterances of the babble split (audio only; the test babble)")
    p.add_argument("--babble-speakers", type=int, default=4,
                   help="speakers of the babble split (in no other split)")
    p.add_argument("--test-seed", type=int, default=None,
                   help="seed of the test and babble splits (default: --seed); another value "
                        "gives fresh held-out test speakers, sentences and babble")
    p.add_argument("--reuse-train-from", default=None,
                   help="a complete corpus of the same seed and train/val arguments whose "
                        "train/val files are linked instead of generated")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (1 = in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the generator; prints the summary line and the elapsed time."""
    args = build_parser().parse_args(argv)
    from .generate import generate_corpus  # heavy imports only when actually generating

    start = time.time()
    summary = generate_corpus(
        args.out, seed=args.seed, num_train=args.train, num_val=args.val, num_test=args.test,
        domain=args.domain, num_train_speakers=args.train_speakers,
        num_val_speakers=args.val_speakers, num_test_speakers=args.test_speakers,
        num_babble=args.babble, num_babble_speakers=args.babble_speakers,
        test_seed=args.test_seed, reuse_train_from=args.reuse_train_from,
        workers=args.workers, verbose=not args.quiet,
    )
    elapsed = time.time() - start
    counts = summary["counts"]
    print(json.dumps({"out": args.out, **counts, "generated": summary["generated"],
                      "skipped_existing": summary["skipped_existing"],
                      "hours": summary["generated_hours"], "workers": summary["workers"]}))
    print(f"generated {summary['generated']} utterances "
          f"({sum(counts.values())} in corpus) in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
