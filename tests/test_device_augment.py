"""Batched device augmentation (avsr.data.device_augment) against the per-item CPU transforms
and torchvision, and data.augment_on=device through the data module and a Lightning Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision.transforms.v2.functional as TF

from avsr.data.corpora import LRS3
from avsr.data.datamodule import AVDataModule
from avsr.data.dataset import _pad_stack
from avsr.data.device_augment import (AudioBatchAugment, BatchAugment, RawVideo,
                                      VideoBatchAugment, augment_loader_batch, augment_seed,
                                      span_mask)
from avsr.data.transforms import VIDEO_MEAN, VIDEO_STD, AudioTransform, VideoTransform

LENGTHS = [7, 3, 5]


def _frames(lengths=LENGTHS, size: int = 12, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=g)
            for n in lengths]


def _audio(lengths, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 0.3 + 0.1 for n in lengths]


def _batch(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [x.shape[0] for x in items]
    return _pad_stack(items, lengths), torch.tensor(lengths)


@pytest.mark.parametrize("output_size", [None, 4, 3])  # none, average pooling, area resampling
def test_eval_equals_cpu_transform(output_size) -> None:
    items = _frames()
    video, lengths = _batch(items)
    cpu = VideoTransform(train=False, crop_size=8, output_size=output_size)
    want = _pad_stack([cpu(x) for x in items], LENGTHS)
    got = VideoBatchAugment.from_transform(cpu)(video, lengths)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_eval_equals_torchvision() -> None:
    """Centre crop + [0, 1] + normalise by torchvision on the same uint8 frames."""
    items = _frames()
    video, lengths = _batch(items)
    got = VideoBatchAugment(train=False, crop_size=8)(video, lengths)
    for b, x in enumerate(items):
        ref = TF.normalize(TF.to_dtype(TF.center_crop(x.unsqueeze(1), [8, 8]), torch.float32,
                                       scale=True), [VIDEO_MEAN], [VIDEO_STD])
        torch.testing.assert_close(got[b, :x.shape[0]], ref, rtol=0, atol=1e-5)
        assert not got[b, x.shape[0]:].any()  # padding stays 0


def test_audio_eval_equals_cpu_transform() -> None:
    items = _audio([900, 400, 0, 650])
    audio, lengths = _batch(items)
    got = AudioBatchAugment(train=False)(audio, lengths)
    cpu = AudioTransform(train=False)
    want = _pad_stack([cpu(x) if x.numel() else x for x in items], [x.numel() for x in items])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output_size", [None, 4])
def test_train_equals_cpu_transforms_with_the_item_generator(output_size) -> None:
    """Audio then video of each item, drawn from a generator seeded by augment_seed(seed):
    the per-utterance draws are exactly the CPU transforms' (flip, crop, masks)."""
    video_items, audio_items = _frames([30, 12, 26]), _audio([30 * 40, 12 * 40, 26 * 40])
    video, v_len = _batch(video_items)
    audio, a_len = _batch(audio_items)
    seeds = torch.tensor([11, 2**62 + 5, 7])
    kw = dict(time_mask_max_frames=6, time_mask_stride=10)
    vt = VideoTransform(train=True, crop_size=8, output_size=output_size, **kw)
    at = AudioTransform(train=True, time_mask_max_samples=300, time_mask_stride=400)
    aug = BatchAugment.from_transforms(vt, at)
    out = aug({"ids": ["a", "b", "c"], "video": video, "video_lengths": v_len, "audio": audio,
               "audio_lengths": a_len, "seeds": seeds})
    for b, seed in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(augment_seed(seed))
        a_cpu = AudioTransform(train=True, time_mask_max_samples=300, time_mask_stride=400,
                               generator=g)(audio_items[b])
        v_cpu = VideoTransform(train=True, crop_size=8, output_size=output_size, generator=g,
                               **kw)(video_items[b])
        torch.testing.assert_close(out["audio"][b, :a_cpu.numel()], a_cpu, rtol=0, atol=1e-5)
        torch.testing.assert_close(out["video"][b, :v_cpu.shape[0]], v_cpu, rtol=0, atol=1e-5)
        assert not out["audio"][b, a_cpu.numel():].any()
        assert not out["video"][b, v_cpu.shape[0]:].any()


