"""benchmarks/device_check.sh (issue 19) in its CPU --tiny form, and the checkpoint-free
``--synthetic`` beam-search comparison of benchmarks/decode.py against ESPnet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _bench_decode():
    return load_benchmark("decode")


def test_synthetic_decoding_identical_to_espnet(tmp_path: Path) -> None:
    bench = _bench_decode()
    bench._synthesize(4, tmp_path / "enc.pt", frames=(12, 30))
    data = torch.load(tmp_path / "enc.pt", weights_only=True)
    assert len(data["items"]) == 4
    assert all(12 <= e.shape[0] <= 30 for e, _, _ in data["items"])
    model = bench._synthetic_model()
    with torch.inference_mode():
        ours = bench._run_ours(model, data, 3, 0.1, batch_size=4)
        theirs = bench._run_espnet(model, data, 3, 0.1)
    assert [h for h, _ in ours] == [h for h, _ in theirs]
    assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-3)
    assert all(h for h, _ in ours)  # non-empty hypotheses
    # deterministic: a second build gives the same weights
    again = bench._synthetic_model()
    assert torch.equal(model.decoder.output_projection.weight,
                       again.decoder.output_projection.weight)


@pytest.mark.slow
def test_device_check_tiny_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(out),
                           "--device", "cpu", "--tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "device_check.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"env", "corpus", "train_synth_grid", "decode", "loader"}
    for name, sec in sections.items():
        assert sec["ok"], (name, sec.get("error"))
        assert sec["command"] and sec["wall_s"] > 0
    assert sections["env"]["result"]["torch"] == torch.__version__
    row = sections["train_synth_grid"]["result"]["rows"][0]
    assert row["frames_per_s"] > 0 and row["gflop_per_step"] > 0 and 0 < row["mfu"]
    assert row["peak_memory_mb"] > 0
    dec = sections["decode"]["result"]
    assert dec["identical"] and dec["comparisons"][0]["same_best_hypothesis"] == 2
    assert {r["impl"] for r in dec["rows"]} == {"ours", "espnet"}
    assert any(r["extrapolated"] for r in dec["rows"])
    loader = sections["loader"]["result"]["rows"]
    assert [(r["augment"], r["workers"]) for r in loader] == [
        ("cpu", 0), ("cpu", 1), ("device", 0), ("device", 1)]
    assert all(r["frames_per_s"] > 0 for r in loader)
    assert all(r["augment_frames_per_s"] > 0 and r["augment_device"] == "cpu"
               for r in loader if r["augment"] == "device")
    assert [c["augment"] for c in report["loader_vs_step"]] == ["cpu", "device"]
    assert report["loader_vs_step"][0]["workers_needed"] >= 1
    md = (out / "device_check.md").read_text()
    for name in sections:
        assert f"## {name}" in md
    assert "| synth_grid | fp32-eager | device |" in md
    assert (out / "device_check.log").stat().st_size > 0
    assert not list(tmp_path.glob("device_check.*")), "work folder left behind"
