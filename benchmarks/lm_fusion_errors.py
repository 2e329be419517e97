"""Why shallow LM fusion does (not) help: search errors against model errors (issue 21).

For every utterance of a split, per modality, the joint CTC/attention beam search decodes
without the LM (its n-best list too) and with the LM at each ``--lm-weights`` value; then the
reference, the no-LM output and every n-best entry are scored teacher-forced by the decoder,
CTC and the LM (:func:`avsr.decoding.rescore.score_sequences`, the beam search's own parts).

What it tells:

- **Search or model error.** A wrong output is a *search* error when the reference scores
  higher under the same weighted scorers (a wider beam would find it), a *model* error when the
  scorers themselves prefer the wrong output (no search can help; only a better model or a
  scorer that changes the ranking, such as the LM).
- **The weight the LM would need.** With AM = the weighted decoder + CTC score, the LM makes
  the reference beat the no-LM output once ``w · (LM(ref) − LM(hyp)) > AM(hyp) − AM(ref)``:
  ``w* = AM gap / LM gap`` where the LM prefers the reference, never where it prefers the
  output. The share of wrong utterances with w* below the weights that validation allows
  (above ~0.3 deletions take over) bounds what fusion can fix.
- **N-best oracle and rescoring.** The WER of the best entry of the no-LM n-best list (what any
  rescoring could reach) and of rescoring it with the LM at each weight.

Run on the validation split (the test split is read once per reported run, by the benchmark
itself):

    python benchmarks/lm_fusion_errors.py --ckpt logs/synth_open/model/checkpoints/last.ckpt \\
        --lm logs/synth_open/lm/lm.pt --split val --out benchmarks/results/synth_open/lm_errors

Writes ``<out>/lm_errors.json`` and ``<out>/lm_errors.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsr.checkpoints import load_lm_checkpoint  # noqa: E402
from avsr.decoding import BeamSearch  # noqa: E402
from avsr.decoding.rescore import score_sequences  # noqa: E402
from avsr.evaluate import (checkpoint_tokenizer, evaluation_data_config,  # noqa: E402
                           load_model_from_checkpoint)
from avsr.metrics.wer import wer, word_errors  # noqa: E402

import hydra  # noqa: E402

W_STAR_BINS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def _scores(model, enc, lengths, ctc_lp, seqs, tokenizer, lm) -> dict[str, list[float]]:
    got = score_sequences(model.decoder, enc, lengths, ctc_lp, seqs, sos_id=tokenizer.sos_id,
                          eos_id=tokenizer.eos_id, blank_id=tokenizer.blank_id, lm=lm)
    return {k: v.tolist() for k, v in got.items()}


def _am(s: dict[str, float], ctc_weight: float) -> float:
    """The beam search's score without the LM (:func:`fused_score` of one utterance)."""
    return (1.0 - ctc_weight) * s["decoder"] + ctc_weight * s["ctc"]


@torch.inference_mode()
def collect(model, loader, tokenizer, lm, modality: str, *, beam_size: int, ctc_weight: float,
            lm_weights: list[float], limit: int | None) -> list[dict[str, Any]]:
    """Per utterance: reference and outputs (no LM, each LM weight, the n-best list), each
    with its decoder / CTC / LM scores."""
    plain = BeamSearch(beam_size=beam_size, ctc_weight=ctc_weight, nbest=beam_size)
    fused = {w: BeamSearch(beam_size=beam_size, ctc_weight=ctc_weight, lm_weight=w)
             for w in lm_weights}
    records: list[dict[str, Any]] = []
    for batch in loader:
        if batch is None or not batch["ids"]:
            continue
        audio = batch["audio"] if modality != "video" else None
        video = batch["video"] if modality != "audio" else None
        enc, lengths = model.encode_modality(audio, batch["audio_lengths"], video,
                                             batch["video_lengths"], modality=modality)
        ctc_lp = model.ctc(enc)
        args = (model.decoder, enc, lengths, ctc_lp, tokenizer.sos_id, tokenizer.eos_id,
                tokenizer.blank_id)
        nbest = plain(*args)
        outputs = {w: [h[0].tokens if h else [] for h in s(*args, lm=lm)]
                   for w, s in fused.items()}
        refs = [tokenizer.encode(t) for t in batch["texts"]]
        ref_scores = _scores(model, enc, lengths, ctc_lp, refs, tokenizer, lm)
        width = max(len(n) for n in nbest)
        ranked = [_scores(model, enc, lengths, ctc_lp,
                          [n[k].tokens if k < len(n) else [] for n in nbest], tokenizer, lm)
                  for k in range(width)]
        fused_scores = {w: _scores(model, enc, lengths, ctc_lp, o, tokenizer, lm)
                        for w, o in outputs.items()}
        for b, text in enumerate(batch["texts"]):
            def part(s):
                return {k: v[b] for k, v in s.items()}
            entries = [{"tokens": nbest[b][k].tokens, **part(ranked[k])}
                       for k in range(len(nbest[b]))]
            records.append({
                "id": batch["ids"][b], "ref": text,
                "ref_scores": part(ref_scores),
                "nbest": [{"text": tokenizer.decode(e.pop("tokens")), "scores": e}
                          for e in entries],
                "fused": {f"{w:g}": {"text": tokenizer.decode(outputs[w][b]),
                                     "scores": part(fused_scores[w])} for w in lm_weights},
            })
        if limit is not None and len(records) >= limit:
            break
    return records


