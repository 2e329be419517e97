"""The ``synth_open`` table: ASR, VSR and AVSR, clean and in noise, with and without LM fusion.

Stages (``--stage`` / ``--stop-stage``; each reuses what an earlier call finished, so a killed
run continues where it stopped):

1. train ``+experiment=synth_open`` for its fixed step budget in ``<run>/model`` (resumes from
   ``last.ckpt``); no test decode here.
2. the shallow-fusion LM (``avsr.train_lm``) on the same training transcripts and units.
3. the LM weight, per modality, from the **validation** split (clean, joint CTC/attention
   beam): the weight of ``--lm-weights`` with the lowest validation WER (0 = no LM wins too).
4. the test split, decoded once per reported configuration: the whole noise matrix without
   the LM, and with the LM at each modality's chosen weight.
5. the table, with the homophene floor (``benchmarks/homophene_floor.py --open --corpus``)
   beside every VSR figure, and the clean test words' error rate by how often training saw
   each word (``avsr.metrics.word_frequency``): ``<out>/results.{json,md}``.

    python benchmarks/synth_open.py --run logs/synth_open --out benchmarks/results/synth_open

Checkpoints stay in ``--run`` (not committed); ``--out`` gets the small result files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
EXPERIMENT = "synth_open"
MODALITIES = ("audio", "video", "audiovisual")


def compose_config(name: str, overrides: list[str]):
    """``configs/<name>.yaml`` with ``overrides`` (real Hydra composition)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(name, overrides=overrides)


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def stage_train(cfg, run: Path) -> dict[str, Any]:
    """Train (resume, or reuse a finished run of the same budget); return its summary."""
    from avsr.train import train

    summary = _json(run / "model" / "summary.json")
    if summary and summary.get("global_step") == cfg.trainer.max_steps:
        print(f"[train] reused finished run: {run / 'model'}", flush=True)
        return summary
    t = time.time()
    summary = train(cfg)
    summary["stage_wall_s"] = round(time.time() - t, 1)
    (run / "model" / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if summary["global_step"] != cfg.trainer.max_steps:
        raise RuntimeError(f"training stopped at step {summary['global_step']} of "
                           f"{cfg.trainer.max_steps} (trainer.max_time?): the table would not "
                           "be at the fixed budget; rerun to resume")
    return summary


def stage_lm(train_cfg, run: Path, lm_overrides: list[str]) -> dict[str, Any]:
    """Train the shallow-fusion LM on the corpus's training transcripts (or reuse it)."""
    from avsr.train_lm import train_lm

    out = run / "lm"
    done = _json(out / "lm.json")
    if done:
        print(f"[lm] reused: {out / 'lm.pt'}", flush=True)
        return done
    cfg = compose_config("train_lm", [
        f"corpus.root={train_cfg.data.corpus.root}",
        f"tokenizer_path={train_cfg.data.tokenizer_path}",
        f"paths.output_dir={out}", *lm_overrides])
    t = time.time()
    result = train_lm(cfg)
    result = {k: v for k, v in result.items() if k != "history"} | {
        "wall_s": round(time.time() - t, 1), "path": str(out / "lm.pt")}
    (out / "lm.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _decode(ckpt: str, cfg, out: Path, *, modalities: list[str], lm_ckpt: str | None,
            lm_weight: float, noise: bool, split: str) -> list[dict[str, Any]]:
    from avsr.evaluate import evaluate_checkpoint

    cached = _json(out / "wer.json")
    if cached and cached.get("checkpoint") == ckpt:
        return cached["rows"]
    eval_cfg = OmegaConf.merge(cfg.eval, {"modalities": modalities, "progress": False})
    if not noise:
        eval_cfg.noise.types = []
    decode_cfg = OmegaConf.merge(cfg.decode, {"lm_ckpt": lm_ckpt, "beam": {"lm_weight": lm_weight}})
    evaluate_checkpoint(ckpt, eval_cfg, decode_cfg, out, data_overrides={"test_split": split})
    return _json(out / "wer.json")["rows"]  # as a later call reads them back


def _clean_wer(rows: list[dict[str, Any]], modality: str, decoder: str = "beam") -> float:
    return float(next(r["wer"][decoder] for r in rows
                      if r["modality"] == modality and r["noise"] == "clean"))


def stage_lm_weight(ckpt: str, cfg, run: Path, lm_path: str, weights: list[float]
                    ) -> dict[str, Any]:
    """Each modality's LM weight with the lowest clean validation WER (beam search)."""
    found: dict[str, dict[str, float]] = {m: {} for m in MODALITIES}
    for w in weights:
        rows = _decode(ckpt, cfg, run / "val_lm" / f"w{w:g}", modalities=list(MODALITIES),
                       lm_ckpt=lm_path if w else None, lm_weight=w, noise=False, split="val")
        for m in MODALITIES:
            found[m][f"{w:g}"] = _clean_wer(rows, m)
    chosen = {m: float(min(found[m], key=found[m].get)) for m in MODALITIES}
    result = {"val_wer_by_weight": found, "chosen": chosen}
    (run / "val_lm" / "chosen.json").write_text(json.dumps(result, indent=2))
    return result


def stage_test(ckpt: str, cfg, run: Path, lm_path: str, chosen: dict[str, float]
               ) -> dict[str, Any]:
    """The test split: the noise matrix without the LM, and with each modality's LM weight."""
    rows = {"no_lm": _decode(ckpt, cfg, run / "test_no_lm", modalities=list(MODALITIES),
                             lm_ckpt=None, lm_weight=0.0, noise=True, split="test")}
    with_lm = []
    for m in MODALITIES:
        with_lm += _decode(ckpt, cfg, run / f"test_lm_{m}", modalities=[m],
                           lm_ckpt=lm_path if chosen[m] else None, lm_weight=chosen[m],
                           noise=True, split="test")
    rows["lm"] = with_lm
    return rows


def table(rows: dict[str, list[dict[str, Any]]], floor: float | None) -> str:
    """One line per modality and LM setting; columns: the test conditions (beam WER %)."""
    conditions = list(dict.fromkeys(r["condition"] for r in rows["no_lm"]))
    head = "| modality | LM | " + " | ".join(conditions) + " |"
    lines = [head, "|" + "---|" * (len(conditions) + 2)]
    for setting in ("no_lm", "lm"):
        for m in MODALITIES:
            got = {r["condition"]: 100 * r["wer"]["beam"] for r in rows[setting]
                   if r["modality"] == m}
            cells = [f"{got[c]:.1f}" if c in got else "—" for c in conditions]
            lines.append(f"| {m} | {'yes' if setting == 'lm' else 'no'} | "
                         + " | ".join(cells) + " |")
    if floor is not None:
        lines.append(f"| homophene floor (VSR's physical limit) | — | {floor:.1f} |"
                     + " |" * (len(conditions) - 1))
    return "\n".join(lines)


def frequency_breakdown(run: Path, cfg) -> dict[str, Any]:
    """Clean test word errors by training count, per modality, without and with the LM."""
    from avsr.data.corpora import LRS3
    from avsr.evaluate import read_hyps
    from avsr.metrics.word_frequency import errors_by_frequency, word_counts

    counts = word_counts(u.text for u in LRS3(cfg.data.corpus.root).utterances("train"))
    found: dict[str, Any] = {}
    for setting, folder in (("no_lm", lambda m: run / "test_no_lm"),
                            ("lm", lambda m: run / f"test_lm_{m}")):
        for m in MODALITIES:
            path = folder(m) / "hyps" / f"{m}_clean_beam.tsv"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: rerun stage 4")
            pairs = read_hyps(path).values()
            buckets, insertions = errors_by_frequency([r for r, _ in pairs],
                                                      [h for _, h in pairs], counts)
            found[f"{m}/{setting}"] = {
                "insertions": insertions,
                "buckets": {b.label: {"words": b.words, "errors": b.errors} for b in buckets}}
    return found


def frequency_table(found: dict[str, Any]) -> str:
    """Markdown: one row per modality and LM setting, one column per training-count bucket."""
    labels = list(next(iter(found.values()))["buckets"])
    words = {lb: next(iter(found.values()))["buckets"][lb]["words"] for lb in labels}
    lines = ["| modality | LM | " + " | ".join(f"seen {lb}× ({words[lb]} words)" for lb in labels)
             + " | insertions |", "|" + "---|" * (len(labels) + 3)]
    for key, entry in found.items():
        m, setting = key.split("/")
        cells = [f"{100 * b['errors'] / b['words']:.1f}" if b["words"] else "—"
                 for b in entry["buckets"].values()]
        lines.append(f"| {m} | {'yes' if setting == 'lm' else 'no'} | " + " | ".join(cells)
                     + f" | {entry['insertions']} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir, out = Path(args.run).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"+experiment={EXPERIMENT}", f"paths.output_dir={run_dir / 'model'}",
                 "ckpt_path=last", "evaluate=false", *args.override]
    cfg = compose_config("train", overrides)
    results = _json(out / "results.json") or {}
    results.update({"experiment": EXPERIMENT, "overrides": overrides,
                    "steps": int(cfg.trainer.max_steps)})
    stages = range(args.stage, args.stop_stage + 1)

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    if 1 in stages:
        summary = stage_train(cfg, run_dir)
        results["train"] = {k: summary.get(k) for k in (
            "global_step", "epochs", "parameters", "train_wall_s", "stage_wall_s",
            "evaluated_checkpoint", "skipped_media", "metrics")}
        save()
    ckpt = str(run_dir / "model" / "checkpoints" / "last.ckpt")
    if 2 in stages:
        results["lm"] = stage_lm(cfg, run_dir, args.lm_override)
        save()
    lm_path = str(run_dir / "lm" / "lm.pt")
    if 3 in stages:
        t = time.time()
        results["lm_weight"] = stage_lm_weight(ckpt, cfg, run_dir, lm_path, args.lm_weights)
        results["lm_weight"]["wall_s"] = round(time.time() - t, 1)
        save()
    if 4 in stages:
        t = time.time()
        results["test"] = stage_test(ckpt, cfg, run_dir, lm_path,
                                     results["lm_weight"]["chosen"])
        results["test_wall_s"] = round(time.time() - t, 1)
        save()
    if 5 in stages:
        floor = _json(Path(args.floor)) if args.floor else None
        results["homophene_floor"] = floor.get("floor_wer") if floor else None
        results["word_frequency"] = frequency_breakdown(run_dir, cfg)
        (out / "results.md").write_text(
            table(results["test"], results["homophene_floor"]) + "\n\n"
            + "Clean test words wrong (substituted or deleted, %) by their count in the "
              "training transcripts:\n\n" + frequency_table(results["word_frequency"]) + "\n")
        save()
        print((out / "results.md").read_text())
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="logs/synth_open", help="checkpoints, LM, decodes")
    parser.add_argument("--out", default="benchmarks/results/synth_open", help="result files")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--stop-stage", type=int, default=5)
    parser.add_argument("--lm-weights", type=float, nargs="+",
                        default=[0.0, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--lm-override", action="append", default=[],
                        help="a Hydra override of configs/train_lm.yaml (repeatable)")
    parser.add_argument("--floor", help="homophene_floor.py --open --corpus JSON output "
                        "(its floor_wer goes beside the VSR rows)")
    parser.add_argument("override", nargs="*", help="Hydra overrides of the experiment")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
