"""Multi-worker loading: augmentation independent of the worker count, exact resume with
workers (a real Lightning run), DDP sharding with workers, per-trainer worker defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from test_data_datamodule import _trainer

import avsr.data.loading as loading
from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule
from avsr.data.dataset import AVDataset
from avsr.data.loader import AVDataLoader, utterance_lengths
from avsr.data.loading import SeededBatchSampler, loader_pin_memory, loader_workers
from avsr.data.sampler import FrameBudgetBatchSampler
from avsr.data.transforms import AudioTransform, VideoTransform

REPO = Path(__file__).resolve().parents[1]


def _dm(root: Path, tmp_path: Path, **kw) -> AVDataModule:
    args = dict(corpus=LRS3(root), tokenizer_path=tmp_path / "tok" / "spm.model", vocab_size=40,
                max_frames=40, seed=3, noise=None)
    return AVDataModule(**{**args, **kw})


def _batches(loader) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    return [(b["ids"], b["video"].clone(), b["audio"].clone()) for b in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2]) for x, y in zip(a, b))


def test_augmentation_does_not_depend_on_the_worker_count(lrs3_root: Path, tmp_path: Path) -> None:
    runs = {}
    for workers in (1, 2):
        dm = _dm(lrs3_root, tmp_path, num_workers=workers)
        dm.setup("fit")
        runs[workers] = _batches(dm.train_dataloader())
    assert len(runs[1]) >= 4
    assert _same(runs[1], runs[2])
    # and it is augmentation: a second epoch draws other crops, flips and masks
    dm = _dm(lrs3_root, tmp_path, num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(1)
    epoch1 = {i: v for ids, v, _ in _batches(loader) for i, v in zip(ids, v)}
    epoch0 = {i: v for ids, v, _ in runs[2] for i, v in zip(ids, v)}
    assert all(not torch.equal(epoch0[i], epoch1[i]) for i in epoch0)


def test_resumed_loader_with_workers_repeats_the_rest_of_the_epoch(lrs3_root: Path,
                                                                   tmp_path: Path) -> None:
    dm = _dm(lrs3_root, tmp_path, num_workers=2)
    dm.setup("fit")
    full = _batches(dm.train_dataloader())
    dm = _dm(lrs3_root, tmp_path, num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.load_state_dict({"epoch": 0, "position": 2, "seed": 3})
    assert _same(_batches(loader), full[2:])
    assert loader.state_dict()["position"] == len(full)


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, float]] = []

    def training_step(self, batch, batch_idx):
        for i, uid in enumerate(batch["ids"]):
            n = int(batch["video_lengths"][i])
            self.seen.append((uid, float(batch["video"][i, :n].double().sum())))
        return (self.w * batch["video"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_resume_with_workers_sees_the_same_augmented_batches(lrs3_root: Path,
                                                                       tmp_path: Path) -> None:
    kw = dict(max_frames=24, modalities=("video",), num_workers=2)
    full = _Recorder()
    _trainer(tmp_path / "full", max_epochs=2).fit(full, datamodule=_dm(lrs3_root, tmp_path, **kw))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3,
                                        save_top_k=-1, filename="{step}")
    first = _Recorder()
    _trainer(tmp_path / "a", max_epochs=2, max_steps=3, callbacks=[ckpt]).fit(
        first, datamodule=_dm(lrs3_root, tmp_path, **kw))
    resumed = _Recorder()
    _trainer(tmp_path / "b", max_epochs=2).fit(resumed, datamodule=_dm(lrs3_root, tmp_path, **kw),
                                               ckpt_path=str(tmp_path / "ck" / "step=3.ckpt"))
    assert len(full.seen) == 2 * 6  # 6 training utterances, 2 epochs
    assert first.seen + resumed.seen == full.seen  # same items, same crops, flips and masks


def test_ddp_ranks_with_workers_split_every_item_once(lrs3_root: Path) -> None:
    utts = LRS3(lrs3_root).utterances("train")
    dataset = AVDataset(utts, None, VideoTransform(train=True), AudioTransform(train=True))
    seen, crops = [], {}
    for rank in (0, 1):
        sampler = FrameBudgetBatchSampler(utterance_lengths(utts), 30, seed=0, num_replicas=2,
                                          rank=rank)
        loader = AVDataLoader(dataset, batch_sampler=SeededBatchSampler(sampler, 0),
                              collate_fn=dataset.collate, num_workers=2)
        for b in loader:
            seen += b["ids"]
            crops[rank] = crops.get(rank, b["video"][0])
    assert sorted(seen) == sorted(u.id for u in utts)  # every item once across the ranks
    assert not torch.equal(crops[0], crops[1])


def test_worker_defaults_per_trainer(monkeypatch) -> None:
    monkeypatch.setattr(loading, "_cpus", lambda: 2)
    assert loader_workers("cpu") == 0  # 2 cores: the step keeps them
    monkeypatch.setattr(loading, "_cpus", lambda: 32)
    assert loader_workers("cpu") == 2
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(loading, "_cpus", lambda: 96)
    assert loader_workers("gpu") == 8  # 12 CPUs per GPU, capped
    monkeypatch.setattr(loading, "_cpus", lambda: 32)
    assert loader_workers("gpu") == 3  # 4 CPUs per GPU: one stays with the step
    assert loader_pin_memory("gpu") and not loader_pin_memory("cpu")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        gpu = compose("train", overrides=["+experiment=synth_grid", "trainer=ddp"])
        cpu = compose("train", overrides=["+experiment=synth_grid", "trainer=cpu"])
    assert gpu.data.num_workers == 3 and gpu.data.pin_memory is True
    assert cpu.data.num_workers == 2 and cpu.data.pin_memory is False


def test_a_loader_without_workers_is_unchanged(lrs3_root: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_root, tmp_path, num_workers=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    # the main process keeps its global RNG stream (ExactResume restores it)
    assert isinstance(loader.batch_sampler, FrameBudgetBatchSampler)


# Page faults of the training video transform on a few clip lengths, counted inside one
# DataLoader worker forked from a fresh interpreter: a worker forked from this test process
# would inherit whatever allocator state earlier tests left here.
_FAULTS = """
import resource, sys
import torch
from avsr.data.loading import worker_init
from avsr.data.transforms import VideoTransform


class Faults(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        t = VideoTransform(train=True, crop_size=88)
        videos = [torch.randint(0, 256, (n, 96, 96), dtype=torch.uint8) for n in (40, 75, 90)]
        for v in videos:
            t(v)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            for v in videos:
                t(v)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


init = worker_init if sys.argv[1] == "raised" else None
loader = torch.utils.data.DataLoader(Faults(), batch_size=None, num_workers=1,
                                     worker_init_fn=init, multiprocessing_context="fork")
print(next(iter(loader)))
"""


def test_workers_keep_frame_buffers_instead_of_faulting_them_in_again(
        lrs3_root: Path, tmp_path: Path) -> None:
    faults = {}
    # glibc's own defaults for the comparison: `make` exports GLIBC_TUNABLES with raised
    # thresholds for every process it starts, this suite included
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    for mode in ("default", "raised"):
        proc = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                              text=True, cwd=REPO, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        faults[mode] = int(proc.stdout.split()[-1])
    assert faults["raised"] * 5 < faults["default"], faults
    dm = _dm(lrs3_root, tmp_path, num_workers=1)
    dm.setup("fit")
    assert dm.train_dataloader().worker_init_fn is loading.worker_init
