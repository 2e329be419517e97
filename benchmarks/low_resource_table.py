"""The table of ``benchmarks/low_resource.py``: per pipeline its stages (steps, wall seconds),
the WER of its last stage, the relative change against (i) and whether the issue's target
(at least 20 % lower WER than (i) on video and on audio-visual input, clean) is met; and the
merge of pipelines that ran as separate processes into one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CONDITIONS", "TARGET_CONDITIONS", "TARGET_RELATIVE", "compare", "table", "write",
           "merge"]

CONDITIONS = ("audio/clean", "video/clean", "audiovisual/clean", "audio/babble_0",
              "audiovisual/babble_0")
TARGET_CONDITIONS = ("video/clean", "audiovisual/clean")
TARGET_RELATIVE = -20.0  # % WER change against (i) that (ii)-(v) must reach (or go below)
ORDER = ("(i)", "(ii)", "(iii)", "(iv)", "(v)")


def _key(name: str) -> str:
    """``(iv) BRAVEn + semi (USR)`` -> ``(iv)``."""
    return name.split()[0]


def _stages(pipe: dict[str, Any]) -> list[dict[str, Any]]:
    # results written before stages were recorded one by one hold parallel lists
    if "stages" in pipe:
        return pipe["stages"]
    return [{"steps": s, "wall_s": w} for s, w in zip(pipe["steps"], pipe["wall_s"])]


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """Add to every pipeline of ``results`` its ``relative`` WER change against (i) (%, per
    condition) and ``target_met`` (per target condition; None without both WERs), and mark a
    stage whose run an earlier pipeline of the table also uses with ``shared_with`` (that
    pipeline: the run was paid once)."""
    pipes = results["pipelines"]
    base = next((p["wer"] for n, p in pipes.items() if _key(n) == "(i)"), {})
    owner: dict[str, str] = {}
    for name, pipe in pipes.items():
        for stage in _stages(pipe):
            run_dir = stage.get("dir")
            if run_dir is None:
                continue
            first = owner.setdefault(run_dir, name)
            if first != name:
                stage["shared_with"] = first
        if _key(name) == "(i)":
            continue
        rel = {c: round(100 * (w - base[c]) / base[c], 1) for c, w in pipe["wer"].items()
               if base.get(c)}
        pipe["relative"] = rel
        pipe["target_met"] = {c: (rel[c] <= TARGET_RELATIVE if c in rel else None)
                              for c in TARGET_CONDITIONS}
    return results


def _stage_cells(pipe: dict[str, Any]) -> tuple[str, str]:
    steps, walls = [], []
    for s in _stages(pipe):
        mark = "*" if s.get("shared_with") else ""
        steps.append(("k-means" if s.get("kind") == "kmeans" else str(s["steps"])) + mark)
        walls.append(f"{round(s['wall_s'] or 0)}{mark}")
    return " + ".join(steps), " + ".join(walls)


def table(results: dict[str, Any]) -> str:
    """Markdown WER table (attention greedy, %) with relative changes against (i)."""
    compare(results)
    cols = ["pipeline", "steps", "wall s", "best val step", *CONDITIONS,
            "target: ≤ −20 % on V / AV"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    shared = False
    for name, pipe in results["pipelines"].items():
        cells = []
        for c in CONDITIONS:
            w = pipe["wer"].get(c)
            rel = pipe.get("relative", {}).get(c)
            cells.append("–" if w is None else
                         f"{w:.1f}" + ("" if rel is None else f" ({rel:+.0f} %)"))
        met = pipe.get("target_met")
        target = "baseline" if met is None else " / ".join(
            "–" if met[c] is None else ("yes" if met[c] else "no") for c in TARGET_CONDITIONS)
        steps, walls = _stage_cells(pipe)
        shared |= "*" in steps
        best = pipe.get("best_step")
        lines.append(f"| {name} | {steps} | {walls} | {'–' if best is None else best} | "
                     + " | ".join(cells) + f" | {target} |")
    notes = ["", "Each labelled stage is tested with its best validation checkpoint (greedy CTC "
             "val/wer; its step in 'best val step'); relative WER change against (i) in "
             "brackets."]
    if shared:
        notes.append("\\* one run shared with an earlier pipeline of the table (trained once; "
                     "its steps and seconds are that run's).")
    return "\n".join(lines + notes) + "\n"


def write(results: dict[str, Any], out: str | Path) -> None:
    """``<out>/results.json`` and ``<out>/wer.md`` (the table)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(results)  # fills in the comparison first
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "wer.md").write_text(text)


def merge(dirs: list[str], out: str) -> dict[str, Any]:
    """Join the ``results.json`` of separately run pipelines into ``<out>/wer.md`` + json.

    Raises:
        FileNotFoundError: a directory without ``results.json``.
        ValueError: a pipeline present in two of the directories.
    """
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
    order = {k: i for i, k in enumerate(ORDER)}
    results["pipelines"] = dict(sorted(results["pipelines"].items(),
                                       key=lambda kv: order.get(_key(kv[0]), len(order))))
    for pipe in results["pipelines"].values():  # recomputed against the merged (i)
        pipe.pop("relative", None)
        pipe.pop("target_met", None)
        for stage in _stages(pipe):
            stage.pop("shared_with", None)
    write(results, out)
    return results
