"""Real human speech: our ASR trained on the Asterisk prompts vs pocketsphinx's en-us model.

One command gives both test WERs on the same prompts with the same normalisation, scored by
jiwer:

1. ``+experiment=real_asterisk_asr`` trains for ``--steps`` optimiser steps (validation, CTC
   greedy, picks the checkpoint), then decodes the test split once with every decoder of
   ``decode`` (CTC greedy, attention greedy, joint CTC/attention beam). The validation split
   is decoded the same way and the decoder with the lowest validation WER is the one whose
   test WER is reported; its per-utterance test hypotheses are re-scored here with jiwer (the
   project's own WER is kept beside it as a check).
2. pocketsphinx 5 (its bundled en-us acoustic model, dictionary and 3-gram LM; nothing
   trained or tuned here) decodes the same test prompts, the same 16 kHz copies our model
   reads; its words are normalised with :func:`avsr.data.prompt_text.normalize_prompt`.

Resumable: a second call with the same ``--out`` continues training from ``last.ckpt`` (or
reuses a finished run of the same step budget) and reuses finished pocketsphinx decodes.

    apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en
    python benchmarks/real_speech.py --steps 1500 --out benchmarks/results/real_speech

Writes ``<out>/results.json`` and ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import hydra
import jiwer
import torch
from hydra import compose, initialize_config_dir

from avsr.data.asterisk import read_wav
from avsr.data.prompt_text import normalize_prompt
from avsr.evaluate import read_hyps

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
EXPERIMENT = "real_asterisk_asr"


def compose_config(overrides: list[str]):
    """The training config of the experiment with ``overrides`` (real Hydra composition)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[f"+experiment={EXPERIMENT}", *overrides])


def pocketsphinx_decoder():
    """pocketsphinx's default en-us recogniser (acoustic model, dictionary, LM), at 16 kHz."""
    from pocketsphinx import Decoder

    return Decoder(samprate=16000, logfn="/dev/null")