def test_train_draws_statistics_and_masks_within_lengths() -> None:
    """Over many items: flips near flip_prob, every crop corner, masks never past a length."""
    n, size, crop = 400, 10, 8
    lengths = [(i % 20) + 1 for i in range(n)]
    video = torch.full((n, 20, size, size), 200, dtype=torch.uint8)
    aug = VideoBatchAugment(train=True, crop_size=crop, time_mask_max_frames=4,
                            time_mask_stride=5)
    gens = BatchAugment.generators(torch.arange(n), n)
    p = aug.draw(lengths, size, size, BatchAugment.generators(torch.arange(n), n))
    assert 0.4 < sum(p["flip"]) / n < 0.6
    assert set(p["top"]) == set(p["left"]) == set(range(size - crop + 1))
    assert all(end <= length for spans, length in zip(p["spans"], lengths) for _, end in spans)
    out = aug(video, torch.tensor(lengths), gens)
    assert out.shape == (n, 20, 1, crop, crop)
    level = (200 / 255 - VIDEO_MEAN) / VIDEO_STD
    frame_kept = out.flatten(2).ne(0).all(-1)  # whole frames kept or zeroed
    assert torch.equal(frame_kept | out.flatten(2).eq(0).all(-1), torch.ones_like(frame_kept))
    valid = torch.arange(20) < torch.tensor(lengths)[:, None]
    assert not (frame_kept & ~valid).any()  # padding stays 0
    masked = (valid & ~frame_kept).sum() / valid.sum()
    assert 0.05 < masked < 0.6  # ~one span of 0-4 frames per 5
    torch.testing.assert_close(out[frame_kept], torch.full_like(out[frame_kept], level))


def test_flip_is_a_mirror_image() -> None:
    x = torch.arange(64, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    aug = VideoBatchAugment(train=True, crop_size=8, flip_prob=1.0, time_mask_max_frames=0)
    got = aug(x, torch.tensor([3]))
    ref = TF.normalize(TF.to_dtype(TF.horizontal_flip(x[0].unsqueeze(1)), torch.float32,
                                   scale=True), [VIDEO_MEAN], [VIDEO_STD])
    torch.testing.assert_close(got[0], ref, rtol=0, atol=1e-5)


def test_reproducible_for_a_seed() -> None:
    video, lengths = _batch(_frames([25, 25]))
    audio, a_len = _batch(_audio([1000, 1000]))
    aug = BatchAugment(video=VideoBatchAugment(train=True, crop_size=8, time_mask_stride=5),
                       audio=AudioBatchAugment(train=True, time_mask_max_samples=200,
                                               time_mask_stride=300))

    def run(seeds):
        return aug({"ids": ["a", "b"], "video": video, "video_lengths": lengths, "audio": audio,
                    "audio_lengths": a_len, "seeds": torch.tensor(seeds)})

    one, again, other = run([3, 4]), run([3, 4]), run([5, 4])
    assert torch.equal(one["video"], again["video"]) and torch.equal(one["audio"], again["audio"])
    assert not torch.equal(one["video"][0], other["video"][0])
    assert torch.equal(one["video"][1], other["video"][1])  # per item: the other seed is kept


def test_span_mask_matches_a_loop() -> None:
    spans = [[(0, 2), (1, 4)], [], [(5, 6), (6, 8)]]
    want = torch.zeros(3, 8, dtype=torch.bool)
    for b, row in enumerate(spans):
        for s, e in row:
            want[b, s:e] = True
    assert torch.equal(span_mask(spans, 8), want)


def test_bad_shapes_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, H, W\), got \(3, 12, 12\)"):
        VideoBatchAugment(crop_size=8)(torch.zeros(3, 12, 12, dtype=torch.uint8),
                                       torch.tensor([3]))
    with pytest.raises(ValueError, match=r"lengths of shape \(2,\), got \(3,\)"):
        AudioBatchAugment()(torch.zeros(2, 10), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="smaller than crop 88"):
        VideoBatchAugment()(torch.zeros(1, 2, 64, 64, dtype=torch.uint8), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"\(T, H, W\), got \(2, 1, 4, 4\)"):
        RawVideo()(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="VideoTransform"):
        VideoBatchAugment.from_transform(lambda x: x)


def test_semi_supervised_batch_keeps_unlabelled_clean() -> None:
    seen = {}

    class Probe:
        def __init__(self, train):
            self.train = train

        def __call__(self, batch):
            seen[batch["ids"][0]] = self.train
            return batch

    augments = {True: Probe(True), False: Probe(False)}
    augment_loader_batch(augments, {"labelled": {"ids": ["l"]}, "unlabelled": {"ids": ["u"]}},
                         training=True)
    assert seen == {"l": True, "u": False}


# -- through the data module -------------------------------------------------------------------

def _dm(root: Path, tmp_path: Path, **kw) -> AVDataModule:
    args = dict(corpus=LRS3(root), tokenizer_path=tmp_path / "tok" / "spm.model", vocab_size=40,
                max_frames=40, seed=0, noise=None)
    return AVDataModule(**{**args, **kw})


