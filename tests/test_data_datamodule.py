"""AVDataModule: tokenizer bootstrap, loaders, noisy test loaders, Lightning epoch/resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule
from avsr.data.loader import AVDataLoader


def _dm(root: Path, tmp_path: Path, **kw) -> AVDataModule:
    args = dict(corpus=LRS3(root), tokenizer_path=tmp_path / "tok" / "spm.model", vocab_size=40,
                max_frames=40, seed=0)
    return AVDataModule(**{**args, **kw})


def test_loaders(lrs3_root: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_root, tmp_path)
    dm.setup("fit")
    assert (tmp_path / "tok" / "spm.model").is_file() and dm.tokenizer is not None
    train_ids = {u.id for u in dm.corpus.utterances("train")}
    seen = []
    for batch in dm.train_dataloader():
        assert len(batch["ids"]) * int(batch["video_lengths"].max()) <= 40
        assert batch["video"].shape[2:] == (1, 88, 88)
        seen += batch["ids"]
    assert sorted(seen) == sorted(train_ids)
    assert sum(len(b["ids"]) for b in dm.val_dataloader()) == 2
    dm.setup("test")
    assert sum(len(b["ids"]) for b in dm.test_dataloader()) == 3
    assert set(dm.skip_summary()) == {"train", "val", "test"}
    assert dm.skip_summary()["train"]["skipped"] == 0


def _audio(loader: AVDataLoader) -> dict[str, torch.Tensor]:
    out = {}
    for b in loader:
        for i, uid in enumerate(b["ids"]):
            out[uid] = b["audio"][i, : b["audio_lengths"][i]]
    return out


def test_noisy_test_loaders(lrs3_root: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_root, tmp_path, babble_num_speakers=3)
    clean = _audio(dm.test_dataloader_for(None, None))
    babble = _audio(dm.test_dataloader_for("babble", 0.0))
    assert babble.keys() == clean.keys()
    assert all(not torch.allclose(babble[k], clean[k]) for k in clean)
    other_run = _dm(lrs3_root, tmp_path, babble_num_speakers=3)
    again = _audio(other_run.test_dataloader_for("babble", 0.0))
    assert all(torch.equal(babble[k], again[k]) for k in babble)  # the same noisy set every run
    train_ids = {u.id for u in dm.corpus.utterances("train")}
    assert set(dm.babble()._keys) <= train_ids  # babble never contains val/test speech
    white = _audio(dm.test_dataloader_for("white", 5.0))
    assert all(not torch.allclose(white[k], babble[k]) for k in white)
    with pytest.raises(ValueError, match="noise_type"):
        dm.test_dataloader_for("pink", 5.0)


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.ids: list[tuple[int, str]] = []

    def training_step(self, batch, batch_idx):
        self.ids += [(self.current_epoch, i) for i in batch["ids"]]
        return (self.w * batch["video"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(tmp_path: Path, **kw) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      use_distributed_sampler=False, num_sanity_val_steps=0,
                      limit_val_batches=0, **kw)


def test_lightning_epochs_and_mid_epoch_resume(lrs3_root: Path, tmp_path: Path) -> None:
    dm = _dm(lrs3_root, tmp_path, max_frames=24, modalities=("video",))
    full = _Recorder()
    _trainer(tmp_path / "full", max_epochs=2).fit(full, datamodule=dm)
    for epoch in (0, 1):
        ids = [i for e, i in full.ids if e == epoch]
        assert sorted(ids) == sorted(u.id for u in dm.corpus.utterances("train"))
    assert [i for e, i in full.ids if e == 0] != [i for e, i in full.ids if e == 1]

    dm = _dm(lrs3_root, tmp_path, max_frames=24, modalities=("video",))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2,
                                        save_top_k=-1, filename="{step}")
    first = _Recorder()
    _trainer(tmp_path / "a", max_epochs=2, max_steps=2, callbacks=[ckpt]).fit(first, datamodule=dm)
    resumed = _Recorder()
    dm = _dm(lrs3_root, tmp_path, max_frames=24, modalities=("video",))
    _trainer(tmp_path / "b", max_epochs=2).fit(resumed, datamodule=dm,
                                               ckpt_path=str(tmp_path / "ck" / "step=2.ckpt"))
    assert first.ids + resumed.ids == full.ids  # continues with the next unseen batch


def test_train_babble_is_bound_from_training_split(lrs3_root: Path, tmp_path: Path) -> None:
    from avsr.data.noise import BabbleNoise, NoiseAugment

    aug = NoiseAugment("babble", snrs=[0.0])
    dm = _dm(lrs3_root, tmp_path, noise=aug, babble_num_speakers=2)
    assert dm.load_tokenizer().vocab_size > 3
    dm.setup("fit")
    assert isinstance(aug.noise, BabbleNoise) and aug.noise is dm.babble()
    assert set(aug.noise._keys) <= {u.id for u in dm.corpus.utterances("train")}
    assert dm.datasets["train"].noise is aug and dm.datasets["val"].noise is None
    assert sum(len(b["ids"]) for b in dm.train_dataloader()) == 6