def _wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER of (reference, hypothesis) pairs."""
    return wer([r for r, _ in pairs], [h for _, h in pairs])


def analyse(records: list[dict[str, Any]], *, ctc_weight: float, lm_weights: list[float],
            rescore_weights: list[float]) -> dict[str, Any]:
    """The figures of the module docstring from :func:`collect`'s records."""
    def total(s, w):
        return _am(s, ctc_weight) + w * s["lm"]

    out: dict[str, Any] = {"utterances": len(records)}
    best = [(r["ref"], r["nbest"][0]["text"] if r["nbest"] else "") for r in records]
    out["wer_no_lm"] = _wer(best)
    out["wer_lm"] = {f"{w:g}": _wer([(r["ref"], r["fused"][f"{w:g}"]["text"]) for r in records])
                     for w in lm_weights}
    out["wer_nbest_oracle"] = _wer([
        (r["ref"], min((e["text"] for e in r["nbest"]), key=lambda h: word_errors(r["ref"], h)[0],
                       default="")) for r in records])
    out["wer_nbest_rescored"] = {
        f"{w:g}": _wer([(r["ref"], max(r["nbest"], key=lambda e: total(e["scores"], w))["text"]
                         if r["nbest"] else "") for r in records]) for w in rescore_weights}
    out["ref_in_nbest"] = sum(any(e["text"] == r["ref"] for e in r["nbest"]) for r in records)

    wrong = [r for r in records if r["nbest"] and r["nbest"][0]["text"] != r["ref"]]
    out["wrong_no_lm"] = len(wrong)
    search = [r for r in wrong
              if _am(r["ref_scores"], ctc_weight) > _am(r["nbest"][0]["scores"], ctc_weight)]
    out["search_errors_no_lm"] = len(search)
    am_gap, lm_gap, w_star = [], [], []
    for r in wrong:
        hyp = r["nbest"][0]["scores"]
        a = _am(hyp, ctc_weight) - _am(r["ref_scores"], ctc_weight)
        g = r["ref_scores"]["lm"] - hyp["lm"]
        am_gap.append(a)
        lm_gap.append(g)
        if a <= 0:
            w_star.append(0.0)  # a search error: the AM already prefers the reference
        elif g > 0:
            w_star.append(a / g)
        else:
            w_star.append(math.inf)  # the LM prefers the wrong output too
    finite = [x for x in am_gap if math.isfinite(x)]
    out["am_gap_median"] = statistics.median(finite) if finite else None
    out["lm_gap_median"] = statistics.median(lm_gap) if lm_gap else None
    out["lm_prefers_ref"] = sum(g > 0 for g in lm_gap)
    out["w_star_at_most"] = {f"{b:g}": sum(x <= b for x in w_star) for b in W_STAR_BINS}
    out["w_star_never"] = sum(math.isinf(x) for x in w_star)
    fused_split = {}
    for w in lm_weights:
        key = f"{w:g}"
        bad = [r for r in records if r["fused"][key]["text"] != r["ref"]]
        s_err = sum(total(r["ref_scores"], w) > total(r["fused"][key]["scores"], w) for r in bad)
        fused_split[key] = {"wrong": len(bad), "search_errors": s_err,
                            "model_errors": len(bad) - s_err}
    out["with_lm"] = fused_split
    return out


