"""Exact resume: a real training process killed with SIGKILL mid-epoch and resumed from its
last periodic checkpoint repeats the uninterrupted run step for step (same batches, same
losses, same learning rates, same final weights)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 12, 4  # epoch 0 has 10 batches: the kill is mid-epoch, the resume crosses it

pytestmark = pytest.mark.slow


def _command(root: Path, out: Path, *extra: str) -> list[str]:
    overrides = [o for o in tiny_overrides(root, out) if not o.startswith("num_threads")]
    return [sys.executable, "-m", "avsr.train", "+experiment=synth_grid", *overrides,
            f"hydra.run.dir={out}", "evaluate=false", "num_threads=1",
            f"trainer.max_steps={STEPS}", "trainer.max_epochs=100", "trainer.max_time=null",
            "trainer.log_every_n_steps=1", "trainer.val_check_interval=null",
            "trainer.check_val_every_n_epoch=1",
            f"callbacks.periodic_checkpoint.every_n_train_steps={EVERY}", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _rows(path: Path) -> dict[int, dict[str, float]]:
    """Per-step training metrics of a CSV log: {step: {name: value}}."""
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                rows[int(row["step"])] = {k: float(v) for k, v in row.items()
                                          if k.startswith("train/") and v and "per_s" not in k
                                          and "time" not in k and "memory" not in k}
    return rows


def test_sigkill_mid_epoch_then_resume_repeats_the_uninterrupted_run(tiny_synth_root, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_command(tiny_synth_root, full), check=True, env=_env(), cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)

    # the same run, killed (no clean-up handlers run) as soon as its first checkpoint exists
    last = cut / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(_command(tiny_synth_root, cut), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    killed_at = ckpt["global_step"]
    assert killed_at % EVERY == 0 and 0 < killed_at < STEPS
    assert ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0  # mid-epoch
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]

    subprocess.run(_command(tiny_synth_root, cut, "ckpt_path=last", "logger.csv.version=resumed"),
                   check=True, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)

    expected = _rows(full / "csv" / "metrics.csv")
    resumed = _rows(cut / "csv" / "resumed" / "metrics.csv")
    assert sorted(resumed) == [s for s in sorted(expected) if s >= killed_at]
    assert len(resumed) == STEPS - killed_at
    for step, metrics in resumed.items():
        assert metrics.keys() == expected[step].keys()
        for name, value in metrics.items():
            assert value == pytest.approx(expected[step][name], abs=1e-6, rel=1e-6), (step, name)

    a = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, atol=1e-6, rtol=1e-6)
    assert b["lr_schedulers"][0]["last_epoch"] == STEPS
