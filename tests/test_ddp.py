"""Distributed training through Lightning's DDP: 2 CPU processes on gloo launched by torchrun.

Checks that every training item is seen exactly once per epoch across the ranks, that both
ranks run the same number of steps, and that the averaged gradients of a step equal those of
one process on the union of the two ranks' batches. Run as a script, this file is the worker
that torchrun starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
# Audio-only stream: the video front-end's BatchNorm takes statistics per rank unless
# sync_batchnorm (CUDA only) is on, so a union batch would normalise differently.
# fp32 and the transformer encoder: bf16 rounding and the conformer's BatchNorm (statistics
# per rank, as above) would make the union-batch gradients differ for reasons DDP is not about.
OVERRIDES = ["+experiment=synth_grid", "evaluate=false", "data.modalities=[audio]",
             "model/encoder=transformer", "trainer.precision=32-true",
             "stage.objective.modalities=[audio]", "model.encoder.dropout=0.0",
             "model.fusion.dropout=0.0", "model.decoder.dropout=0.0", "trainer.max_time=null", "trainer.max_steps=-1",
             f"trainer.max_epochs={EPOCHS}", "trainer.log_every_n_steps=1",
             "trainer.gradient_clip_val=null", "callbacks.periodic_checkpoint=null",
             "num_threads=1"]
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def _cfg(root: Path, out: Path, *extra: str):
    from conftest import tiny_overrides
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*OVERRIDES, *extra, *tiny_overrides(root, out)])
    cfg.model.video_frontend = None  # audio-only model: every parameter gets a gradient
    return cfg


class _Recorder(pl.Callback):
    """Writes this rank's batch ids per epoch, and its first batch, weights and gradients."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.ids: dict[int, list[list[str]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids.setdefault(trainer.current_epoch, []).append(list(batch["ids"]))
        if trainer.global_step == 0:
            torch.save({k: v for k, v in batch.items() if k != "skipped"},
                       self.out / f"batch{trainer.global_rank}.pt")
            if trainer.is_global_zero:
                torch.save(pl_module.state_dict(), self.out / "weights0.pt")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == 0:  # after DDP's all-reduce, before clipping and the update
            grads = {n: p.grad.clone() for n, p in pl_module.named_parameters()
                     if p.grad is not None}
            torch.save(grads, self.out / f"grads{trainer.global_rank}.pt")

    def on_train_end(self, trainer, pl_module) -> None:
        path = self.out / f"ids{trainer.global_rank}.json"
        path.write_text(json.dumps({str(k): v for k, v in self.ids.items()}))


def _worker(root: str, out: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from avsr.train import train

    out_dir = Path(out)
    train(_cfg(Path(root), out_dir, *DDP), extra_callbacks=[_Recorder(out_dir)])


def _union(a: dict, b: dict) -> dict:
    """One batch holding the items of ``a`` then ``b`` (padded to the longer of each)."""
    def cat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        width = max(x.shape[1], y.shape[1])
        pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
        return torch.cat([pad(x), pad(y)])

    return {"audio": cat(a["audio"], b["audio"]), "video": None,
            "audio_lengths": torch.cat([a["audio_lengths"], b["audio_lengths"]]),
            "video_lengths": torch.cat([a["video_lengths"], b["video_lengths"]]),
            "tokens": cat(a["tokens"], b["tokens"]),
            "token_lengths": torch.cat([a["token_lengths"], b["token_lengths"]]),
            "ids": a["ids"] + b["ids"], "texts": a["texts"] + b["texts"]}


def _grads(task, batch: dict) -> dict[str, torch.Tensor]:
    task.zero_grad()
    loss = task.objective(task.model, batch)["loss"]  # one process: the local mean
    loss.backward()
    return {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


@pytest.mark.slow
def test_ddp_two_cpu_ranks_cover_the_epoch_and_match_union_gradients(tiny_synth_root, tmp_path):
    import hydra

    from avsr.data.corpora import LRS3

    cfg = _cfg(tiny_synth_root, tmp_path)
    hydra.utils.instantiate(cfg.data).load_tokenizer()  # trained once here, not by both ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         __file__, "worker", str(tiny_synth_root), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # every training item exactly once per epoch across ranks, same number of steps per rank
    train_ids = sorted(u.id for u in LRS3(tiny_synth_root).utterances("train"))
    ids = [json.loads((tmp_path / f"ids{r}.json").read_text()) for r in range(2)]
    for epoch in range(EPOCHS):
        per_rank = [ids[r][str(epoch)] for r in range(2)]
        assert len(per_rank[0]) == len(per_rank[1]) > 0
        seen = sorted(i for batches in per_rank for b in batches for i in b)
        assert seen == train_ids
    assert ids[0]["0"] != ids[0]["1"]  # reshuffled per epoch

    # both ranks hold the same averaged gradients; they equal one process on the union batch
    g0, g1 = (torch.load(tmp_path / f"grads{r}.pt") for r in range(2))
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n])
    b0, b1 = (torch.load(tmp_path / f"batch{r}.pt", weights_only=False) for r in range(2))
    assert len(b0["ids"]) != len(b1["ids"])  # unequal batches: a plain mean would be wrong
    from avsr.lightning.task import TrainTask
    from avsr.objectives.supervised import SupervisedObjective

    model = hydra.utils.instantiate(_cfg(tiny_synth_root, tmp_path, "vocab_size=40").model)
    cfg40 = _cfg(tiny_synth_root, tmp_path, "vocab_size=40")
    task = hydra.utils.instantiate(cfg40.stage, model=model,
                                   tokenizer=hydra.utils.instantiate(cfg40.data).load_tokenizer())
    assert isinstance(task, TrainTask) and isinstance(task.objective, SupervisedObjective)
    task.load_state_dict(torch.load(tmp_path / "weights0.pt"))
    union = _grads(task, _union(b0, b1))
    assert union.keys() == g0.keys()
    for n in union:
        torch.testing.assert_close(g0[n], union[n], atol=1e-5, rtol=1e-4)
    # what DDP alone would give with per-rank means (the normalisation we correct)
    naive = {n: (a + b) / 2 for (n, a), b in zip(_grads(task, b0).items(),
                                                   _grads(task, b1).values())}
    assert not all(torch.allclose(naive[n], union[n], atol=1e-5, rtol=1e-4) for n in union)


def test_sampler_gives_every_rank_the_same_count_and_every_item_once():
    from avsr.data.sampler import FrameBudgetBatchSampler

    lengths = [(7 * i) % 90 + 5 for i in range(61)]
    for world in (2, 3, 4, 8):
        for n in (61, 5, 2):  # down to fewer items than ranks
            ranks = [FrameBudgetBatchSampler(lengths[:n], 200, seed=1, num_replicas=world,
                                             rank=r) for r in range(world)]
            batches = [list(s) for s in ranks]
            assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(ranks[0])
            flat = sorted(i for b in batches for batch in b for i in batch)
            assert flat == list(range(n))  # exactly once (tiny sets get empty batches)
            assert all(len(batch) * max((lengths[i] for i in batch), default=0) <= 200
                       for b in batches for batch in b)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    _worker(sys.argv[2], sys.argv[3])