def table(results: dict[str, dict[str, Any]], lm_weights: list[float],
          rescore_weights: list[float]) -> str:
    lines = ["| modality | utterances | WER no LM | "
             + " | ".join(f"WER LM {w:g}" for w in lm_weights)
             + " | 10-best oracle | reference in 10-best | wrong (no LM) | of them search "
             "errors | LM prefers the reference | w* ≤ " + " | w* ≤ ".join(
                 f"{b:g}" for b in W_STAR_BINS) + " | w* none (LM prefers the output) | "
             "median AM gap | median LM gap |",
             "|---" * (11 + len(lm_weights) + len(W_STAR_BINS)) + "|"]
    for m, r in results.items():
        cells = [m, r["utterances"], f"{100 * r['wer_no_lm']:.1f}",
                 *(f"{100 * r['wer_lm'][f'{w:g}']:.1f}" for w in lm_weights),
                 f"{100 * r['wer_nbest_oracle']:.1f}", r["ref_in_nbest"], r["wrong_no_lm"],
                 r["search_errors_no_lm"], r["lm_prefers_ref"],
                 *(r["w_star_at_most"][f"{b:g}"] for b in W_STAR_BINS), r["w_star_never"],
                 f"{r['am_gap_median']:.2f}", f"{r['lm_gap_median']:.2f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Rescoring the 10-best list (no-LM beam) with the LM, WER %:", "",
              "| modality | " + " | ".join(f"w={w:g}" for w in rescore_weights) + " |",
              "|---" * (1 + len(rescore_weights)) + "|"]
    for m, r in results.items():
        lines.append(f"| {m} | " + " | ".join(
            f"{100 * r['wer_nbest_rescored'][f'{w:g}']:.1f}" for w in rescore_weights) + " |")
    lines += ["", "Errors of the LM-fused beam: search (the reference scores higher under the "
              "fused scorers) / model errors:", "",
              "| modality | " + " | ".join(f"w={w:g}" for w in lm_weights) + " |",
              "|---" * (1 + len(lm_weights)) + "|"]
    for m, r in results.items():
        lines.append(f"| {m} | " + " | ".join(
            f"{r['with_lm'][f'{w:g}']['search_errors']} / {r['with_lm'][f'{w:g}']['model_errors']}"
            for w in lm_weights) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="training checkpoint")
    p.add_argument("--lm", required=True, help="LM checkpoint (avsr.train_lm)")
    p.add_argument("--split", default="val", help="data split decoded [val]")
    p.add_argument("--modalities", nargs="+", default=["audio", "video", "audiovisual"])
    p.add_argument("--beam-size", type=int, default=10)
    p.add_argument("--ctc-weight", type=float, default=0.1)
    p.add_argument("--lm-weights", type=float, nargs="+", default=[0.1, 0.5],
                   help="LM weights of the fused beam searches")
    p.add_argument("--rescore-weights", type=float, nargs="+",
                   default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0])
    p.add_argument("--limit", type=int, default=None, help="utterances per modality")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    start = time.time()
    torch.manual_seed(0)
    model, run_cfg, pieces = load_model_from_checkpoint(args.ckpt, with_vocabulary=True)
    datamodule = hydra.utils.instantiate(evaluation_data_config(run_cfg,
                                                                {"test_split": args.split}))
    tokenizer = checkpoint_tokenizer(datamodule, args.ckpt, run_cfg, pieces)
    datamodule.setup("test")
    lm = load_lm_checkpoint(args.lm).eval()
    results, raw = {}, {}
    for m in args.modalities:
        t = time.time()
        raw[m] = collect(model, datamodule.test_dataloader_for(None, None), tokenizer, lm, m,
                         beam_size=args.beam_size, ctc_weight=args.ctc_weight,
                         lm_weights=args.lm_weights, limit=args.limit)
        results[m] = analyse(raw[m], ctc_weight=args.ctc_weight, lm_weights=args.lm_weights,
                             rescore_weights=args.rescore_weights)
        results[m]["wall_s"] = round(time.time() - t, 1)
        print(f"[{m}] {json.dumps(results[m])}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": args.ckpt, "lm": args.lm, "split": args.split,
               "beam_size": args.beam_size, "ctc_weight": args.ctc_weight,
               "lm_weights": args.lm_weights, "results": results,
               "wall_s": round(time.time() - start, 1)}
    (out / "lm_errors.json").write_text(json.dumps(summary, indent=2))
    (out / "utterances.json").write_text(json.dumps(raw, indent=1))
    md = table(results, args.lm_weights, args.rescore_weights)
    (out / "lm_errors.md").write_text(md + "\n")
    print(md)
    return summary


if __name__ == "__main__":
    main()
