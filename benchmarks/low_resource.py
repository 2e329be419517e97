"""Low-resource comparison on the synthetic corpus (issues 5 and 21): transcripts for 10 % of
the training utterances, the rest unlabelled, five pipelines on the same labelled data.

    (i)   supervised on the labelled part                                      F
    (ii)  BRAVEn pre-training on all + fine-tuning                             P + F
    (iii) AV-HuBERT, N clustering iterations (--avhubert-iterations, 2)        P/N + k-means
          + fine-tuning                                                        + P/N + ... + F
    (iv)  BRAVEn pre-training (the run of (ii)) + USR semi-supervised          P + F
          (with --semi-warmup-steps W the semi stage trains on the labelled batch alone for
          its first W steps while its EMA teacher follows; the pseudo-labels count after)
    (v)   Zhang et al.'s contextual-masking pre-training + fine-tuning         P + F

Budgets. ``--finetune-steps F``: the labelled stage of every pipeline (supervised, fine-tuning
or semi-supervised), the same F optimiser steps for all. ``--pretrain-steps P`` (default 3 F):
each self-supervised pre-training; more than 3 F is refused (pre-training may cost up to three
times the fine-tuning). (iii) splits P over its N iterations, P // N steps each and the
remainder to the last, so its pre-training totals P too. Iteration k + 1 trains from scratch
(as AV-HuBERT and scripts/avhubert.sh) on k-means targets of block --avhubert-layer of
iteration k's encoder (``<out>/iii_kmeans_iter<k+1>``, a stage of its own); iteration 1 on
MFCC k-means; the last iteration masks the input instead of the fused features. (iv) uses the
BRAVEn run of (ii) when both run with this --out (or the run in --pretrained-from DIR): it is
trained once, and the table marks it as shared.

Checkpoints. Every labelled stage validates --val-checks times (greedy CTC ``val/wer`` on
--val-batches batches) and is tested with its best validation checkpoint
(``eval_checkpoint=best``): (i) at its best validation WER, the others by the same rule.
Pre-training stages hand their last weights on (their schedule ends there; ``val/loss`` of a
pretext task does not rank initialisations for fine-tuning).

Resuming. ``--reuse`` continues an earlier invocation with the same --out: a stage whose
``summary.json`` (k-means: ``kmeans.json``) exists is read, not run again (its step count must
match this budget), and an interrupted one resumes from its ``checkpoints/last.ckpt``
(``ckpt_path=last``). Without --reuse an --out that holds a stage's run is refused. To redo a
stage, delete its folder and those of the stages after it.

Warm-starts. ``--init-override KEY=VALUE`` (repeatable) is appended to the Hydra overrides of
the labelled stage of (ii)-(v) only, e.g. ``--init-override +init.0.prefix=objective.teacher.
model.`` (fine-tune from the EMA teacher); the other positional overrides go to every stage.

Writes ``<out>/wer.md`` and ``<out>/results.json``: per pipeline its stages with steps and wall
seconds (a resumed stage: its last attempt), WER (A / V / AV clean, A and AV at 0 dB babble,
attention greedy), the relative change against (i) and whether the 20 % target on V and AV
is met (``low_resource_table.py``).

    OMP_NUM_THREADS=1 python benchmarks/low_resource.py --finetune-steps 1000 \\
        --pretrain-steps 3000 --reuse --out R
    python benchmarks/low_resource.py --finetune-steps 40 --pretrain-steps 40 --eval-limit 60

Pipelines can run as separate processes (``--only i --out R/i``, ``--only iv --out R/iv
--pretrained-from R/ii/braven_pretrain``, ..., one per core with ``OMP_NUM_THREADS=1 ...
num_threads=1``); ``--merge R/i R/ii ... --out R`` then writes the one table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import torch
from hydra import compose, initialize_config_dir

from avsr.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import low_resource_table as report  # noqa: E402

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
NAMES = {"i": "(i) supervised", "ii": "(ii) BRAVEn + fine-tune",
         "iii": "(iii) AV-HuBERT ({n} iterations) + fine-tune",
         "iv": "(iv) BRAVEn + semi (USR)", "v": "(v) Zhang contextual masking + fine-tune"}


class Stage(NamedTuple):
    """One step of a pipeline, run in ``<out>/<name>``: a training run of ``experiment`` or,
    with ``kmeans``, the k-means labelling that the ``ssl_labels`` node of that experiment's
    config (with ``overrides``) describes. ``final``: the labelled stage, tested. ``source``:
    a finished run elsewhere, only read."""

    name: str
    steps: int
    experiment: str
    overrides: tuple[str, ...] = ()
    final: bool = False
    kmeans: bool = False
    source: str | None = None

    def directory(self, out: str | Path) -> Path:
        return Path(self.source) if self.source else Path(out) / self.name

    def init(self, out: str | Path) -> str:
        """The override that starts a later stage from this run's last weights."""
        return f"init.0.path={self.directory(out) / 'checkpoints' / 'last.ckpt'}"


