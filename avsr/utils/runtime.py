"""Run-time preparation shared by the entry points: threads, data, tokenizer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

__all__ = ["set_torch_threads", "ensure_synthetic_corpus", "prepare_data", "skip_totals"]

log = logging.getLogger(__name__)


def set_torch_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` intra-op threads (default: every core this process may use)."""
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    torch.set_num_threads(int(num_threads))


def ensure_synthetic_corpus(cfg: DictConfig | None) -> None:
    """Generate the built-in synthetic corpus described by ``cfg`` unless it is complete.

    ``cfg`` is the ``synthetic`` node: a ``_partial_`` call of
    :func:`avsr.data.synthetic.generate_corpus` whose ``out_dir`` is the corpus root. The
    generator is idempotent, so an interrupted generation resumes where it stopped.
    """
    if not cfg:
        return
    out_dir = Path(cfg.out_dir)
    marker = out_dir / "corpus.json"
    if marker.is_file():
        log.info("synthetic corpus present at %s", out_dir)
        return
    log.info("generating the synthetic corpus into %s", out_dir)
    summary = hydra.utils.instantiate(cfg)
    if callable(summary):  # a _partial_ config gives back the function: call it
        summary = summary()
    log.info("synthetic corpus: %s", {k: v for k, v in summary.items() if k != "speakers"}
             if isinstance(summary, dict) else summary)


def prepare_data(cfg: DictConfig):
    """Build the datamodule (generating data and tokenizer if needed); return it and the
    tokenizer."""
    ensure_synthetic_corpus(cfg.get("synthetic"))
    datamodule = hydra.utils.instantiate(cfg.data)
    tokenizer = datamodule.load_tokenizer()
    return datamodule, tokenizer


def skip_totals(per_dataset: dict[str, dict]) -> dict:
    """Fold the datamodule's per-dataset skip summaries into one run-summary entry."""
    total = 0
    by_problem: dict[str, int] = {}
    files: set[str] = set()
    for summary in per_dataset.values():
        total += int(summary.get("skipped_unique", 0))
        for problem, n in summary.get("by_problem", {}).items():
            by_problem[problem] = by_problem.get(problem, 0) + int(n)
        files.update(summary.get("files", []))
    return {"total": total, "by_problem": by_problem, "files": sorted(files),
            "per_dataset": per_dataset}
