"""Low-resource comparison on the synthetic corpus (issue 5): labels for 10 % of the training
utterances, the rest unlabelled, every pipeline with the same number of optimiser steps.

    (i)   supervised on the labelled part only                 S steps
    (ii)  BRAVEn pre-training on all + fine-tuning             P + (S - P) steps
    (iii) AV-HuBERT pre-training (iteration 1) + fine-tuning   P + (S - P) steps
    (iv)  BRAVEn pre-training (the run of (ii)) + USR semi     P + (S - P) steps
          (with --semi-warmup-steps W the semi stage trains on the labelled batch alone for
          its first W steps, while its EMA teacher follows, and the pseudo-labels count after)

and writes the WER table (A / V / AV, clean and 0 dB babble, attention greedy and CTC greedy)
to ``<out>/wer.md`` and ``<out>/results.json``. One training process at a time, in this
process. Steps are the compute unit; the wall time of every stage is recorded beside it (a
semi-supervised step also runs the teacher and two batches, so it costs more per step).

    OMP_NUM_THREADS=1 python benchmarks/low_resource.py --steps 1400 --pretrain-steps 700
    python benchmarks/low_resource.py --steps 120 --pretrain-steps 60 --eval-limit 60  # quick

Pipelines can run as separate processes (``--only i --out R/i``, ``--only iv --out R/iv``, ...,
one per core with ``OMP_NUM_THREADS=1 ... num_threads=1``); ``--merge R/i R/iv ... --out R``
then writes the one table from their ``results.json`` files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
CONDITIONS = ("audio/clean", "video/clean", "audiovisual/clean", "audio/babble_0",
              "audiovisual/babble_0")


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=overrides)


def _common(args: argparse.Namespace, out: Path, steps: int, evaluate: bool) -> list[str]:
    val_every = max(1, steps // max(1, args.val_checks))
    o = [f"paths.output_dir={out}", f"trainer.max_steps={steps}", "trainer.max_epochs=1000",
         "trainer.max_time=null", f"trainer.val_check_interval={val_every}",
         "trainer.check_val_every_n_epoch=null", f"++trainer.limit_val_batches={args.val_batches}",
         f"evaluate={str(evaluate).lower()}", "decode=greedy", f"eval.limit={args.eval_limit}",
         "eval.noise.types=[babble]", "eval.noise.snrs=[0]", f"seed={args.seed}",
         "trainer.enable_progress_bar=false", "~callbacks.progress_bar",
         f"data.labelled_fraction={args.labelled_fraction}"]
    if args.data_root:
        o += [f"data.corpus.root={args.data_root}", "synthetic=null"]
    return o + list(args.override)


def _stage(name: str, experiment: str, args: argparse.Namespace, steps: int, evaluate: bool,
           *extra: str) -> dict[str, Any]:
    out = Path(args.out) / name
    done = out / "summary.json"
    if args.reuse and done.is_file():
        # a finished stage of an earlier invocation (same --out): pipelines sharing a
        # pre-training, or a benchmark resumed after a crash, do not train it again
        summary = json.loads(done.read_text())
        ckpt = summary.get("last_checkpoint")
        if summary.get("global_step") == steps and (ckpt is None or Path(ckpt).is_file()):
            summary.setdefault("stage_wall_s", summary.get("train_wall_s", 0.0))
            print(f"[{name}] reused: {done}", flush=True)
            return summary
    t = time.time()
    summary = train(_cfg([f"+experiment={experiment}", *_common(args, out, steps, evaluate),
                          *extra]))
    summary["stage_wall_s"] = round(time.time() - t, 1)
    done.write_text(json.dumps(summary, indent=2, default=str))
    print(f"[{name}] {steps} steps in {summary['stage_wall_s']} s -> "
          f"{summary.get('eval', summary.get('last_checkpoint'))}", flush=True)
    return summary


def _wers(summary: dict[str, Any]) -> dict[str, float]:
    ev = summary.get("eval") or {}
    return {k.replace("babble +0 dB", "babble_0"): v for k, v in ev.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    steps, pre = args.steps, args.pretrain_steps
    rest = steps - pre
    if rest <= 0:
        raise ValueError("--pretrain-steps must be smaller than --steps")
    if not 0 <= args.semi_warmup_steps < rest:
        raise ValueError(f"--semi-warmup-steps must be in [0, {rest}): the semi stage needs "
                         f"steps of its own")
    results: dict[str, Any] = {"args": vars(args), "pipelines": {}}
    freeze = f"callbacks.freeze_pretrained.steps={int(args.freeze_fraction * rest)}"

    def record(name: str, stages: list[dict[str, Any]]) -> None:
        results["pipelines"][name] = {
            "wer": _wers(stages[-1]),
            "steps": [s["global_step"] for s in stages],
            "wall_s": [s["stage_wall_s"] for s in stages],
        }
        _write(results, args.out)

    if "i" in args.only:
        record("(i) supervised", [_stage("i_supervised", "synth_low_supervised", args, steps,
                                         True)])
    braven = None
    if {"ii", "iv"} & set(args.only):
        braven = _stage("braven_pretrain", "synth_low_braven", args, pre, False)
    if "ii" in args.only:
        ft = _stage("ii_braven_finetune", "synth_low_finetune", args, rest, True,
                    f"init.0.path={braven['last_checkpoint']}", freeze)
        record("(ii) BRAVEn + fine-tune", [braven, ft])
    if "iii" in args.only:
        hub = _stage("avhubert_pretrain", "synth_low_avhubert", args, pre, False)
        ft = _stage("iii_avhubert_finetune", "synth_low_finetune", args, rest, True,
                    f"init.0.path={hub['last_checkpoint']}", freeze)
        record("(iii) AV-HuBERT + fine-tune", [hub, ft])
    if "iv" in args.only:
        extra, name = [], "(iv) BRAVEn + semi (USR)"
        if args.semi_warmup_steps:
            # a random decoder's confident labels are wrong and the student learns them: the
            # teacher first follows a student trained on the labelled batch alone, and the
            # pseudo-label heads start as copies of the output layers trained by then (one
            # learning-rate schedule over the whole stage)
            extra = [f"stage.objective.unlabelled_start_step={args.semi_warmup_steps}",
                     f"stage.objective.unlabelled_rampup_steps={args.semi_rampup_steps}",
                     "stage.objective.heads_from_model=true"]
            name = "(iv) BRAVEn + semi (labelled warm-up)"
        semi = _stage("iv_semi", "synth_low_semi", args, rest, True,
                      f"init.0.path={braven['last_checkpoint']}", *extra)
        record(name, [braven, semi])
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown WER table (attention greedy, %) with relative changes against (i)."""
    head = "| pipeline | steps | wall s | " + " | ".join(CONDITIONS) + " |\n"
    head += "|---" * (3 + len(CONDITIONS)) + "|\n"
    base = results["pipelines"].get("(i) supervised", {}).get("wer", {})
    rows = []
    for name, r in results["pipelines"].items():
        cells = []
        for c in CONDITIONS:
            w = r["wer"].get(c)
            if w is None:
                cells.append("–")
                continue
            rel = ""
            if base.get(c) and name != "(i) supervised":
                rel = f" ({100 * (w - base[c]) / base[c]:+.0f} %)"
            cells.append(f"{w:.1f}{rel}")
        rows.append(f"| {name} | {'+'.join(map(str, r['steps']))} | "
                    f"{'+'.join(str(round(x)) for x in r['wall_s'])} | " + " | ".join(cells)
                    + " |")
    return head + "\n".join(rows) + "\n"