def check_budgets(args: argparse.Namespace) -> None:
    """Refuse budgets the comparison cannot use before any training.

    Raises:
        ValueError: P > 3 F, a non-positive budget, fewer pre-training steps than AV-HuBERT
            iterations, or a semi warm-up that leaves the semi stage no steps.
    """
    f, p = args.finetune_steps, args.pretrain_steps
    if f < 1:
        raise ValueError(f"--finetune-steps must be positive, got {f}")
    if p > 3 * f:
        raise ValueError(f"--pretrain-steps {p} > 3 x --finetune-steps {f} = {3 * f}: "
                         f"pre-training may cost at most three times the fine-tuning")
    if set(args.only) - {"i"} and p < 1:
        raise ValueError(f"--pretrain-steps must be positive, got {p}")
    if "iii" in args.only and not 1 <= args.avhubert_iterations <= p:
        raise ValueError(f"--avhubert-iterations must be in [1, --pretrain-steps {p}] (each "
                         f"iteration trains P // N steps), got {args.avhubert_iterations}")
    if not 0 <= args.semi_warmup_steps < f:
        raise ValueError(f"--semi-warmup-steps must be in [0, {f}): the semi stage needs "
                         f"steps of its own")


def _avhubert(args: argparse.Namespace, finetune: list[str]) -> list[Stage]:
    n, p = args.avhubert_iterations, args.pretrain_steps
    stages: list[Stage] = []
    prev: Stage | None = None
    for k in range(1, n + 1):
        o = [f"ssl_labels.num_clusters={args.avhubert_clusters}"]
        if prev is not None:  # targets: k-means of a block of the previous iteration's model
            labels = Path(args.out) / f"iii_kmeans_iter{k}"
            o += ["ssl_labels.feature=layer",
                  f"ssl_labels.ckpt={prev.directory(args.out) / 'checkpoints' / 'last.ckpt'}",
                  f"ssl_labels.layer={args.avhubert_layer}", f"ssl_labels.out={labels}"]
        if k == n:
            o.append("stage.objective.level=input")  # AV-HuBERT's last iteration
        if prev is not None:
            stages.append(Stage(labels.name, 0, "synth_low_avhubert", tuple(o), kmeans=True))
        prev = Stage(f"iii_avhubert_iter{k}", p // n if k < n else p - (n - 1) * (p // n),
                     "synth_low_avhubert", tuple(o))
        stages.append(prev)
    return stages + [Stage("iii_avhubert_finetune", args.finetune_steps, "synth_low_finetune",
                           (prev.init(args.out), *finetune), final=True)]


def pipelines(args: argparse.Namespace) -> dict[str, list[Stage]]:
    """The selected pipelines (``--only``) as their stages, in order; stages of the same name
    are one run."""
    f, p, out = args.finetune_steps, args.pretrain_steps, args.out
    warm = list(args.init_override)
    freeze = [f"callbacks.freeze_pretrained.steps={int(args.freeze_fraction * f)}", *warm]
    braven = Stage("braven_pretrain", p, "synth_low_braven", source=args.pretrained_from)
    plan: dict[str, list[Stage]] = {}
    if "i" in args.only:
        plan[NAMES["i"]] = [Stage("i_supervised", f, "synth_low_supervised", final=True)]
    if "ii" in args.only:
        plan[NAMES["ii"]] = [braven, Stage("ii_braven_finetune", f, "synth_low_finetune",
                                           (braven.init(out), *freeze), final=True)]
    if "iii" in args.only:
        plan[NAMES["iii"].format(n=args.avhubert_iterations)] = _avhubert(args, freeze)
    if "iv" in args.only:
        extra, name = [], NAMES["iv"]
        if args.semi_warmup_steps:
            # a random decoder's confident labels are wrong and the student learns them: the
            # teacher first follows a student trained on the labelled batch alone, and the
            # pseudo-label heads start as copies of the output layers trained by then (one
            # learning-rate schedule over the whole stage)
            extra = [f"stage.objective.unlabelled_start_step={args.semi_warmup_steps}",
                     f"stage.objective.unlabelled_rampup_steps={args.semi_rampup_steps}",
                     "stage.objective.heads_from_model=true"]
            name = "(iv) BRAVEn + semi (labelled warm-up)"
        plan[name] = [braven, Stage("iv_semi", f, "synth_low_semi",
                                    (braven.init(out), *extra, *warm), final=True)]
    if "v" in args.only:
        pre = Stage("v_zhang_pretrain", p, "synth_zhang_pretrain")
        plan[NAMES["v"]] = [pre, Stage("v_zhang_finetune", f, "synth_zhang_finetune",
                                       (pre.init(out), *freeze), final=True)]
    return plan


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=overrides)


