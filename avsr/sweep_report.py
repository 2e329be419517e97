"""Gather the WER tables of a Hydra multirun into one Markdown table and one plot.

    python -m avsr.train -m +experiment=sweep_fusion
    python -m avsr.sweep_report logs/sweep_fusion/multiruns/<time>

Every run directory of the sweep (``<sweep>/<job>/``, as configs/hydra/default.yaml lays them
out) holds ``.hydra/overrides.yaml``, ``summary.json`` and ``eval/wer.json``. A run is named
by the overrides that tell it apart from the other runs (``model/fusion=sum``); a run that
has not finished (no ``eval/wer.json``) still gets a row, marked incomplete. Writes
``sweep.md``, ``sweep.json`` and ``sweep.png`` into the sweep directory (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["RunResult", "find_runs", "load_runs", "markdown_table", "plot_runs", "main"]


@dataclass(frozen=True)
class RunResult:
    """One run of a sweep.

    Attributes:
        name: the overrides that set this run apart, e.g. ``"model/fusion=sum"``.
        path: the run directory.
        wer: ``"modality/condition"`` -> WER % (e.g. ``"audio/babble +0 dB"``); empty when the
            run did not finish.
        parameters: model parameters (``summary.json``), if known.
        steps: optimiser steps trained, if known.
        train_minutes: training wall time, if known.
    """

    name: str
    path: Path
    wer: dict[str, float] = field(default_factory=dict)
    parameters: int | None = None
    steps: int | None = None
    train_minutes: float | None = None


def _job_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, str(path))


def find_runs(sweep_dir: str | Path) -> list[Path]:
    """Run directories under ``sweep_dir``: those with Hydra's ``.hydra/overrides.yaml`` or
    an ``eval/wer.json``, in job order."""
    root = Path(sweep_dir)
    runs = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    runs |= {p.parent.parent for p in root.rglob("eval/wer.json")}
    return sorted(runs, key=_job_key)


def _overrides(run: Path) -> list[str]:
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf  # a YAML list of strings; no Hydra needed

    return [str(o) for o in OmegaConf.load(path)]


def _wer(run: Path, decoder: str | None) -> dict[str, float]:
    path = run / "eval" / "wer.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if decoder is None:  # the primary decoder's table, as avsr.evaluate summarises it
        return {k: float(v) for k, v in data.get("summary", {}).items()}
    return {f"{r['modality']}/{r['condition']}": round(100 * r["wer"][decoder], 2)
            for r in data.get("rows", []) if decoder in r.get("wer", {})}


def load_runs(sweep_dir: str | Path, decoder: str | None = None) -> list[RunResult]:
    """Read every run of a sweep.

    Args:
        sweep_dir: the multirun directory.
        decoder: a decoder name of ``eval/wer.json`` (``ctc_greedy``, ``attention_greedy``,
            ``beam``); ``None`` takes the run's primary decoder (its ``summary``).

    Returns:
        One :class:`RunResult` per run directory, in job order.
    """
    runs = find_runs(sweep_dir)
    overrides = {run: _overrides(run) for run in runs}
    # name runs by what differs: overrides common to every run are the sweep's, not the run's
    common = set.intersection(*(set(o) for o in overrides.values())) if runs else set()
    results = []
    for run in runs:
        own = [o for o in overrides[run] if o not in common]
        summary_path = run / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        wall = summary.get("train_wall_s")
        results.append(RunResult(
            name=" ".join(own) or run.name,
            path=run,
            wer=_wer(run, decoder),
            parameters=summary.get("parameters"),
            steps=summary.get("global_step"),
            train_minutes=round(wall / 60, 1) if wall is not None else None,
        ))
    return results


def _conditions(runs: Sequence[RunResult]) -> list[str]:
    seen: dict[str, None] = {}
    for r in runs:
        seen.update(dict.fromkeys(r.wer))
    return list(seen)


def _cell(value: float | int | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(runs: Sequence[RunResult]) -> str:
    """One row per run: its name, size, steps, training minutes and the WER % of every
    modality/condition any run has (``–``: missing; ``incomplete``: no ``eval/wer.json``)."""
    conditions = _conditions(runs)
    head = ["run", "params (M)", "steps", "train (min)", *conditions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        params = r.parameters / 1e6 if r.parameters is not None else None
        cells = [r.name if r.wer else f"{r.name} (incomplete)", _cell(params, ".2f"),
                 _cell(r.steps, "d"), _cell(r.train_minutes, ".1f")]
        cells += [_cell(r.wer.get(c), ".1f") for c in conditions]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_runs(runs: Sequence[RunResult], path: str | Path, title: str = "") -> None:
    """Grouped bars: one group per modality/condition, one bar per run (WER %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = _conditions(runs)
    done = [r for r in runs if r.wer]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(conditions) + 2), 4))
    width = 0.8 / max(1, len(done))
    for i, r in enumerate(done):
        xs = [j + (i - (len(done) - 1) / 2) * width for j in range(len(conditions))]
        ys = [r.wer.get(c, float("nan")) for c in conditions]
        ax.bar(xs, ys, width, label=r.name)
    ax.set_xticks(range(len(conditions)))
    ax.set_xticklabels(conditions, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("WER %")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if done:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avsr.sweep_report",
        description="Gather a Hydra multirun's eval/wer.json files into sweep.md, sweep.json "
                    "and sweep.png.")
    parser.add_argument("sweep_dir", type=Path, help="the multirun directory")
    parser.add_argument("--decoder", default=None,
                        help="decoder column of wer.json (default: each run's primary decoder)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: the sweep directory)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    runs = load_runs(args.sweep_dir, args.decoder)
    if not runs:
        parser.error(f"no runs (.hydra/overrides.yaml or eval/wer.json) under {args.sweep_dir}")
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs)
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps(
        [{**asdict(r), "path": str(r.path)} for r in runs], indent=2))
    plot_runs(runs, out / "sweep.png", title=str(args.sweep_dir))
    print(table)
    print(f"\nwritten to {out / 'sweep.md'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
