import av
import numpy as np
import pytest
import torch

from avsr.data.io import MediaError, load_audio, load_video, probe, write_mp4


def test_fast_gray_equals_ffmpeg_gray(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "c.mp4"
    write_mp4(path, rgb, None)
    ours = load_video(path).numpy()
    with av.open(str(path)) as c:
        ref = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
    assert ours.shape == (6, 32, 48)
    assert np.array_equal(ours, ref)


def test_roundtrip_lengths_and_probe(tmp_path):
    video = np.full((10, 16, 16), 128, np.uint8)
    audio = np.zeros(6400, np.float32)
    path = tmp_path / "a.mp4"
    write_mp4(path, video, audio)
    assert load_video(path).shape == (10, 16, 16)
    assert load_audio(path).shape[0] >= 6400
    info = probe(path)
    assert info["fps"] == 25 and info["has_audio"] and info["num_frames"] == 10


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(MediaError, match="bad.mp4"):
        load_video(bad)
    with pytest.raises(MediaError, match="file not found"):
        load_audio(tmp_path / "missing.mp4")
    silent = tmp_path / "silent.mp4"
    write_mp4(silent, np.zeros((4, 16, 16), np.uint8), None)
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(silent)
    wrong_rate = tmp_path / "rate.mp4"
    write_mp4(wrong_rate, np.zeros((4, 16, 16), np.uint8), None, fps=30)
    with pytest.raises(MediaError, match="30.00 fps"):
        load_video(wrong_rate)
    assert torch.is_tensor(load_video(wrong_rate, expected_fps=None))