def stage_overrides(stage: Stage, args: argparse.Namespace) -> list[str]:
    """The stage's full Hydra overrides (those of every stage, then its own, then the
    positional ones)."""
    val_every = max(1, stage.steps // max(1, args.val_checks))
    o = [f"+experiment={stage.experiment}", f"paths.output_dir={stage.directory(args.out)}",
         f"trainer.max_steps={stage.steps}", "trainer.max_epochs=1000", "trainer.max_time=null",
         f"trainer.val_check_interval={val_every}", "trainer.check_val_every_n_epoch=null",
         f"++trainer.limit_val_batches={args.val_batches}",
         f"evaluate={str(stage.final).lower()}", "ckpt_path=last", "decode=greedy",
         f"eval.limit={args.eval_limit}", "eval.noise.types=[babble]", "eval.noise.snrs=[0]",
         f"seed={args.seed}", "trainer.enable_progress_bar=false", "~callbacks.progress_bar",
         f"data.labelled_fraction={args.labelled_fraction}"]
    if stage.final:
        o.append("eval_checkpoint=best")
    if args.data_root:
        o += [f"data.corpus.root={args.data_root}", "synthetic=null"]
    return o + list(stage.overrides) + list(args.override)


def make_labels(cfg) -> dict[str, Any]:
    """The k-means labelling of a stage: the ``ssl_labels`` node of its composed config, the
    one its training stage calls too (which then finds the labels made): ensure_labels, whose
    ``kmeans.json`` metadata (with ``wall_s``) it returns."""
    return hydra.utils.instantiate(cfg.ssl_labels)()


def _checkpoint_step(path: Path) -> int | None:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return ckpt.get("global_step")


def _read_summary(stage: Stage, run_dir: Path) -> dict[str, Any]:
    done = run_dir / "summary.json"
    if not done.is_file():
        raise FileNotFoundError(f"{done}: no finished run of stage {stage.name} there")
    summary = json.loads(done.read_text())
    if summary.get("global_step") != stage.steps:
        raise ValueError(f"{done}: {stage.name} ran {summary.get('global_step')} steps, this "
                         f"budget gives it {stage.steps}: use another --out, or delete "
                         f"{run_dir} to run it again")
    return summary


def _record(stage: Stage, run_dir: Path, summary: dict[str, Any], reused: bool
            ) -> dict[str, Any]:
    rec = {"stage": stage.name, "kind": "kmeans" if stage.kmeans else "train",
           "dir": str(run_dir.resolve()), "steps": summary.get("global_step", 0),
           "wall_s": summary.get("stage_wall_s", summary.get("train_wall_s")), "reused": reused}
    if summary.get("resumed_from_step") is not None:
        rec["resumed_from_step"] = summary["resumed_from_step"]
    if stage.final:
        chosen = summary.get("evaluated_checkpoint")
        step = re.search(r"step(\d+)", Path(chosen).name) if chosen else None
        rec.update(evaluated_checkpoint=chosen, best_step=int(step.group(1)) if step else None,
                   wer={k.replace("babble +0 dB", "babble_0"): v
                        for k, v in (summary.get("eval") or {}).items()})
    return rec


def _refuse_without_reuse(stage: Stage, marker: Path, args: argparse.Namespace) -> None:
    if not args.reuse:
        raise FileExistsError(f"{marker} exists (stage {stage.name} of an earlier invocation): "
                              f"pass --reuse to continue it, or use another --out")


def run_stage(stage: Stage, args: argparse.Namespace) -> dict[str, Any]:
    """Run, resume or read one stage; return its record for the table."""
    run_dir = stage.directory(args.out)
    if stage.source:
        summary = _read_summary(stage, run_dir)  # its budget must be this one
        print(f"[{stage.name}] from {run_dir}", flush=True)
        return _record(stage, run_dir, summary, reused=True)
    if stage.kmeans:
        meta = run_dir / "kmeans.json"
        reused = meta.is_file()
        if reused:
            _refuse_without_reuse(stage, meta, args)
            print(f"[{stage.name}] reused: {meta}", flush=True)
        made = make_labels(_cfg(stage_overrides(stage, args)))
        return _record(stage, run_dir, {"global_step": 0, "stage_wall_s": made["wall_s"]},
                       reused=reused)
    done, last = run_dir / "summary.json", run_dir / "checkpoints" / "last.ckpt"
    for marker in (done, last):
        if marker.is_file():
            _refuse_without_reuse(stage, marker, args)
    if done.is_file():
        print(f"[{stage.name}] reused: {done}", flush=True)
        return _record(stage, run_dir, _read_summary(stage, run_dir), reused=True)
    resumed = _checkpoint_step(last) if last.is_file() else None
    if resumed is not None:
        print(f"[{stage.name}] resuming from {last} (step {resumed})", flush=True)
    t = time.time()
    summary = train(_cfg(stage_overrides(stage, args)))
    summary["stage_wall_s"] = round(time.time() - t, 1)
    summary["resumed_from_step"] = resumed
    done.write_text(json.dumps(summary, indent=2, default=str))
    print(f"[{stage.name}] {summary['global_step']} steps in {summary['stage_wall_s']} s -> "
          f"{summary.get('eval', summary.get('last_checkpoint'))}", flush=True)
    return _record(stage, run_dir, summary, reused=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected pipelines one after another in this process; write the table after
    each one."""
    check_budgets(args)
    results: dict[str, Any] = {"args": vars(args), "pipelines": {}}
    records: dict[str, dict[str, Any]] = {}  # a stage shared by two pipelines runs once
    for name, stages in pipelines(args).items():
        for stage in stages:
            if stage.name not in records:
                records[stage.name] = run_stage(stage, args)
        recs = [dict(records[s.name]) for s in stages]
        final = recs[-1]
        results["pipelines"][name] = {
            "stages": recs, "wer": final["wer"], "best_step": final["best_step"],
            "evaluated_checkpoint": final["evaluated_checkpoint"],
            "steps": [r["steps"] for r in recs], "wall_s": [r["wall_s"] for r in recs]}
        report.write(results, args.out)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--finetune-steps", type=int, default=1000,
                   help="F: steps of every pipeline's labelled stage ((i): all of it)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="P: steps of each pre-training ((iii): of all its iterations), at "
                        "most 3 F [3 F]")
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--avhubert-iterations", type=int, default=2, help="(iii): N iterations")
    p.add_argument("--avhubert-layer", type=int, default=3,
                   help="(iii): encoder block (1-based) clustered for the next iteration "
                        "(synth_grid has 4; AV-HuBERT Base's 9 of 12)")
    p.add_argument("--avhubert-clusters", type=int, default=50,
                   help="(iii): k-means clusters of every iteration's targets")
    p.add_argument("--pretrained-from", default=None, metavar="DIR",
                   help="(ii)/(iv): a finished BRAVEn pre-training run (its folder) instead "
                        "of training one")
    p.add_argument("--init-override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override for the labelled stage of (ii)-(v) only (repeatable)")
    p.add_argument("--freeze-fraction", type=float, default=0.1,
                   help="share of fine-tuning steps with the pre-trained parts frozen")
    p.add_argument("--semi-warmup-steps", type=int, default=0,
                   help="(iv): semi-stage steps on the labelled batch alone before the "
                        "pseudo-labels count (0: USR's recipe, pseudo-labels from the start)")
    p.add_argument("--semi-rampup-steps", type=int, default=0,
                   help="(iv): steps over which the pseudo-label weight then rises linearly")
    p.add_argument("--reuse", action="store_true",
                   help="continue an earlier invocation in --out: read finished stages, "
                        "resume interrupted ones")
    p.add_argument("--labelled-fraction", type=float, default=0.1)
    p.add_argument("--val-checks", type=int, default=8, help="validations per stage")
    p.add_argument("--val-batches", type=int, default=5, help="validation batches per check")
    p.add_argument("--eval-limit", type=int, default=300, help="test utterances per condition")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data-root", default=None, help="corpus root (default: synth_grid's)")
    p.add_argument("--only", nargs="+", default=["i", "ii", "iii", "iv", "v"],
                   choices=["i", "ii", "iii", "iv", "v"])
    p.add_argument("--out", default="benchmarks/results/low_resource")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="only join these runs' results.json into --out (no training)")
    p.add_argument("override", nargs="*", help="extra Hydra overrides for every stage")
    args = p.parse_args()
    if args.steps is not None:
        p.error("--steps (pre-training + the rest) was replaced by --finetune-steps F and "
                "--pretrain-steps P (each pre-training; at most 3 F)")
    if args.pretrain_steps is None:
        args.pretrain_steps = 3 * args.finetune_steps
    results = report.merge(args.merge, args.out) if args.merge else run(args)
    print(report.table(results))


if __name__ == "__main__":
    main()
