"""Subsets and manifests of prepared corpora, in AV-HuBERT's and auto_avsr's forms.

Subsets (Shi et al. 2022; Haliassos et al. 2024; Ma et al. 2023):

- ``lrs3_30h``: LRS3 ``trainval`` (the low-resource labelled set);
- ``lrs3_433h``: LRS3 ``pretrain`` (split pieces) + ``trainval`` (high-resource);
- ``lrs3_vox2_1759h``: ``lrs3_433h`` + VoxCeleb2 (English ids; unlabelled);
- ``lrs2_223h``: LRS2 ``pretrain`` + ``train``; ``lrs2_29h``: LRS2 ``train`` (``main``).

Each subset is a folder with ``train`` (the subset), ``valid`` and ``test``: for LRS3 ``valid``
is the ids of a validation list taken out of ``trainval`` (AV-HuBERT ships a 1200-id one) and
``test`` the official test split; for LRS2 the official ``val`` and ``test``.

Forms:

- AV-HuBERT: ``<split>.tsv`` (first line: the root directory; then ``id \\t video \\t audio \\t
  video frames \\t audio samples``, paths relative to the root) and ``<split>.wrd`` (one
  lower-case transcript per line, same order).
- auto_avsr / USR: ``<split>.csv`` without header: ``dataset,relative/path.mp4,<frames>,<token
  ids>`` (path relative to that corpus's prepared root), written when a tokenizer is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avsr.prepare.pipeline import Piece, read_index
from avsr.prepare.sources import read_id_list

__all__ = ["SUBSETS", "subset_pieces", "write_manifests"]

# subset -> {corpus: splits of that corpus in the training part}
SUBSETS: dict[str, dict[str, tuple[str, ...]]] = {
    "lrs3_30h": {"lrs3": ("trainval",)},
    "lrs3_433h": {"lrs3": ("pretrain", "trainval")},
    "lrs3_vox2_1759h": {"lrs3": ("pretrain", "trainval"), "vox2": ("dev",)},
    "lrs2_29h": {"lrs2": ("train",)},
    "lrs2_223h": {"lrs2": ("pretrain", "train")},
}
_EVAL = {"lrs3": {"valid": (), "test": ("test",)}, "lrs2": {"valid": ("val",), "test": ("test",)}}


def subset_pieces(subset: str, indexes: dict[str, list[Piece]], val_ids: set[str] | None = None
                  ) -> dict[str, list[tuple[str, Piece]]]:
    """The (corpus, piece) lists of ``train``, ``valid`` and ``test`` of a subset.

    Raises:
        ValueError: unknown subset, or a corpus it needs was not given.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
    parts: dict[str, list[tuple[str, Piece]]] = {"train": [], "valid": [], "test": []}
    val_ids = val_ids or set()
    for corpus, splits in SUBSETS[subset].items():
        if corpus not in indexes:
            raise ValueError(f"subset {subset} needs the prepared {corpus} corpus")
        for p in indexes[corpus]:
            if corpus == "lrs3" and p.split == "trainval" and p.id in val_ids:
                parts["valid"].append((corpus, p))
            elif p.split in splits:
                parts["train"].append((corpus, p))
    main = next(iter(SUBSETS[subset]))
    for part, splits in _EVAL[main].items():
        parts[part] += [(main, p) for p in indexes[main] if p.split in splits]
    return parts


def write_manifests(
    roots: dict[str, str | Path],
    out_dir: str | Path,
    subsets: Sequence[str] | None = None,
    *,
    val_list: str | Path | None = None,
    tokenizer: Any | None = None,
) -> dict[str, dict[str, int]]:
    """Write the manifests of every subset the prepared ``roots`` allow.

    Args:
        roots: corpus name (``lrs3``, ``lrs2``, ``vox2``) -> prepared root (with ``index.tsv``).
        out_dir: manifests go to ``<out_dir>/<subset>/<split>.{tsv,wrd,csv}``.
        subsets: which subsets (default: all whose corpora are given).
        val_list: LRS3 validation ids (``trainval/<speaker>/<utt>``), one per line.
        tokenizer: ``encode(text) -> ids`` for the auto_avsr CSV (e.g. a
            :class:`~avsr.data.units_tokenizer.UnitsTokenizer`); None: no CSV.

    Returns:
        Items per subset and split.

    Raises:
        ValueError: an unknown subset (before anything is written: a subset names a folder).
        UnsafePathError: an id of ``val_list`` or of an ``index.tsv`` that is not a plain
            relative path (names the file and line).
    """
    roots = {c: Path(r).resolve() for c, r in roots.items()}
    indexes = {c: read_index(r) for c, r in roots.items()}
    val_ids = set()
    if val_list is not None:
        val_ids = {i for _, i in read_id_list(val_list)}
    if subsets is None:
        subsets = [s for s, need in SUBSETS.items() if set(need) <= set(roots)]
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        raise ValueError(f"subsets must be among {sorted(SUBSETS)}, got {unknown}")
    base = Path(os.path.commonpath([str(r) for r in roots.values()]))
    counts: dict[str, dict[str, int]] = {}
    for subset in subsets:
        folder = Path(out_dir) / subset
        folder.mkdir(parents=True, exist_ok=True)
        counts[subset] = {}
        for part, items in subset_pieces(subset, indexes, val_ids).items():
            tsv, wrd, csv = [str(base)], [], []
            for corpus, p in items:
                rel = (roots[corpus] / p.id).relative_to(base).as_posix()
                tsv.append(f"{corpus}/{p.id}\t{rel}.mp4\t{rel}.wav\t{p.frames}\t{p.samples}")
                wrd.append(p.text.lower())
                if tokenizer is not None:
                    ids = " ".join(map(str, tokenizer.encode(p.text)))
                    csv.append(f"{corpus},{p.id}.mp4,{p.frames},{ids}")
            _write(folder / f"{part}.tsv", tsv)
            _write(folder / f"{part}.wrd", wrd)
            if tokenizer is not None:
                _write(folder / f"{part}.csv", csv)
            counts[subset][part] = len(items)
    return counts


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    tmp.replace(path)