def _write(results: dict[str, Any], out: str) -> None:
    """``<out>/results.json`` and ``<out>/wer.md`` (the table)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "results.json").write_text(json.dumps(results, indent=2))
    (Path(out) / "wer.md").write_text(table(results))


def merge(dirs: list[str], out: str) -> dict[str, Any]:
    """Join the ``results.json`` of separately run pipelines into ``<out>/wer.md`` + json."""
    results: dict[str, Any] = {"args": [], "pipelines": {}}
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results.json (did that pipeline finish?)")
        part = json.loads(path.read_text())
        clash = set(part["pipelines"]) & set(results["pipelines"])
        if clash:
            raise ValueError(f"{path}: pipelines {sorted(clash)} already merged from another "
                             f"directory")
        results["args"].append(part["args"])
        results["pipelines"].update(part["pipelines"])
    order = {k: i for i, k in enumerate(("(i)", "(ii)", "(iii)", "(iv)"))}
    results["pipelines"] = dict(sorted(results["pipelines"].items(),
                                       key=lambda kv: order.get(kv[0].split()[0], 9)))
    _write(results, out)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1400, help="optimiser steps per pipeline")
    p.add_argument("--pretrain-steps", type=int, default=700)
    p.add_argument("--freeze-fraction", type=float, default=0.1,
                   help="share of fine-tuning steps with the pre-trained parts frozen")
    p.add_argument("--semi-warmup-steps", type=int, default=0,
                   help="(iv): semi-stage steps on the labelled batch alone before the "
                        "pseudo-labels count (0: USR's recipe, pseudo-labels from the start)")
    p.add_argument("--semi-rampup-steps", type=int, default=0,
                   help="(iv): steps over which the pseudo-label weight then rises linearly")
    p.add_argument("--reuse", action="store_true",
                   help="reuse stages already finished in --out (their summary.json) instead "
                        "of training them again")
    p.add_argument("--labelled-fraction", type=float, default=0.1)
    p.add_argument("--val-checks", type=int, default=4, help="validations per stage")
    p.add_argument("--val-batches", type=int, default=5, help="validation batches per check")
    p.add_argument("--eval-limit", type=int, default=300, help="test utterances per condition")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-root", default=None, help="corpus root (default: synth_grid's)")
    p.add_argument("--only", nargs="+", default=["i", "ii", "iii", "iv"])
    p.add_argument("--out", default="benchmarks/results/low_resource")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="only join these runs' results.json into --out (no training)")
    p.add_argument("override", nargs="*", help="extra Hydra overrides for every stage")
    args = p.parse_args()
    results = merge(args.merge, args.out) if args.merge else run(args)
    print(table(results))


if __name__ == "__main__":
    main()
