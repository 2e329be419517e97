"""Evaluation entry point: ``python -m avsr.evaluate ckpt=PATH [overrides]``.

Decodes the test split for audio, video and audio-visual input, clean and with babble and
white noise at several SNRs, with every configured decoder, and writes the WER table as JSON,
Markdown and a PNG plot of WER against SNR per modality.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from avsr.checkpoints import load_run
from avsr.decoding.beam_search import BeamSearch
from avsr.decoding.ctc_beam import CTCPrefixBeamSearch
from avsr.decoding.nbest import decode_nbest
from avsr.data.tokenizer import check_vocabulary
from avsr.metrics.wer import ErrorCounter
from avsr.modalities import MODALITIES
from avsr.utils.runtime import (
    ensure_synthetic_corpus,
    set_torch_threads,
    skip_totals,
    skips_by_id,
)

__all__ = ["load_model_from_checkpoint", "build_search", "decode_lm", "build_beam_search",
           "build_ctc_beam_search", "checkpoint_tokenizer", "read_hyps",
           "evaluation_data_config", "evaluate_checkpoint", "main"]

log = logging.getLogger(__name__)


def load_model_from_checkpoint(ckpt_path: str | Path, map_location: str = "cpu",
                               with_vocabulary: bool = False):
    """Rebuild the model of a training checkpoint from the config stored inside it, safely
    (:func:`avsr.checkpoints.load_run`: no pickled code runs, the stored config builds only
    allow-listed classes).

    Args:
        ckpt_path: an avsr training checkpoint.
        map_location: where the tensors go.
        with_vocabulary: also return the tokenizer pieces stored in the checkpoint (``None``
            for checkpoints written before they were stored).

    Returns:
        (model in eval mode, the run's config as a DictConfig[, pieces])
    """
    run = load_run(ckpt_path, map_location=map_location)
    if with_vocabulary:
        return run.model, run.config, run.vocabulary
    return run.model, run.config


def _conditions(noise_cfg: DictConfig | dict) -> list[tuple[str, float | None]]:
    conds: list[tuple[str, float | None]] = [("clean", None)]
    for kind in noise_cfg.get("types", []):
        for snr in noise_cfg.get("snrs", []):
            conds.append((str(kind), float(snr)))
    return conds


def build_search(decode_cfg: DictConfig, name: str) -> Any:
    """The search object of the beam decoder ``name`` (``beam``: the ``decode.beam`` node;
    ``ctc_beam``: the ``decode.ctc_beam`` node, else the defaults); None for greedy decoders."""
    if name == "beam":
        return hydra.utils.instantiate(decode_cfg.beam)
    if name == "ctc_beam":
        node = decode_cfg.get("ctc_beam")
        return hydra.utils.instantiate(node) if node is not None else CTCPrefixBeamSearch()
    return None


def decode_lm(decode_cfg: DictConfig) -> Any:
    """The language model of ``decode.lm_ckpt`` for shallow fusion, or None."""
    if not decode_cfg.get("lm_ckpt"):
        return None
    from avsr.checkpoints import load_lm_checkpoint

    return load_lm_checkpoint(decode_cfg.lm_ckpt)


def build_beam_search(decode_cfg: DictConfig) -> tuple[BeamSearch | None, Any]:
    """The ``decode`` node's beam search and its language model (``lm_ckpt``), if any."""
    if "beam" not in decode_cfg.decoders:
        return None, None
    return build_search(decode_cfg, "beam"), decode_lm(decode_cfg)


def build_ctc_beam_search(decode_cfg: DictConfig, lm: Any = None
                          ) -> tuple[CTCPrefixBeamSearch | None, Any]:
    """The ``decode`` node's CTC prefix beam search (its ``ctc_beam`` node, else the defaults)
    and its language model (``lm_ckpt``; ``lm``: one already loaded), if ``ctc_beam`` is one
    of ``decode.decoders``."""
    if "ctc_beam" not in decode_cfg.decoders:
        return None, None
    return build_search(decode_cfg, "ctc_beam"), lm if lm is not None else decode_lm(decode_cfg)


@torch.inference_mode()
def _decode_loader(model, loader, tokenizer, modalities, decoders, max_len_ratio: float,
                   limit: int | None, beam: BeamSearch | None = None, lm: Any = None,
                   keep_records: bool = False, progress: tqdm | None = None,
                   ctc_beam: CTCPrefixBeamSearch | None = None
                   ) -> dict[tuple[str, str], ErrorCounter]:
    counters = {(m, d): ErrorCounter(keep_records=keep_records)
                for m in modalities for d in decoders}
    searches = {"beam": beam, "ctc_beam": ctc_beam}
    seen = 0
    for batch in loader:
        if batch is None or not batch["ids"]:
            continue  # every item of this batch was an unreadable file (counted by the dataset)
        for m in modalities:
            audio = batch["audio"] if m in ("audio", "audiovisual") else None
            video = batch["video"] if m in ("video", "audiovisual") else None
            if (m != "video" and audio is None) or (m != "audio" and video is None):
                continue  # this batch lacks the stream the modality needs
            enc, enc_lengths = model.encode_modality(audio, batch["audio_lengths"], video,
                                                     batch["video_lengths"], modality=m)
            ctc_log_probs = model.ctc(enc) if model.ctc is not None else None  # once per stream
            for d in decoders:
                nbest = decode_nbest(d, model, enc, enc_lengths, ctc_log_probs, tokenizer,
                                     max_len_ratio=max_len_ratio, search=searches.get(d), lm=lm)
                hyps = [n[0]["tokens"] if n else [] for n in nbest]
                counters[(m, d)].update(batch["texts"], [tokenizer.decode(h) for h in hyps],
                                        batch["ids"])
        seen += len(batch["ids"])
        if progress is not None:
            progress.update(len(batch["ids"]))
        if limit is not None and seen >= limit:
            break
    return counters


def _write_hyps(counter: ErrorCounter, folder: Path, modality: str, condition: str,
                decoder: str) -> Path:
    """One tab-separated file per modality × condition × decoder: id, word edits, reference
    words, reference, hypothesis (sorted by id, so two runs diff line by line)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{modality}_{condition.replace(' ', '').replace('+', 'p').replace('-', 'm')}"
    path = folder / f"{name}_{decoder}.tsv"
    lines = ["id\tedits\tref_words\tref\thyp"]
    lines += [f"{u}\t{e}\t{n}\t{r}\t{h}" for u, e, n, r, h in sorted(counter.records)]
    tmp = path.with_suffix(".tsv.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_hyps(path: str | Path) -> dict[str, tuple[str, str]]:
    """id -> (reference, hypothesis) of a hypothesis file of :func:`_write_hyps`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return {r["id"]: (r["ref"], r["hyp"] or "") for r in rows}


def _markdown(rows: list[dict[str, Any]], decoders: list[str]) -> str:
    head = "| modality | condition | " + " | ".join(f"WER % ({d})" for d in decoders) + " |"
    sep = "|---|---|" + "---|" * len(decoders)
    lines = [head, sep]
    for r in rows:
        cells = " | ".join(f"{100 * r['wer'][d]:.1f}" if d in r["wer"] else "–" for d in decoders)
        lines.append(f"| {r['modality']} | {r['condition']} | {cells} |")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], decoder: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    clean = {r["modality"]: r["wer"].get(decoder) for r in rows if r["noise"] == "clean"}
    kinds = sorted({r["noise"] for r in rows if r["noise"] != "clean"})
    styles = {"babble": "-", "white": "--"}
    snrs_all = sorted({r["snr"] for r in rows if r["snr"] is not None})
    clean_x = (max(snrs_all) + 5) if snrs_all else 0
    for m, color in zip(MODALITIES, ("tab:blue", "tab:orange", "tab:green")):
        for kind in kinds:
            pts = sorted((r["snr"], r["wer"][decoder]) for r in rows
                         if r["modality"] == m and r["noise"] == kind and decoder in r["wer"])
            if pts:
                xs, ys = zip(*pts)
                ax.plot(list(xs) + [clean_x], [100 * y for y in ys] + [100 * (clean.get(m) or 0)],
                        styles.get(kind, ":"), color=color, marker="o", label=f"{m} / {kind}")
        if not kinds and clean.get(m) is not None:
            ax.plot([clean_x], [100 * clean[m]], "o", color=color, label=m)
    ax.set_xlabel("SNR (dB); rightmost point = clean")
    ax.set_ylabel(f"WER % ({decoder})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def checkpoint_tokenizer(datamodule, ckpt_path: str | Path, run_cfg: DictConfig,
                         pieces: list[str] | None):
    """The datamodule's tokenizer, proven to be the one the checkpoint was trained with.

    Never trains one. Checks every piece against those stored in the checkpoint, or, for
    checkpoints without them, the vocabulary size against the model's.

    Raises:
        FileNotFoundError: the tokenizer model is missing.
        ValueError: its vocabulary differs from the checkpoint's (names both).
    """
    tokenizer = datamodule.load_tokenizer(train_if_missing=False)
    if pieces is not None:
        check_vocabulary(tokenizer, pieces, f"checkpoint {ckpt_path}")
    elif run_cfg.get("vocab_size") is not None and tokenizer.vocab_size != run_cfg.vocab_size:
        raise ValueError(f"tokenizer {tokenizer!r} has {tokenizer.vocab_size} ids but checkpoint "
                         f"{ckpt_path} was trained with vocab_size={run_cfg.vocab_size}")
    else:
        log.warning("%s stores no tokenizer vocabulary (written by an older avsr): only the "
                    "vocabulary size of %r was checked", ckpt_path, tokenizer)
    return tokenizer


