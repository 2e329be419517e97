"""Video and audio transforms: crops, flip, normalisation, time masking."""

from __future__ import annotations

import pytest
import torch

from avsr.data.transforms import (
    VIDEO_MEAN,
    VIDEO_STD,
    AudioTransform,
    VideoTransform,
    adaptive_time_mask,
)


def _video(t: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, 96, 96), dtype=torch.uint8, generator=g)


def test_train_crop_size_and_randomness() -> None:
    tf = VideoTransform(crop_size=88, train=True, generator=torch.Generator().manual_seed(1))
    outs = [tf(_video()) for _ in range(4)]
    assert all(o.shape == (30, 1, 88, 88) and o.dtype == torch.float32 for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_eval_centre_crop_is_deterministic_and_normalised() -> None:
    v = _video()
    tf = VideoTransform(crop_size=88, train=False)
    out = tf(v)
    expected = (v[:, 4:92, 4:92].float() / 255.0 - VIDEO_MEAN) / VIDEO_STD
    torch.testing.assert_close(out[:, 0], expected)
    assert torch.equal(out, tf(v))
    assert (VIDEO_MEAN, VIDEO_STD) == (0.421, 0.165)


def test_flip() -> None:
    v = _video(5)
    crop = dict(crop_size=96, time_mask_max_frames=0)  # full-frame crop isolates the flip
    flipped = VideoTransform(train=True, flip_prob=1.0, **crop)(v)
    plain = VideoTransform(train=True, flip_prob=0.0, **crop)(v)
    assert torch.equal(flipped, plain.flip(-1))
    assert torch.equal(plain, VideoTransform(train=False, crop_size=96)(v))


def test_seeded_generator_reproduces() -> None:
    a = VideoTransform(train=True, generator=torch.Generator().manual_seed(3))(_video())
    b = VideoTransform(train=True, generator=torch.Generator().manual_seed(3))(_video())
    assert torch.equal(a, b)


def test_time_mask_draws_one_length_per_mask() -> None:
    x = torch.ones(40, 3)
    for seed in range(50):
        # stride >= T: exactly one mask, which must be one contiguous span of <= 7 steps
        out = adaptive_time_mask(x, 7, 40, torch.Generator().manual_seed(seed))
        zero = (out == 0).all(dim=1).nonzero().flatten()
        assert (out[:, 0] == 0).sum() <= 7
        if zero.numel():
            assert zero[-1] - zero[0] + 1 == zero.numel()
    assert torch.equal(adaptive_time_mask(x, 0, 10), x)
    # adaptive: ceil(T / stride) masks of <= 3 steps
    out = adaptive_time_mask(torch.ones(100), 3, 25, torch.Generator().manual_seed(0))
    assert (out == 0).sum() <= 4 * 3
    assert torch.equal(x, torch.ones(40, 3))  # input untouched


def test_video_time_mask_zeroes_normalised_frames() -> None:
    tf = VideoTransform(train=True, flip_prob=0.0, time_mask_max_frames=25, time_mask_stride=25,
                        generator=torch.Generator().manual_seed(0))
    out = tf(torch.full((50, 96, 96), 200, dtype=torch.uint8))
    masked = (out == 0).flatten(1).all(dim=1)
    assert 0 < masked.sum() <= 50


def test_audio_transform() -> None:
    audio = 3.0 + 0.5 * torch.randn(32000, generator=torch.Generator().manual_seed(0))
    out = AudioTransform(train=False)(audio)
    assert out.shape == audio.shape
    assert abs(out.mean().item()) < 1e-4 and abs(out.std(unbiased=False).item() - 1) < 1e-3
    masked = AudioTransform(train=True, time_mask_max_samples=8000,
                            generator=torch.Generator().manual_seed(2))(audio)
    assert 0 < (masked == 0).sum() <= 2 * 8000
    assert torch.equal(AudioTransform(normalize=False)(audio), audio)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="smaller than crop"):
        VideoTransform(crop_size=88)(torch.zeros(3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        VideoTransform()(torch.zeros(3, 1, 96, 96))
    with pytest.raises(ValueError, match=r"\(S,\)"):
        AudioTransform()(torch.zeros(2, 100))


def test_video_output_size_area_resamples_the_crop():
    from avsr.data.transforms import VideoTransform

    video = torch.randint(0, 256, (5, 96, 96), dtype=torch.uint8)
    full = VideoTransform(train=False, crop_size=88)(video)
    small = VideoTransform(train=False, crop_size=88, output_size=44)(video)
    assert small.shape == (5, 1, 44, 44)
    # area resampling by 2 = the mean of each 2x2 block of the normalised crop
    expected = full.reshape(5, 1, 44, 2, 44, 2).mean(dim=(3, 5))
    assert torch.allclose(small, expected, atol=1e-5)
    with pytest.raises(ValueError, match="output_size"):
        VideoTransform(crop_size=88, output_size=96)


@pytest.mark.parametrize("output_size", [44, 40])
def test_output_size_equals_area_interpolation_of_normalised_crop(output_size):
    from avsr.data.transforms import VideoTransform

    video = torch.randint(0, 256, (5, 96, 96), dtype=torch.uint8)
    t = VideoTransform(train=False, crop_size=88, output_size=output_size)
    full = VideoTransform(train=False, crop_size=88)(video)  # (T, 1, 88, 88) normalised
    ref = torch.nn.functional.interpolate(full, size=(output_size, output_size), mode="area")
    assert torch.allclose(t(video), ref, atol=1e-5)