def pocketsphinx_transcribe(decoder: Any, wav: str | Path) -> str:
    """Decode one 16 kHz WAV with ``decoder``; the words normalised as our references are."""
    audio, rate = read_wav(wav)
    if rate != 16000:
        raise ValueError(f"{wav}: {rate} Hz, pocketsphinx's en-us model needs 16000 Hz")
    pcm = (audio.clamp(-1.0, 32767 / 32768) * 32768.0).round().to(torch.int16).numpy()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return normalize_prompt(hyp.hypstr if hyp is not None else "")[0]


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus-level WER (total edits / total reference words) from jiwer."""
    return float(jiwer.process_words(refs, [h if h else "" for h in hyps]).wer)


def train_ours(cfg, out: Path, steps: int) -> dict[str, Any]:
    """Train (or resume, or reuse) the experiment run in ``out``; return its summary."""
    from avsr.train import train

    done = out / "summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
        if summary.get("global_step") == steps and summary.get("eval"):
            print(f"[ours] reused finished run: {done}", flush=True)
            return summary
    t = time.time()
    summary = train(cfg)
    summary["stage_wall_s"] = round(time.time() - t, 1)
    done.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def choose_decoder(summary: dict[str, Any], cfg, out: Path) -> tuple[str, dict[str, float]]:
    """Decode the validation split with every decoder; the one with the lowest WER wins.

    Returns:
        ``(decoder, validation WER per decoder)``; cached in ``out/val_decode``.
    """
    from avsr.evaluate import evaluate_checkpoint

    cache = out / "val_decode" / "wer.json"
    if cache.is_file() and json.loads(cache.read_text())["checkpoint"] == str(
            summary["evaluated_checkpoint"]):
        rows = json.loads(cache.read_text())["rows"]
    else:
        rows = evaluate_checkpoint(summary["evaluated_checkpoint"], cfg.eval, cfg.decode,
                                   out / "val_decode",
                                   data_overrides={"test_split": "val"})["rows"]
    wers = next(r["wer"] for r in rows if r["modality"] == "audio" and r["noise"] == "clean")
    return min(wers, key=wers.get), {k: float(v) for k, v in wers.items()}


def run_pocketsphinx(utterances: list, out: Path) -> dict[str, tuple[str, str]]:
    """Decode ``utterances`` with pocketsphinx; cached in ``out`` (tsv: id, ref, hyp)."""
    cache = out / "pocketsphinx_hyps.tsv"
    done = read_hyps(cache) if cache.is_file() else {}
    decoder = pocketsphinx_decoder()
    t = time.time()
    for u in utterances:
        if u.id not in done:
            done[u.id] = (u.text, pocketsphinx_transcribe(decoder, u.audio_path))
            with open(cache, "w", encoding="utf-8") as f:  # rewritten each time: resumable
                f.write("id\tref\thyp\n")
                f.writelines(f"{k}\t{r}\t{h}\n" for k, (r, h) in sorted(done.items()))
    print(f"[pocketsphinx] {len(utterances)} prompts in {time.time() - t:.1f} s", flush=True)
    return {u.id: done[u.id] for u in utterances}


def table(results: dict[str, Any]) -> str:
    lines = ["| system | test prompts | words | WER % (jiwer) |", "|---|---|---|---|"]
    for name, row in results["systems"].items():
        lines.append(f"| {name} | {row['utterances']} | {row['words']} | {100 * row['wer']:.1f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"paths.output_dir={out / 'ours'}", f"trainer.max_steps={args.steps}",
                 f"seed={args.seed}", "ckpt_path=last", "evaluate=true",
                 "eval.progress=false", *args.override]
    cfg = compose_config(overrides)
    results: dict[str, Any] = {"steps": args.steps, "seed": args.seed, "overrides": overrides,
                               "systems": {}}
    test = hydra.utils.instantiate(cfg.data.corpus).utterances("test")
    refs = {u.id: u.text for u in test}
    if not args.skip_ours:
        t = time.time()
        summary = train_ours(cfg, out / "ours", args.steps)
        chosen, val_wers = choose_decoder(summary, cfg, out / "ours")
        test_wers = {}
        ids = sorted(refs)
        for decoder in val_wers:
            pairs = read_hyps(out / "ours" / "eval" / "hyps" / f"audio_clean_{decoder}.tsv")
            if set(pairs) != set(refs) or any(pairs[k][0] != refs[k] for k in refs):
                raise RuntimeError(f"the evaluated test prompts ({decoder}) differ from the "
                                   "corpus's test split")
            test_wers[decoder] = corpus_wer([refs[k] for k in ids], [pairs[k][1] for k in ids])
        rows = json.loads((out / "ours" / "eval" / "wer.json").read_text())["rows"]
        own = next(r["wer"] for r in rows if r["modality"] == "audio" and r["noise"] == "clean")
        results["systems"][f"avsr {EXPERIMENT} ({chosen}, chosen on val)"] = {
            "wer": test_wers[chosen], "decoder": chosen,
            "wer_avsr_metric": float(own[chosen]),
            "val_wer_by_decoder": val_wers, "test_wer_by_decoder": test_wers,
            "utterances": len(ids), "words": sum(len(refs[k].split()) for k in ids),
            "global_step": summary["global_step"], "train_wall_s": summary["train_wall_s"],
            "wall_s": round(time.time() - t, 1), "parameters": summary["parameters"],
            "checkpoint": summary.get("evaluated_checkpoint"),
        }
    if not args.skip_pocketsphinx:
        t = time.time()
        pairs = run_pocketsphinx(test, out)
        ids = sorted(pairs)
        results["systems"]["pocketsphinx 5 en-us (default model + LM)"] = {
            "wer": corpus_wer([pairs[k][0] for k in ids], [pairs[k][1] for k in ids]),
            "utterances": len(ids), "words": sum(len(pairs[k][0].split()) for k in ids),
            "wall_s": round(time.time() - t, 1),
        }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(table(results) + "\n")
    print(table(results))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (fixed budget)")
    parser.add_argument("--out", default="benchmarks/results/real_speech")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-ours", action="store_true", help="pocketsphinx only")
    parser.add_argument("--skip-pocketsphinx", action="store_true", help="our model only")
    parser.add_argument("override", nargs="*", help="Hydra overrides of the experiment, e.g. "
                        "data.corpus.root=DIR data.corpus.script=FILE paths.data_dir=DIR")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
