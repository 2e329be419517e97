"""``python -m avsr.prepare {crop,manifests,shards} ...``: prepare raw corpora, write manifests.

Examples::

    # LRS3 with mpc001's / AV-HuBERT's landmark files, 8 processes
    python -m avsr.prepare crop --corpus lrs3 --src raw/lrs3 --landmarks raw/lrs3_landmarks \\
        --out data/lrs3 --workers 8
    # no landmark files: detect them (MediaPipe as auto_avsr; --detector dlib as AV-HuBERT)
    python -m avsr.prepare crop --corpus lrs3 --src raw/lrs3 --out data/lrs3 --workers 8
    # VoxCeleb2, English ids only
    python -m avsr.prepare crop --corpus vox2 --src raw/vox2 --landmarks raw/vox2_landmarks \\
        --out data/vox2 --id-list vox-en.id --workers 8
    # AV-HuBERT tsv/wrd (+ auto_avsr csv with auto_avsr's units) of 30h/433h/1759h
    python -m avsr.prepare manifests --lrs3 data/lrs3 --vox2 data/vox2 --out data/manifests \\
        --val-list valid_ids.txt --units unigram5000_units.txt --spm unigram5000.model
    # pre-decoded shards for data.storage=shards (decode once, read raw frames each epoch)
    python -m avsr.prepare shards --corpus lrs3 --root data/lrs3 --out data/shards/lrs3 \\
        --val-list data/lrs3/val_ids.txt --workers 8

Both commands are resumable and idempotent: finished outputs are kept, every file is written
under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

import numpy as np

from avsr.prepare.detect.registry import DETECTORS
from avsr.prepare.manifests import SUBSETS, write_manifests
from avsr.prepare.pipeline import PrepareOptions, prepare_corpus
from avsr.prepare.sources import CORPORA, UnsafePathError

__all__ = ["main"]


def _crop(args: argparse.Namespace) -> None:
    reference = None
    if args.mean_face:
        reference = np.load(args.mean_face, allow_pickle=False).astype(np.float64)
        if reference.shape != (68, 2):
            raise SystemExit(f"--mean-face must hold a (68, 2) array, got {reference.shape}")
    opts = PrepareOptions(mean_face=reference, crop_size=args.crop_size,
                          smooth_window=args.smooth_window,
                          min_landmark_fraction=args.min_landmark_fraction,
                          max_duration=args.max_duration, min_gap=args.min_gap,
                          detector=_detector(args))
    summary = prepare_corpus(args.corpus, args.src, args.out, landmarks=args.landmarks,
                             splits=args.splits.split(",") if args.splits else None,
                             id_list=args.id_list, workers=args.workers, options=opts)
    shown = {k: v for k, v in summary.items() if k != "skipped"}
    print(json.dumps(shown, indent=2))
    for s in summary["skipped"][:20]:
        print(f"skipped {s['clip']}: {s['status']} ({s['message']})")
    if len(summary["skipped"]) > 20:
        print(f"... {len(summary['skipped']) - 20} more in {args.out}/prepare_summary.json")


def _detector(args: argparse.Namespace) -> str | None:
    """Without --landmarks every clip is detected (default mediapipe); with --landmarks only
    an explicit --detector detects the clips that lack a landmark file."""
    if args.detector is not None:
        return args.detector
    return None if args.landmarks else "mediapipe"


def _manifests(args: argparse.Namespace) -> None:
    roots = {c: getattr(args, c) for c in CORPORA if getattr(args, c)}
    if not roots:
        raise SystemExit("give at least one prepared corpus: --lrs3, --lrs2 or --vox2")
    tokenizer = None
    if args.units:
        from avsr.data.units_tokenizer import UnitsTokenizer

        tokenizer = UnitsTokenizer(args.units, args.spm)
    elif args.spm:
        from avsr.data.tokenizer import Tokenizer

        tokenizer = Tokenizer(args.spm)
    subsets = args.subsets.split(",") if args.subsets else None
    counts = write_manifests(roots, args.out, subsets, val_list=args.val_list,
                             tokenizer=tokenizer)
    print(json.dumps(counts, indent=2))


def _shards(args: argparse.Namespace) -> None:
    from avsr.prepare.shards import corpus_utterances, write_shards

    items = corpus_utterances(args.corpus, args.root, args.splits.split(","), args.val_list)
    counts = write_shards(items, args.out, shard_mb=args.shard_mb, audio_dtype=args.audio_dtype,
                          workers=args.workers)
    print(json.dumps(counts, indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avsr.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    crop = sub.add_parser("crop", help="raw videos (+ landmarks) -> stored mouth crops")
    crop.add_argument("--corpus", choices=CORPORA, required=True)
    crop.add_argument("--src", required=True, help="raw corpus root (official layout)")
    crop.add_argument("--out", required=True, help="prepared corpus root")
    crop.add_argument("--landmarks", default=None,
                      help="landmark root mirroring --src (.pkl / .npy per video); without "
                           "it the landmarks are detected (--detector)")
    crop.add_argument("--detector", choices=sorted(DETECTORS), default=None,
                      help="landmark detector for clips without a landmark file (default: "
                           "mediapipe when --landmarks is not given, else none)")
    crop.add_argument("--splits", default=None, help="comma-separated (default: all)")
    crop.add_argument("--id-list", default=None, help="vox2: ids to keep (e.g. vox-en.id)")
    crop.add_argument("--workers", type=int, default=1)
    crop.add_argument("--mean-face", default=None,
                      help="(68, 2) .npy in a 256x256 frame (default: avsr's mean face)")
    crop.add_argument("--crop-size", type=int, default=96)
    crop.add_argument("--smooth-window", type=int, default=12)
    crop.add_argument("--min-landmark-fraction", type=float, default=0.5)
    crop.add_argument("--max-duration", type=float, default=15.0,
                      help="pretrain utterances this long or longer are split (s)")
    crop.add_argument("--min-gap", type=float, default=0.4, help="split at gaps over this (s)")
    crop.set_defaults(func=_crop)
    man = sub.add_parser("manifests", help="AV-HuBERT tsv/wrd and auto_avsr csv per subset")
    for c in CORPORA:
        man.add_argument(f"--{c}", default=None, help=f"prepared {c} root")
    man.add_argument("--out", required=True)
    man.add_argument("--subsets", default=None, help=f"comma-separated of {sorted(SUBSETS)}")
    man.add_argument("--val-list", default=None, help="LRS3 validation ids")
    man.add_argument("--units", default=None, help="units list for the csv token ids")
    man.add_argument("--spm", default=None, help="SentencePiece model for the csv token ids")
    man.set_defaults(func=_manifests)
    sh = sub.add_parser("shards", help="decode a prepared corpus once into frame shards")
    sh.add_argument("--corpus", choices=("lrs3", "lrs2"), default="lrs3",
                    help="layout of --root (the synthetic corpus is lrs3)")
    sh.add_argument("--root", required=True, help="prepared corpus root")
    sh.add_argument("--out", required=True, help="shard directory (data.shards_dir)")
    sh.add_argument("--splits", default="train,val,test", help="comma-separated")
    sh.add_argument("--val-list", default=None, help="LRS3 validation ids")
    sh.add_argument("--shard-mb", type=float, default=1024.0)
    sh.add_argument("--audio-dtype", choices=("int16", "float32"), default="int16")
    sh.add_argument("--workers", type=int, default=1)
    sh.set_defaults(func=_shards)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        args.func(args)
    except UnsafePathError as e:  # the offending file and line, without a traceback
        raise SystemExit(f"python -m avsr.prepare {args.command}: {e}") from e


if __name__ == "__main__":
    main()
