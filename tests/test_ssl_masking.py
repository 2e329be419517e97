"""Masks of the pre-training objectives: rate, span, and where substituted frames come from."""

from __future__ import annotations

import pytest
import torch

from avsr.objectives.masking import (
    fill_embedding, mask_runs, span_mask, stream_mask, substitute_frames, zero_frames,
)


@pytest.mark.parametrize("prob,span", [(0.4, 3), (0.8, 10), (0.3, 5)])
def test_span_mask_rate_and_span(prob, span):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([400, 250, 97, 300])
    masks = [span_mask(lengths, 400, prob, span, g) for _ in range(50)]
    total = torch.stack(masks).sum().item()
    rate = total / (50 * lengths.sum().item())
    assert rate == pytest.approx(prob, abs=0.02)
    for m in masks:
        assert not m[1, 250:].any() and not m[2, 97:].any()  # never past a length
        # every maximal run is a whole number of spans (spans never overlap partially)
        for runs in mask_runs(m):
            assert all((e - s) % span == 0 for s, e in runs)


def test_span_mask_extremes():
    lengths = torch.tensor([10, 2])
    assert not span_mask(lengths, 10, 0.0, 3).any()
    full = span_mask(lengths, 10, 1.0, 2)
    assert full[0].all() and full[1, :2].all()
    with pytest.raises(ValueError, match="prob"):
        span_mask(lengths, 10, 1.5, 2)


def test_zero_frames_masks_video_frames_and_matching_audio_samples():
    video = torch.rand(2, 5, 1, 4, 4) + 1
    audio = torch.rand(2, 5 * 640) + 1
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3:] = True
    v, a = zero_frames(video, audio, mask)
    assert (v[0, 1] == 0).all() and (v[0, [0, 2, 3, 4]] > 0).all()
    assert (a[0, 640:1280] == 0).all() and (a[0, :640] > 0).all() and (a[0, 1280:] > 0).all()
    assert (a[1, 1920:] == 0).all() and (a[1, :1920] > 0).all()
    assert (video > 0).all()  # inputs untouched


@pytest.mark.parametrize("mode", ["same_seq", "same_other_seq"])
def test_substituted_video_frames_come_from_the_right_clip(mode):
    g = torch.Generator().manual_seed(3)
    batch, frames = 3, 40
    # every frame is unique: frame value = clip * 1000 + t
    video = (torch.arange(batch)[:, None] * 1000 + torch.arange(frames)[None]).float()
    video = video[:, :, None, None, None].expand(batch, frames, 1, 2, 2).clone()
    lengths = torch.tensor([40, 30, 25])
    mask = span_mask(lengths, frames, 0.3, 5, g)
    out = substitute_frames(video, lengths, mask, mode, g)
    assert torch.equal(out[~mask], video[~mask])  # unmasked frames untouched
    for b, runs in enumerate(mask_runs(mask)):
        for s, e in runs:
            vals = out[b, s:e, 0, 0, 0]
            clip = (vals // 1000).long()
            t = (vals % 1000).long()
            assert (clip == clip[0]).all() and torch.equal(t, t[0] + torch.arange(e - s))
            if mode == "same_seq":
                assert (clip == b).all()  # from the same clip ...
                assert not torch.equal(vals, video[b, s:e, 0, 0, 0])  # ... elsewhere
            else:
                assert (clip != b).all()
            assert (t < lengths[clip[0]]).all()  # never padding


def test_stream_mask_and_fill_embedding():
    g = torch.Generator().manual_seed(0)
    a, v = stream_mask(10000, 0.25, 0.25, g)
    assert not (a & v).any()
    assert a.float().mean() == pytest.approx(0.25, abs=0.02)
    assert v.float().mean() == pytest.approx(0.25, abs=0.02)
    x = torch.zeros(2, 3, 4, requires_grad=True)
    emb = torch.nn.Parameter(torch.ones(4))
    mask = torch.tensor([[True, False, False], [False, False, True]])
    y = fill_embedding(x, mask, emb)
    assert torch.equal(y[mask], torch.ones(2, 4)) and (y[~mask] == 0).all()
    y.sum().backward()
    assert emb.grad is not None and emb.grad.sum() == 8
