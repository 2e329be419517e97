"""Per-step training losses of recipes at a fixed seed: the guard for refactors that must keep
behaviour ("the first 50 steps give the same losses before and after").

Each experiment runs as its own ``python -m avsr.train`` process on one small synthetic corpus
(generated once into ``--data-root``), with the clock-driven parts of the recipes turned off
(no ``max_time``, no time-budget schedule) so that only the code decides the numbers. The
losses logged at every step are written to one JSON; ``--compare`` checks a new trace against
an earlier one.

    python benchmarks/loss_trace.py --out before.json
    python benchmarks/loss_trace.py --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

EXPERIMENTS = ("synth_grid", "synth_low_braven", "synth_low_semi", "synth_words")
# the synthetic corpus these traces use: small, so that generating it takes ~1 minute
CORPUS = ("synthetic.num_train=400", "synthetic.num_val=40", "synthetic.num_test=40",
          "synthetic.num_train_speakers=8", "synthetic.num_val_speakers=2",
          "synthetic.num_test_speakers=2")


def _overrides(experiment: str, steps: int, data_root: Path, out_dir: Path,
               generate: bool = True) -> list[str]:
    common = [f"+experiment={experiment}", f"trainer.max_steps={steps}", "trainer.max_time=null",
              "trainer.log_every_n_steps=1", "trainer.val_check_interval=null",
              "trainer.check_val_every_n_epoch=1000", "trainer.num_sanity_val_steps=0",
              "trainer.precision=32-true", "evaluate=false", "logger=csv", "seed=1234",
              "num_threads=1", f"data.corpus.root={data_root}", f"hydra.run.dir={out_dir}"]
    # --no-generate: train on the corpus as it is (e.g. one an older generator wrote, which
    # the generation check would refuse), so that two traces read the very same files
    common += ["synthetic.generate=true", *CORPUS] if generate else ["synthetic=null"]
    if experiment != "synth_words":
        common += ["++stage.scheduler.time_budget_s=null"]
    else:
        common += ["test_after_fit=false"]
    return common


def _losses(metrics_csv: Path) -> dict[str, list[float]]:
    """Every ``train/loss*`` column, by step (rows without the value are skipped)."""
    series: dict[str, dict[int, float]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if key.startswith("train/loss") and value not in ("", None):
                    series.setdefault(key, {})[int(row["step"])] = float(value)
    return {k: [v[s] for s in sorted(v)] for k, v in sorted(series.items())}


def trace(experiments, steps: int, data_root: Path, work: Path, generate: bool = True) -> dict:
    result = {}
    for exp in experiments:
        out_dir = work / exp
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "avsr.train", *_overrides(exp, steps, data_root, out_dir, generate)]
        env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
            raise SystemExit(f"{exp}: avsr.train failed (exit {proc.returncode})")
        result[exp] = {"losses": _losses(out_dir / "csv" / "metrics.csv"),
                       "wall_s": round(time.perf_counter() - start, 1)}
        print(f"{exp}: {len(result[exp]['losses'].get('train/loss', []))} steps, "
              f"{result[exp]['wall_s']} s", flush=True)
    return result


def compare(new: dict, old: dict, rtol: float, atol: float) -> list[str]:
    problems = []
    for exp, entry in old.items():
        if exp not in new:
            problems.append(f"{exp}: missing from the new trace")
            continue
        for key, ref in entry["losses"].items():
            got = new[exp]["losses"].get(key)
            if got is None or len(got) != len(ref):
                problems.append(f"{exp} {key}: {0 if got is None else len(got)} steps, "
                                f"expected {len(ref)}")
                continue
            for step, (a, b) in enumerate(zip(got, ref)):
                if not math.isclose(a, b, rel_tol=rtol, abs_tol=atol):
                    problems.append(f"{exp} {key} step {step}: {a} != {b}")
                    break
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--data-root", type=Path, default=Path("data/loss_trace/grid"))
    parser.add_argument("--work", type=Path, default=Path("logs/loss_trace"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--no-generate", action="store_true",
                        help="use --data-root as it is (synthetic=null)")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args()
    result = trace(args.experiments, args.steps, args.data_root.resolve(), args.work.resolve(),
                   not args.no_generate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    if args.compare is not None:
        problems = compare(result, json.loads(args.compare.read_text()), args.rtol, args.atol)
        for line in problems:
            print("DIFFERS:", line)
        print("identical within tolerance" if not problems else f"{len(problems)} differences")
        raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
