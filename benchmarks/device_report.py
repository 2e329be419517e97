"""Merge the sections of benchmarks/device_check.sh into device_check.json and device_check.md.

    python benchmarks/device_report.py WORK_DIR OUT_DIR [--device cuda] [--tiny 0] [--total-s N]

WORK_DIR holds ``<section>.meta.json`` (command, exit status, wall time, result file) and
``<section>.log`` for each section run; a section's result is its JSON file, its error the end
of its log when it failed or timed out.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _load(work: Path) -> dict:
    sections = {}
    metas = sorted(work.glob("*.meta.json"), key=lambda p: p.stat().st_mtime)
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        name = meta["name"]
        result_file = meta.pop("result_file", "")
        if result_file and Path(result_file).is_file():
            try:
                meta["result"] = json.loads(Path(result_file).read_text())
            except ValueError as e:
                meta["result"] = None
                meta["error"] = f"unreadable result: {e}"
        log = work / f"{name}.log"
        if meta["rc"] != 0 and log.is_file():
            tail = log.read_text(errors="replace").splitlines()[-40:]
            meta["error"] = ("TIMED OUT; " if meta["timed_out"] else "") + "\n".join(tail)[-4000:]
        meta["ok"] = meta["rc"] == 0
        sections[name] = meta
    return sections


def _f(x, fmt: str = "{:.1f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def _step_rates(sections: dict) -> dict:
    """Frames/s the bf16 training step consumes per model (else the first measured variant)."""
    rates = {}
    for name, sec in sections.items():
        if not name.startswith("train_") or not sec.get("result"):
            continue
        rows = [r for r in sec["result"]["rows"] if "frames_per_s" in r]
        bf16 = [r for r in rows if r["variant"] == "bf16-autocast"] or rows
        if bf16:
            rates[bf16[0]["model"]] = (bf16[0]["variant"], bf16[0]["frames_per_s"])
    return rates


def markdown(report: dict) -> str:
    sections = report["sections"]
    lines = [f"# Device check ({report['device']}{', tiny' if report['tiny'] else ''})", "",
             f"Total wall time {report['total_s']} s. Sections: " + ", ".join(
                 f"{n} {'ok' if s['ok'] else 'FAILED'}" for n, s in sections.items()), ""]

    def head(name: str) -> None:
        s = sections[name]
        lines.extend([f"## {name}", "", f"`{s['command']}`", "",
                      f"exit {s['rc']}{' (timed out)' if s['timed_out'] else ''}, "
                      f"{s['wall_s']:.1f} s of {s['timeout_s']:.0f} s", ""])
        if s.get("error"):
            lines.extend(["```", s["error"][-1500:], "```", ""])

    for name, s in sections.items():
        head(name)
        res = s.get("result")
        if not res:
            continue
        if name == "env":
            lines.extend(["| | |", "| --- | --- |"])
            for k in ["python", "torch", "cuda", "gpu", "cpus", "installed_from_whl"]:
                lines.append(f"| {k} | {res.get(k)} |")
            for k, v in res.get("packages", {}).items():
                lines.append(f"| {k} | {v} |")
            lines.append("")
        elif name.startswith("train_"):
            mm = res.get("matmul_gflops", {})
            lines.extend([f"Measured matmul rate: fp32 {_f(mm.get('fp32'))} GFLOP/s, bf16 "
                          f"{_f(mm.get('bf16'))} GFLOP/s.", "",
                          "| model | variant | batch x frames | steps | s/step | frames/s | "
                          "GFLOP/step | achieved TFLOP/s | MFU | peak MiB | x fp32 |",
                          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"])
            for r in res["rows"]:
                if "error" in r:
                    lines.append(f"| {r['model']} | {r['variant']} | FAILED: "
                                 f"{r['error'][:200]} | | | | | | | | |")
                    continue
                lines.append(
                    f"| {r['model']} | {r['variant']} | {r['batch']} x {r['frames_per_item']} | "
                    f"{r['timed_steps']} | {r['s_per_step']:.4f} | {r['frames_per_s']:.0f} | "
                    f"{r['gflop_per_step']:.1f} | {r['achieved_gflops'] / 1e3:.2f} | "
                    f"{r['mfu']:.1%} | {r['peak_memory_mb']:.0f} | "
                    f"{r['speedup_vs_fp32_eager']:.2f} |")
            lines.append("")
        elif name == "decode":
            ef = res.get("encoder_frames", {})
            lines.extend([f"Encoder frames {ef.get('min')}-{ef.get('max')} (mean "
                          f"{_f(ef.get('mean'), '{:.0f}')}); ESPnet decodes the first "
                          f"{res.get('espnet_utterances')} utterances, larger counts are "
                          f"extrapolated linearly.", "",
                          "| beam | search | utterances | wall s | utt/s | CPU s | peak CUDA MiB "
                          "| |", "| --- | --- | --- | --- | --- | --- | --- | --- |"])
            for r in res["rows"]:
                cpu = _f(r.get("cpu_s"), "{:.2f}")
                lines.append(f"| {r['beam']} | {r['impl']} | {r['utterances']} | "
                             f"{r['wall_s']:.2f} | {r['utt_per_s']:.1f} | {cpu}"
                             f" | {_f(r.get('peak_cuda_mib'), '{:.0f}')} | "
                             f"{'extrapolated' if r['extrapolated'] else 'measured'} |")
            lines.extend(["", "| beam | same best hypothesis | max score diff | speed-up wall | "
                          "speed-up CPU |", "| --- | --- | --- | --- | --- |"])
            for c in res["comparisons"]:
                lines.append(f"| {c['beam']} | {c['same_best_hypothesis']}/{c['compared']} | "
                             f"{c['max_score_difference']:.1e} | {c['speedup_wall']:.1f}x | "
                             f"{c['speedup_cpu']:.1f}x |")
            if "planted_match" in res:
                lines.append("")
                lines.append("Share of our hypotheses equal to the planted sequence: " + ", ".join(
                    f"beam {b}: {v:.0%}" for b, v in res["planted_match"].items()))
            lines.append("")
        elif name == "loader":
            lines.extend([f"{res['utterances']} items (split {res['split']}), batch "
                          f"{res['batch_size']}.", "",
                          "| augment | workers | items | video frames/s | per worker | frames per "
                          "CPU s | first batch s | device augment frames/s |",
                          "| --- | --- | --- | --- | --- | --- | --- | --- |"])
            for r in res["rows"]:
                where = r.get("augment", "cpu")
                if "error" in r:
                    lines.append(f"| {where} | {r['workers']} | FAILED: {r['error'][:200]} "
                                 "| | | | | |")
                    continue
                aug = (f"{r['augment_frames_per_s']:.0f} ({r['augment_device']})"
                       if "augment_frames_per_s" in r else "")
                lines.append(f"| {where} | {r['workers']} | {r['items']} | "
                             f"{r['frames_per_s']:.0f} | {r['frames_per_s_per_worker']:.0f} | "
                             f"{r.get('frames_per_cpu_s', 0):.0f} | {r['first_batch_s']:.2f} | "
                             f"{aug} |")
            cmp = report.get("loader_vs_step", [])
            if cmp:
                lines.extend(["", "| model | step variant | augment | step frames/s | loader "
                              "frames/s per worker | workers needed |",
                              "| --- | --- | --- | --- | --- | --- |"])
                for c in cmp:
                    lines.append(f"| {c['model']} | {c['variant']} | {c.get('augment', 'cpu')} "
                                 f"| {c['step_frames_per_s']:.0f}"
                                 f" | {c['loader_frames_per_s_per_worker']:.0f} | "
                                 f"{c['workers_needed']} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", type=int, default=0)
    parser.add_argument("--total-s", type=int, default=None)
    args = parser.parse_args()
    sections = _load(args.work)
    report = {"device": args.device, "tiny": bool(args.tiny), "total_s": args.total_s,
              "sections": sections}
    loader = sections.get("loader", {}).get("result")
    if loader:
        for augment in ("cpu", "device"):  # where the augmentation ran (data.augment_on)
            per_worker = [r["frames_per_s_per_worker"] for r in loader["rows"]
                          if "frames_per_s_per_worker" in r and r["workers"] > 0
                          and r.get("augment", "cpu") == augment]
            if not per_worker:
                continue
            for model, (variant, fps) in _step_rates(sections).items():
                report.setdefault("loader_vs_step", []).append({
                    "model": model, "variant": variant, "augment": augment,
                    "step_frames_per_s": fps,
                    "loader_frames_per_s_per_worker": max(per_worker),
                    "workers_needed": math.ceil(fps / max(per_worker))})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device_check.json").write_text(json.dumps(report, indent=1))
    (args.out / "device_check.md").write_text(markdown(report))
    bad = [n for n, s in sections.items() if not s["ok"]]
    print(f"device_report: {len(sections)} sections, failed: {bad or 'none'}")


if __name__ == "__main__":
    main()