def test_option_is_checked(lrs3_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.augment_on must be one of .* got 'gpu'"):
        _dm(lrs3_root, tmp_path, augment_on="gpu")


def test_device_mode_loader_batches_and_eval_equality(lrs3_root: Path, tmp_path: Path) -> None:
    cpu, dev = _dm(lrs3_root, tmp_path), _dm(lrs3_root, tmp_path, augment_on="device")
    cpu.setup("fit")
    dev.setup("fit")
    for want, raw in zip(cpu.val_dataloader(), dev.val_dataloader(), strict=True):
        assert raw["video"].dtype == torch.uint8 and raw["video"].ndim == 4
        assert raw["seeds"].shape == (len(raw["ids"]),)
        got = dev.on_after_batch_transfer(raw, 0)  # no trainer: evaluation
        assert got["ids"] == want["ids"]
        torch.testing.assert_close(got["video"], want["video"], rtol=0, atol=1e-5)
        torch.testing.assert_close(got["audio"], want["audio"], rtol=0, atol=1e-4)
    train = next(iter(dev.train_dataloader()))
    assert train["video"].dtype == torch.uint8 and "seeds" in train
    # CPU mode without workers keeps its unseeded batches and its hook is a no-op
    batch = next(iter(cpu.train_dataloader()))
    assert "seeds" not in batch and cpu.on_after_batch_transfer(batch, 0) is batch


class _Recorder(pl.LightningModule):
    """Records what a training and a validation step receive."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[str, list] = {"train": [], "val": []}

    def _record(self, stage, batch):
        self.seen[stage].append({k: batch[k].clone() for k in ("video", "audio", "video_lengths",
                                                               "audio_lengths")})

    def training_step(self, batch, batch_idx):
        self._record("train", batch)
        return self.w * batch["video"].mean()

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(dm: AVDataModule, tmp_path: Path) -> _Recorder:
    model = _Recorder()
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False,
                         accelerator="cpu", default_root_dir=tmp_path, val_check_interval=2)
    trainer.fit(model, datamodule=dm)
    return model


def test_trainer_gets_augmented_batches(lrs3_root: Path, tmp_path: Path) -> None:
    dev = _fit(_dm(lrs3_root, tmp_path, augment_on="device"), tmp_path / "a")
    again = _fit(_dm(lrs3_root, tmp_path, augment_on="device"), tmp_path / "b")
    cpu = _fit(_dm(lrs3_root, tmp_path), tmp_path / "c")
    assert len(dev.seen["train"]) == 2 and len(dev.seen["val"]) == 1
    for d, c in zip(dev.seen["train"], cpu.seen["train"], strict=True):
        assert d["video"].dtype == torch.float32 and d["video"].shape == c["video"].shape
        assert torch.equal(d["video_lengths"], c["video_lengths"])
        t = d["video"].shape[1]
        pad = torch.arange(t) >= d["video_lengths"][:, None]
        assert not d["video"][pad].any() and not d["audio"][
            torch.arange(d["audio"].shape[1]) >= d["audio_lengths"][:, None]].any()
    for d, a in zip(dev.seen["train"], again.seen["train"], strict=True):  # seeded per item
        assert torch.equal(d["video"], a["video"]) and torch.equal(d["audio"], a["audio"])
    # validation: the deterministic evaluation transform, equal to the CPU path
    torch.testing.assert_close(dev.seen["val"][0]["video"], cpu.seen["val"][0]["video"],
                               rtol=0, atol=1e-5)


def test_evaluation_decodes_with_the_cpu_transforms() -> None:
    """avsr.evaluate iterates the test loaders without a Trainer (no batch hook)."""
    from omegaconf import OmegaConf

    from avsr.evaluate import evaluation_data_config

    run = OmegaConf.create({"data": {"augment_on": "device", "seed": 3}})
    assert evaluation_data_config(run, None).augment_on == "cpu"
    assert evaluation_data_config(run, {"seed": 4}).seed == 4
    assert "augment_on" not in evaluation_data_config(OmegaConf.create({"data": {"seed": 3}}),
                                                      None)


def test_train_crop_and_flip_equal_torchvision_at_the_drawn_corner() -> None:
    items = _frames([6, 4, 5, 6], size=14, seed=3)
    video, lengths = _batch(items)
    aug = VideoBatchAugment(train=True, crop_size=8, time_mask_max_frames=0)
    seeds = torch.tensor([1, 2, 3, 4])
    p = aug.draw(lengths.tolist(), 14, 14, BatchAugment.generators(seeds, 4))
    got = aug(video, lengths, BatchAugment.generators(seeds, 4))
    assert len(set(zip(p["top"], p["left"]))) > 1  # the corners differ between items
    for b, x in enumerate(items):
        ref = TF.crop(x.unsqueeze(1), p["top"][b], p["left"][b], 8, 8)
        ref = TF.horizontal_flip(ref) if p["flip"][b] else ref
        ref = TF.normalize(TF.to_dtype(ref, torch.float32, scale=True), [VIDEO_MEAN], [VIDEO_STD])
        torch.testing.assert_close(got[b, :x.shape[0]], ref, rtol=0, atol=1e-5)
