"""Gather the WER tables of a Hydra multirun into one Markdown table and one plot.

    python -m avsr.train -m +experiment=sweep_fusion
    python -m avsr.sweep_report logs/sweep_fusion/multiruns/<time>
    python -m avsr.sweep_report logs/claim_unified/sweep --reference audio_only \
        --reference video_only

Every run directory of the sweep (``<sweep>/<job>/``, as configs/hydra/default.yaml lays them
out) holds ``.hydra/overrides.yaml``, ``summary.json`` and ``eval/wer.json``. A run is named
by the overrides that tell it apart from the other runs (``model/fusion=sum``); a run that
has not finished (no ``eval/wer.json``) still gets a row, marked incomplete. Writes
``sweep.md``, ``sweep.json`` and ``sweep.png`` into the sweep directory (or ``--out``).

Each ``--reference`` run adds, for every other run, the relative change of its WER against
the reference's on the conditions the reference was tested on (a single-modality model: its
own modality), as a second table in ``sweep.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["RunResult", "find_runs", "load_runs", "find_run", "markdown_table",
           "relative_table", "plot_runs", "main"]


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
        train_minutes: training wall time (``trainer.fit``, validation included, summed over
            resumed attempts where the run kept that count), if known.
        val_wer: ``modality`` -> validation WER % at the run's last validation (CTC greedy,
            ``val/wer_<modality>`` of ``summary.json``); empty when not logged.
    """

    name: str
    path: Path
    wer: dict[str, float] = field(default_factory=dict)
    parameters: int | None = None
    steps: int | None = None
    train_minutes: float | None = None
    val_wer: dict[str, float] = field(default_factory=dict)


def _job_key(path: Path) -> tuple[int, str]:
    """Hydra's job number: the folder's name (``subdir: ${hydra.job.num}``) or, for folders
    named otherwise (an arm's name), the number in its ``.hydra/hydra.yaml``."""
    if path.name.isdigit():
        return int(path.name), ""
    hydra_yaml = path / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        from omegaconf import OmegaConf

        num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num", default=None)
        if isinstance(num, int):
            return num, str(path)
    return sys.maxsize, str(path)


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
        # fit_wall_s spans resumed attempts; train_wall_s (older summaries) only the last one
        wall = summary.get("fit_wall_s", summary.get("train_wall_s"))
        results.append(RunResult(
            name=" ".join(own) or run.name,
            path=run,
            wer=_wer(run, decoder),
            parameters=summary.get("parameters"),
            steps=summary.get("global_step"),
            train_minutes=round(wall / 60, 1) if wall is not None else None,
            val_wer=_val_wer(summary.get("metrics", {})),
        ))
    return results


def _val_wer(metrics: dict[str, float]) -> dict[str, float]:
    prefix = "val/wer_"
    return {k[len(prefix):]: round(100 * float(v), 2) for k, v in metrics.items()
            if k.startswith(prefix)}


def find_run(runs: Sequence[RunResult], spec: str) -> RunResult:
    """The run named ``spec``: its whole name (``arm=audio_only``) or the value of one of its
    overrides (``audio_only``).

    Raises:
        ValueError: no run, or more than one, answers to ``spec``.
    """
    exact = [r for r in runs if r.name == spec]
    found = exact or [r for r in runs
                      if any(o.partition("=")[2] == spec for o in r.name.split())]
    if len(found) != 1:
        what = "no run" if not found else f"{len(found)} runs"
        raise ValueError(f"reference {spec!r}: {what} of this sweep answer to it; the runs are "
                         f"{[r.name for r in runs]}")
    return found[0]


def _conditions(runs: Sequence[RunResult]) -> list[str]:
    seen: dict[str, None] = {}
    for r in runs:
        seen.update(dict.fromkeys(r.wer))
    return list(seen)


def _cell(value: float | int | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _val_modalities(runs: Sequence[RunResult]) -> list[str]:
    seen: dict[str, None] = {}
    for r in runs:
        seen.update(dict.fromkeys(r.val_wer))
    return list(seen)


def markdown_table(runs: Sequence[RunResult]) -> str:
    """One row per run: its name, size, steps, training minutes, the WER % of every
    modality/condition any run has and the validation WER % of every modality any run logged
    (``–``: missing; ``incomplete``: no ``eval/wer.json``)."""
    conditions = _conditions(runs)
    val = _val_modalities(runs)
    head = ["run", "params (M)", "steps", "train (min)", *conditions,
            *(f"val/wer_{m}" for m in val)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        params = r.parameters / 1e6 if r.parameters is not None else None
        cells = [r.name if r.wer else f"{r.name} (incomplete)", _cell(params, ".2f"),
                 _cell(r.steps, "d"), _cell(r.train_minutes, ".1f")]
        cells += [_cell(r.wer.get(c), ".1f") for c in conditions]
        cells += [_cell(r.val_wer.get(m), ".1f") for m in val]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _change(wer: float | None, ref: float) -> str:
    if wer is None:
        return "–"
    # relative to a WER of 0 is undefined: the two values still tell the difference
    rel = "–" if ref == 0 else f"{100 * (wer - ref) / ref:+.1f} %"
    return f"{rel} ({ref:.1f} → {wer:.1f})"


def relative_table(runs: Sequence[RunResult], references: Sequence[RunResult]) -> str:
    """The relative WER change of every run that is not a reference against each reference,
    ``(WER - WER_ref) / WER_ref``, on the conditions of the reference's table: one column per
    reference and condition, each cell ``+x.x % (ref → run)`` (negative: fewer errors than
    the reference)."""
    columns = [(ref, c) for ref in references for c in ref.wer]
    head = ["run", *(f"{c} vs {ref.name}" for ref, c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {ref.name for ref in references}
    for r in runs:
        if r.name in names:
            continue
        cells = [r.name, *(_change(r.wer.get(c), ref.wer[c]) for ref, c in columns)]
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
    parser.add_argument("--reference", action="append", default=[], metavar="RUN",
                        help="a run to compare the others with (its name, e.g. arm=audio_only, "
                             "or an override's value, e.g. audio_only), on the conditions it "
                             "was tested on; repeatable")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    runs = load_runs(args.sweep_dir, args.decoder)
    if not runs:
        parser.error(f"no runs (.hydra/overrides.yaml or eval/wer.json) under {args.sweep_dir}")
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(runs)
    try:
        references = [find_run(runs, spec) for spec in args.reference]
    except ValueError as err:
        parser.error(str(err))
    if references:
        table += ("\n\nWER change against the reference runs, on each one's own conditions "
                  "(negative: fewer errors):\n\n" + relative_table(runs, references))
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps(
        [{**asdict(r), "path": str(r.path)} for r in runs], indent=2))
    plot_runs(runs, out / "sweep.png", title=str(args.sweep_dir))
    print(table)
    print(f"\nwritten to {out / 'sweep.md'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
