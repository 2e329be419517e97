"""BRAVEn pre-training under Lightning's DDP (2 CPU processes on gloo, launched by torchrun).

The frame-budget sampler can hand a rank an empty batch (a tiny shard, or every item of it an
unreadable file). Under DDP the other rank then waits for this one's gradients, so a rank with
nothing to learn must still take part in the step. Plain ``strategy=ddp``: pre-training leaves
the decoder and CTC head out of the loss, so they must not ask for gradients either. Run as a
script, this file is the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]
STEPS = 3


class _EmptyOnRankOne(pl.Callback):
    """Empties rank 1's second batch (as if all its files were unreadable); records steps."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and trainer.global_step == 1:
            batch["ids"] = []

    def on_train_end(self, trainer, pl_module) -> None:
        (self.out / f"steps{trainer.global_rank}.json").write_text(
            json.dumps({"global_step": trainer.global_step}))


def _worker(root: str, out: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_overrides
    from hydra import compose, initialize_config_dir

    from avsr.train import train

    out_dir = Path(out)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_low_braven", "trainer.precision=32-true", "trainer.max_time=null",
            f"trainer.max_steps={STEPS}", "trainer.max_epochs=100",
            "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1000",
            "callbacks.periodic_checkpoint=null", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.strategy=ddp",
            "num_threads=1", *tiny_overrides(Path(root), out_dir)])
    train(cfg, extra_callbacks=[_EmptyOnRankOne(out_dir)])


@pytest.mark.slow
def test_braven_ddp_survives_an_empty_batch_on_one_rank(tiny_synth_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node=2", __file__, "worker", str(tiny_synth_root), str(tmp_path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("DDP pre-training hung: a rank skipped its step and the other waited")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads((tmp_path / f"steps{r}.json").read_text())["global_step"]
             for r in range(2)]
    assert steps == [STEPS, STEPS]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    _worker(sys.argv[2], sys.argv[3])
