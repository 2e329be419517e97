"""Training sets as compositions of corpus parts: LRS3 pretrain + trainval, + VoxCeleb2.

A part is a corpus, one of its splits, a sampling weight and whether its transcripts are used
(:class:`TrainPart`). The data module's ``train_sets`` lists them; :func:`compose` lists every
part once and gives the two pools the training stages draw from:

- the labelled pool: the utterances of the labelled parts (supervised training, and the
  labelled loader of semi-supervised training; ``labelled_fraction`` then draws its share);
- the whole pool: every part, labelled or not (self-supervised pre-training with
  ``train_data: all``, and the unlabelled loader of ``labelled+unlabelled``: as with one
  corpus, and as USR draws its unlabelled 433 h from all of LRS3 including the 30 h it
  labels).

Examples of ``data.train_sets`` (a dict, so an experiment can override or drop one part)::

    train_sets:      # LRS3 433 h: pretrain + trainval minus the validation ids
      pretrain: {_target_: avsr.data.parts.TrainPart, split: pretrain}
      trainval: {_target_: avsr.data.parts.TrainPart, split: train}
      vox2:          # + VoxCeleb2 unlabelled (or with automatic transcripts: transcripts: FILE)
        _target_: avsr.data.parts.TrainPart
        corpus: {_target_: avsr.data.voxceleb2.VoxCeleb2, root: ${paths.data_dir}/vox2}
        split: dev
        labelled: false

Bad input: a part whose corpus or split is missing raises the reader's error prefixed with the
part's name; a part with no utterance, a transcripts file whose ids match none of the part's,
or labelled utterances without a transcript beyond ``max_bad_fraction`` raise ``ValueError``
naming the part (and the file); below that fraction they are left out of the labelled pool,
counted in :attr:`Composition.missing_text` and warned about once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avsr.data.corpora import normalize_text
from avsr.data.table import UtteranceTable, as_table

__all__ = ["TrainPart", "Composition", "compose", "named_parts", "read_transcripts"]

log = logging.getLogger(__name__)


@dataclass
class TrainPart:
    """One part of a training set.

    Args:
        corpus: a corpus reader (``utterances(split)``); None: the data module's ``corpus``.
        split: the split of ``corpus``.
        weight: expected draws of each of its utterances per epoch (fairseq's
            ``sample_ratios``): 2 upsamples, 0.5 draws a random half every epoch.
        labelled: its transcripts are used (the labelled pool); False: media only (the
            whole pool of self- and semi-supervised training).
        transcripts: a file of transcripts that replace the corpus's, one ``<id> <text>``
            per line (Kaldi ``text`` form; e.g. Whisper transcripts of VoxCeleb2, as auto_avsr
            and USR use them); ids are the corpus's.

    Raises:
        ValueError: a weight that is not a positive number, or a split that is not a string.
    """

    corpus: Any | None = None
    split: str = "train"
    weight: float = 1.0
    labelled: bool = True
    transcripts: str | Path | None = None

    def __post_init__(self) -> None:
        if (isinstance(self.weight, bool) or not isinstance(self.weight, (int, float))
                or not math.isfinite(self.weight) or self.weight <= 0):
            raise ValueError(f"a training part's weight must be a positive number, got "
                             f"{self.weight!r}")
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"a training part's split must be a split name, got "
                             f"{self.split!r}")
        if not isinstance(self.labelled, bool):
            raise ValueError(f"a training part's labelled must be true or false, got "
                             f"{self.labelled!r}")


@dataclass
class Composition:
    """The listed parts of a training set.

    Attributes:
        names: part names, in order.
        weights: their sampling weights.
        whole: every utterance of every part (:class:`~avsr.data.table.UtteranceTable`).
        whole_parts: int part index of every utterance of ``whole``.
        labelled: the utterances of the labelled parts that have a transcript.
        labelled_parts: int part index of every utterance of ``labelled``.
        missing_text: part name -> labelled utterances left out for want of a transcript.
    """

    names: list[str]
    weights: list[float]
    whole: UtteranceTable
    whole_parts: np.ndarray
    labelled: UtteranceTable
    labelled_parts: np.ndarray
    missing_text: dict[str, int]

    def skip_summary(self, parts: Sequence[tuple[str, TrainPart]]) -> dict[str, Any]:
        """The utterances left out for want of a transcript, in the form of a dataset's skip
        summary (:meth:`avsr.data.dataset.SkipReport.summary`) for the run summary."""
        n = sum(self.missing_text.values())
        files = {str(p.transcripts) for name, p in parts
                 if name in self.missing_text and p.transcripts is not None}
        return {"seen": len(self.labelled) + n, "skipped": n, "skipped_unique": n,
                "by_problem": {"missing transcript": n} if n else {}, "files": sorted(files),
                "parts": dict(self.missing_text)}


def named_parts(train_sets: Sequence[Any] | Mapping[str, Any]) -> list[tuple[str, TrainPart]]:
    """``(name, part)`` of a list (names ``"0"``, ``"1"``...) or a dict of parts; a part may be
    a :class:`TrainPart` or a mapping of its arguments, None drops it (an experiment that
    removes an inherited part).

    Raises:
        ValueError: no part left, or an entry that is not a part.
    """
    items = (list(train_sets.items()) if isinstance(train_sets, Mapping)
             else [(str(i), p) for i, p in enumerate(train_sets)])
    parts = []
    for name, part in items:
        if part is None:
            continue
        if isinstance(part, Mapping):
            part = TrainPart(**dict(part))
        if not isinstance(part, TrainPart):
            raise ValueError(f"data.train_sets.{name} must be a part (corpus, split, weight, "
                             f"labelled, transcripts), got {type(part).__name__}")
        parts.append((str(name), part))
    if not parts:
        raise ValueError("data.train_sets has no part: give at least one, or null for "
                         "data.corpus + data.train_split")
    return parts


def read_transcripts(path: str | Path) -> dict[str, str]:
    """``id -> normalised text`` of a ``<id> <text>`` file; blank lines are ignored.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line with an id but no text, or an id given twice (file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transcripts file not found: {path}")
    found: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            text = normalize_text(fields[1]) if len(fields) == 2 else ""
            if not text:
                raise ValueError(f"{path}:{n}: utterance {fields[0]!r} has no transcript "
                                 "(expected '<id> <text>')")
            if fields[0] in found:
                raise ValueError(f"{path}:{n}: utterance {fields[0]!r} repeated (first at line "
                                 f"{first_line[fields[0]]})")
            found[fields[0]] = text
            first_line[fields[0]] = n
    return found


def _list_part(name: str, part: TrainPart, default_corpus: Any) -> UtteranceTable:
    corpus = part.corpus if part.corpus is not None else default_corpus
    try:
        utterances = corpus.utterances(part.split)
    except (FileNotFoundError, ValueError) as e:
        cls = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
        raise cls(f"data.train_sets.{name} ({corpus!r}, split {part.split!r}): {e}") from e
    if not len(utterances):
        raise ValueError(f"data.train_sets.{name}: {corpus!r} split {part.split!r} has no "
                         "utterances")
    table = as_table(utterances)
    if part.transcripts is not None:
        given = read_transcripts(part.transcripts)
        texts = [given.get(uid, "") for uid in table.ids]
        if not any(texts):
            raise ValueError(f"data.train_sets.{name}: no id of {part.transcripts} is an "
                             f"utterance of {corpus!r} split {part.split!r} (file: "
                             f"{next(iter(given), None)!r}, corpus: {table.ids[0]!r})")
        table = table.with_texts(texts)
    return table


def _check_unique(names: list[str], tables: list[UtteranceTable]) -> None:
    """Raise when two parts hold the same utterance id (one utterance trained twice per
    epoch; a weight says that). Compares 64-bit hashes, then the ids of equal hashes."""
    if len(tables) < 2:
        return
    hashes = [np.fromiter((hash(u) for u in t.ids), dtype=np.int64, count=len(t))
              for t in tables]
    for a in range(len(tables)):
        for b in range(a + 1, len(tables)):
            common = np.intersect1d(hashes[a], hashes[b])
            if not common.size:
                continue
            ids_b = {tables[b].ids[int(i)] for i in np.flatnonzero(np.isin(hashes[b], common))}
            same = [tables[a].ids[int(i)] for i in np.flatnonzero(np.isin(hashes[a], common))
                    if tables[a].ids[int(i)] in ids_b]
            if same:
                raise ValueError(f"data.train_sets.{names[a]} and data.train_sets.{names[b]} "
                                 f"share {len(same)} utterances (first {same[0]!r}); list "
                                 "each once and give a weight to draw it more often")


def compose(parts: Sequence[tuple[str, TrainPart]], default_corpus: Any,
            max_bad_fraction: float = 0.05) -> Composition:
    """List every part and build the labelled and whole pools.

    Args:
        parts: ``(name, part)`` pairs (:func:`named_parts`).
        default_corpus: the corpus of parts that name none.
        max_bad_fraction: the share of a labelled part's utterances that may lack a
            transcript (left out of the labelled pool) before the part is refused.

    Raises:
        FileNotFoundError, ValueError: see the module docstring; every message names the part.
    """
    names = [n for n, _ in parts]
    tables = [_list_part(n, p, default_corpus) for n, p in parts]
    _check_unique(names, tables)
    missing: dict[str, int] = {}
    labelled, labelled_parts = [], []
    for i, ((name, part), table) in enumerate(zip(parts, tables)):
        if not part.labelled:
            continue
        has = table.has_text()
        lacking = int((~has).sum())
        if lacking:
            where = f" (transcripts: {part.transcripts})" if part.transcripts else ""
            first = table.ids[int(np.flatnonzero(~has)[0])]
            if lacking > max_bad_fraction * len(table):
                raise ValueError(
                    f"data.train_sets.{name}: {lacking} of {len(table)} utterances of split "
                    f"{part.split!r} have no transcript{where} (first {first!r}; "
                    f"max_bad_fraction {max_bad_fraction}); give a transcripts file or "
                    "labelled: false")
            log.warning("data.train_sets.%s: %d of %d labelled utterances have no transcript "
                        "and are left out of the labelled pool (first %s)%s", name, lacking,
                        len(table), first, where)
            missing[name] = lacking
            table = table.take(np.flatnonzero(has))
        labelled.append(table)
        labelled_parts.append(np.full(len(table), i, dtype=np.int64))
    if not labelled:
        labelled_table = tables[0].take(np.zeros(0, dtype=np.int64))
    else:
        labelled_table = labelled[0] if len(labelled) == 1 else UtteranceTable.concat(labelled)
    return Composition(
        names=names, weights=[float(p.weight) for _, p in parts],
        whole=tables[0] if len(tables) == 1 else UtteranceTable.concat(tables),
        whole_parts=np.concatenate([np.full(len(t), i, dtype=np.int64)
                                    for i, t in enumerate(tables)]),
        labelled=labelled_table,
        labelled_parts=(np.concatenate(labelled_parts) if labelled_parts
                        else np.zeros(0, dtype=np.int64)),
        missing_text=missing)