def evaluation_data_config(run_cfg: DictConfig, overrides: DictConfig | dict | None
                           ) -> DictConfig:
    """The checkpoint's own data settings with ``overrides`` (e.g. ``corpus.root``) on top.

    The stored config is resolved, so the tokenizer path, transforms, seed and frame budgets
    stay those of training unless overridden one by one.
    """
    data_cfg = run_cfg.data
    if overrides:
        data_cfg = OmegaConf.merge(data_cfg, overrides)
    if data_cfg.get("augment_on", "cpu") != "cpu":
        # decoding iterates the loaders itself, without the Trainer's batch-transfer hook: the
        # CPU evaluation transforms give the same frames (tests/test_device_augment.py)
        data_cfg = OmegaConf.merge(data_cfg, {"augment_on": "cpu"})
    return data_cfg


def evaluate_checkpoint(ckpt_path: str | Path, eval_cfg: DictConfig, decode_cfg: DictConfig,
                        output_dir: str | Path, data_overrides: DictConfig | dict | None = None
                        ) -> dict[str, Any]:
    """Decode the test split of ``ckpt_path`` under every condition of ``eval_cfg``.

    Args:
        ckpt_path: training checkpoint (holds its config).
        eval_cfg: the ``eval`` node: ``modalities``, ``noise.{types,snrs}``, ``limit``
            (utterances per condition: stops after the batch that reaches it, null = all), ``write_hyps`` (per-utterance hypotheses
            in ``hyps/<modality>_<condition>_<decoder>.tsv``).
        decode_cfg: the ``decode`` node: ``decoders``, ``primary_decoder``, ``max_len_ratio``
            and, for ``beam``, the ``beam`` search node and ``lm_ckpt``.
        output_dir: where ``wer.json``, ``wer.md`` and ``wer_vs_snr.png`` go.
        data_overrides: data settings merged onto those stored in the checkpoint (e.g.
            ``{"corpus": {"root": OTHER}}`` to evaluate on another corpus).

    Returns:
        dict with ``rows`` (one per modality × condition), ``summary`` and file paths.
    """
    start = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, run_cfg, pieces = load_model_from_checkpoint(ckpt_path, with_vocabulary=True)
    datamodule = hydra.utils.instantiate(evaluation_data_config(run_cfg, data_overrides))
    tokenizer = checkpoint_tokenizer(datamodule, ckpt_path, run_cfg, pieces)
    datamodule.setup("test")
    modalities = list(eval_cfg.modalities)
    decoders = list(decode_cfg.decoders)
    limit = eval_cfg.get("limit")
    beam, lm = build_beam_search(decode_cfg)
    ctc_beam, ctc_lm = build_ctc_beam_search(decode_cfg, lm)
    lm = lm if lm is not None else ctc_lm
    write_hyps = bool(eval_cfg.get("write_hyps", False))
    hyp_files: list[Path] = []

    rows: list[dict[str, Any]] = []
    video_only: dict[tuple[str, str], ErrorCounter] | None = None
    conditions = _conditions(eval_cfg.noise)
    per_condition = len(datamodule.datasets["test"])
    if limit is not None:
        per_condition = min(per_condition, int(limit))
    # one bar over every utterance of every condition: the whole matrix can take many minutes
    progress = tqdm(total=per_condition * len(conditions), unit="utt", dynamic_ncols=True,
                    disable=not eval_cfg.get("progress", True))
    for noise, snr in conditions:
        progress.set_description("clean" if noise == "clean" else f"{noise} {snr:+g} dB")
        loader = datamodule.test_dataloader_for(None if noise == "clean" else noise, snr)
        # Audio noise cannot change a video-only result: decode video once, reuse its row.
        mods = [m for m in modalities if not (m == "video" and video_only is not None)]
        counters = _decode_loader(model, loader, tokenizer, mods, decoders,
                                  float(decode_cfg.max_len_ratio), limit, beam, lm,
                                  keep_records=write_hyps, progress=progress,
                                  ctc_beam=ctc_beam)
        if noise == "clean":
            # every noisy condition decodes the same files: judge the bad ones now, not after
            # the whole matrix (small or limited test sets never reach the running check)
            data = loader.dataset
            data.report.check(data.max_bad_fraction, 1)
        if "video" in modalities:
            if video_only is None:
                video_only = {k: v for k, v in counters.items() if k[0] == "video"}
            counters.update(video_only)
        condition = "clean" if noise == "clean" else f"{noise} {snr:+g} dB"
        for m in modalities:
            wers = {d: counters[(m, d)].wer for d in decoders if counters[(m, d)].words}
            if not wers:
                continue
            if write_hyps:
                for d in wers:
                    hyp_files.append(_write_hyps(counters[(m, d)], output_dir / "hyps",
                                                 m, condition, d))
            rows.append({
                "modality": m, "condition": condition, "noise": noise, "snr": snr,
                "wer": wers,
                "utterances": counters[(m, decoders[0])].utterances,
                "words": counters[(m, decoders[0])].words,
                "examples": counters[(m, decoders[0])].examples[:3],
            })
        log.info("evaluated %s", condition)
    progress.close()

    primary = decode_cfg.get("primary_decoder") or decoders[-1]
    md = _markdown(rows, decoders)
    # each condition is a dataset over the same files: a bad file counts once, by id
    skipped = {**skip_totals(datamodule.skip_summary()),
               **skips_by_id(datamodule.datasets.values())}
    result = {
        "checkpoint": str(ckpt_path),
        "rows": rows,
        "skipped_media": skipped,
        "wall_s": round(time.time() - start, 1),
        "summary": {f"{r['modality']}/{r['condition']}": round(100 * r["wer"][primary], 2)
                    for r in rows if primary in r["wer"]},
    }
    (output_dir / "wer.json").write_text(json.dumps(result, indent=2, default=str))
    (output_dir / "wer.md").write_text(md + "\n")
    _plot(rows, primary, output_dir / "wer_vs_snr.png")
    result["files"] = [str(output_dir / n) for n in ("wer.json", "wer.md", "wer_vs_snr.png")]
    result["hyp_files"] = [str(p) for p in hyp_files]
    print(f"\nWER table ({ckpt_path}):\n{md}\n")
    if skipped.get("total"):
        print(f"skipped {skipped['total']} unreadable test items: {skipped['by_problem']}")
    print(f"written to {output_dir}")
    return result


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    set_torch_threads(cfg.get("num_threads"))
    if cfg.get("synthetic"):
        ensure_synthetic_corpus(cfg.synthetic)
    evaluate_checkpoint(cfg.ckpt, cfg.eval, cfg.decode, cfg.paths.output_dir, cfg.get("data"))


def _data_overrides_layer_on_checkpoint(argv: list[str]) -> list[str]:
    """``data.KEY=VALUE`` -> ``++data.KEY=VALUE``.

    The ``data`` node of ``configs/evaluate.yaml`` starts empty and is merged onto the data
    config stored in the checkpoint, so any key of it may be overridden; Hydra's struct mode
    would otherwise refuse every key that the empty node lacks.
    """
    return [f"++{a}" if a.startswith("data.") and "=" in a else a for a in argv]


if __name__ == "__main__":
    import sys

    sys.argv[1:] = _data_overrides_layer_on_checkpoint(sys.argv[1:])
    main()
