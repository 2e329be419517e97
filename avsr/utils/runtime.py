"""Run-time preparation shared by the entry points: threads, data, tokenizer."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

__all__ = ["set_torch_threads", "ensure_synthetic_corpus", "prepare_data", "skip_totals",
           "skips_by_id"]

log = logging.getLogger(__name__)


def set_torch_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` intra-op threads (default: every core this process may use)."""
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    torch.set_num_threads(int(num_threads))


# keys of the ``synthetic`` node that steer ensure_synthetic_corpus, not the generator
_GUARD_KEYS = ("generate", "default_dir")


def _may_generate(cfg: DictConfig, out_dir: Path) -> None:
    """Refuse a generation the user did not ask for (a mistyped ``data.corpus.root``).

    Allowed: ``synthetic.generate=true``; with ``generate=default`` (the recipes' setting) the
    recipe's own ``synthetic.default_dir``, or a folder where an interrupted generation is
    resumed (its pending file is there); with ``generate=false`` nothing.

    Raises:
        FileNotFoundError: none of these; names the path and the opt-in.
        ValueError: ``synthetic.generate`` is not true, false or "default".
    """
    from avsr.data.synthetic.generate import _PENDING

    generate = cfg.get("generate", "default")
    if generate is not True and generate is not False and generate != "default":
        raise ValueError(f"synthetic.generate must be true, false or default, got {generate!r}")
    if generate is True:
        return
    default = cfg.get("default_dir")
    if generate == "default" and ((out_dir / _PENDING).is_file() or (
            default and out_dir.resolve() == Path(default).resolve())):
        return
    where = (" (synthetic.generate=false)" if generate is False else
             f" (this recipe generates one only at {default})" if default else "")
    raise FileNotFoundError(
        f"no synthetic corpus at {out_dir} (no corpus.json){where}. Check data.corpus.root; "
        f"to generate the synthetic corpus there, add synthetic.generate=true")


def _check_recorded(marker: Path, call: dict, defaults: Any) -> None:
    """Refuse a complete corpus generated with other arguments or by an older generator (a
    run would train on it, then fail or mislead at the test): now, before training.

    Raises:
        ValueError: names the file, the differing arguments and the fix.
    """
    from avsr.data.synthetic.generate import GENERATOR_VERSION

    recorded = json.loads(marker.read_text()).get("config", {})
    wanted = {k: call.get(k, defaults[k].default) for k in recorded if k in defaults}
    wanted["generator_version"] = GENERATOR_VERSION
    diff = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
    if diff:
        raise ValueError(
            f"{marker} records a corpus made with other arguments {diff} (recorded, "
            f"requested): delete {marker.parent} to regenerate it (generator version 2 changed "
            "the test split and added the test babble, benchmarks/README.md 'Protocol'), or "
            "point data.corpus.root elsewhere")


def ensure_synthetic_corpus(cfg: DictConfig | None) -> None:
    """Generate the built-in synthetic corpus described by ``cfg`` unless it is complete.

    ``cfg`` is the ``synthetic`` node: a ``_partial_`` call of
    :func:`avsr.data.synthetic.generate_corpus` whose ``out_dir`` is the corpus root, plus
    ``generate`` (``default``: only into ``default_dir``, the recipe's own location, or to
    resume an interrupted generation; ``true``: anywhere; ``false``: never) and
    ``default_dir``. The generator is idempotent, so an interrupted generation resumes where
    it stopped.

    Raises:
        FileNotFoundError: the corpus is absent and generating it there was not asked for.
    """
    if not cfg:
        return
    out_dir = Path(cfg.out_dir)
    marker = out_dir / "corpus.json"
    call = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
            if k not in _GUARD_KEYS}
    defaults = inspect.signature(hydra.utils.get_method(call["_target_"])).parameters
    if marker.is_file():
        _check_recorded(marker, call, defaults)
        log.info("synthetic corpus present at %s", out_dir)
        return
    _may_generate(cfg, out_dir)
    count = sum(int(call.get(k, defaults[k].default if k in defaults else 0) or 0)
                for k in ("num_train", "num_val", "num_test"))
    log.warning("GENERATING the synthetic corpus: %d utterances into %s (this takes a while; "
                "an interrupted generation resumes on the next run)", count, out_dir.resolve())
    summary = hydra.utils.instantiate(call)
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


def skips_by_id(datasets: Iterable[Any]) -> dict[str, Any]:
    """``total``, ``by_problem``, ``files`` and ``unknown_text`` of datasets over the same
    utterances (the test set under every noise condition), each utterance counted once, by id;
    the keys of :func:`skip_totals`, which adds the datasets' counts up."""
    from avsr.data.dataset import SkipReport

    merged = SkipReport()
    unknown = None
    for data in datasets:
        merged.items.update(data.report.items)
        if unknown is None and data.report.unknown_text is not None:
            unknown = dict(data.report.unknown_text)  # same transcripts in every condition
    s = merged.summary()
    out = {"total": s["skipped_unique"], "by_problem": s["by_problem"], "files": s["files"]}
    if unknown is not None:
        out["unknown_text"] = unknown
    return out


def skip_totals(per_dataset: dict[str, dict], max_ids: int = 20) -> dict:
    """Fold the datamodule's per-dataset skip summaries into one run-summary entry.

    Besides the skips, ``unknown_text`` adds up the datasets' counts of transcripts with
    characters the tokenizer does not know (trained on, but worth knowing about), with up to
    ``max_ids`` of their ids.
    """
    total = 0
    by_problem: dict[str, int] = {}
    files: set[str] = set()
    unknown = {"utterances": 0, "unk_tokens": 0, "mostly_unknown": 0}
    first_ids: set[str] = set()
    mostly_ids: set[str] = set()
    for summary in per_dataset.values():
        total += int(summary.get("skipped_unique", 0))
        for problem, n in summary.get("by_problem", {}).items():
            by_problem[problem] = by_problem.get(problem, 0) + int(n)
        files.update(summary.get("files", []))
        found = summary.get("unknown_text") or {}
        for key in unknown:
            unknown[key] += int(found.get(key, 0))
        first_ids.update(found.get("first_ids", []))
        mostly_ids.update(found.get("mostly_unknown_ids", []))
    return {"total": total, "by_problem": by_problem, "files": sorted(files),
            "unknown_text": {**unknown, "first_ids": sorted(first_ids)[:max_ids],
                             "mostly_unknown_ids": sorted(mostly_ids)[:max_ids]},
            "per_dataset": per_dataset}
