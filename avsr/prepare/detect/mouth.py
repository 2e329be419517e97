"""Any video -> 96 x 96 mouth crops at 25 fps, detecting the landmarks on the way.

The same steps as a clip with landmark files in :mod:`avsr.prepare.pipeline` (auto_avsr's
recipe): detect per frame, fill missed frames by linear interpolation, smooth over 12
frames, warp to the mean face and cut the mouth (:func:`~avsr.prepare.crop.crop_mouths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from avsr.data.io import FPS, MediaError
from avsr.prepare.crop import crop_mouths
from avsr.prepare.detect.base import LandmarkDetector, NoFaceError
from avsr.prepare.detect.registry import make_detector
from avsr.prepare.detect.video import iter_rgb_gray
from avsr.prepare.landmarks import interpolate_landmarks, mean_face, smooth_landmarks

__all__ = ["MIN_FACE_FRACTION", "MouthCrops", "get_detector", "detect_video",
           "crops_from_landmarks", "mouth_crops_from_video"]

MIN_FACE_FRACTION = 0.5  # as PrepareOptions.min_landmark_fraction: below it, no crop is guessed


@dataclass
class MouthCrops:
    """The mouth crops of a clip and how they were placed.

    Attributes:
        crops: (T, S, S) uint8 gray mouth crops at 25 fps (S = crop_size).
        landmarks: (T, 68, 2) float64 landmarks used for the crop (interpolated, smoothed), in
            the pixels of the source frames.
        found: (T,) bool, whether the detector found the face in the frame.
        source_fps: frame rate of the file (frames were resampled to 25 fps).
        fps: frame rate of ``crops`` (25).
    """

    crops: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    source_fps: float
    fps: float = float(FPS)


@lru_cache(maxsize=4)
def _cached(name: str) -> LandmarkDetector:
    # building a detector loads its models (~1 s): once per process and name
    return make_detector(name)


def get_detector(detector: str | LandmarkDetector) -> LandmarkDetector:
    """A detector object: ``detector`` itself, or the process's cached one of that name."""
    return _cached(detector) if isinstance(detector, str) else detector


def detect_video(path: str | Path, detector: str | LandmarkDetector = "mediapipe", *,
                 chunk: int = 250) -> tuple[np.ndarray, list[np.ndarray | None], float]:
    """Decode ``path`` at 25 fps and detect landmarks ``chunk`` frames at a time.

    Only the gray frames are kept whole; RGB frames live one chunk at a time (a 3-minute
    224 x 224 clip would hold 680 MB of RGB otherwise). A detector's tracking state (the
    MediaPipe fallback window) restarts at each chunk, every 10 s by default.

    Returns:
        gray (T, H, W) uint8 frames, T landmark entries ((68, 2) or None), the source fps.

    Raises:
        avsr.data.io.MediaError: the file cannot be read as video or has no frame at 25 fps.
    """
    det = get_detector(detector)
    fps, frames = iter_rgb_gray(path)
    gray: list[np.ndarray] = []
    marks: list[np.ndarray | None] = []
    rgb: list[np.ndarray] = []
    for colour, g in frames:
        rgb.append(colour)
        gray.append(g)
        if len(rgb) == chunk:
            marks += det.detect(np.stack(rgb))
            rgb = []
    if rgb:
        marks += det.detect(np.stack(rgb))
    if not gray:
        raise MediaError(path, f"no frame at {FPS} fps (a clip shorter than one frame)")
    return np.stack(gray), marks, fps


def crops_from_landmarks(
    gray: np.ndarray,
    marks: list[np.ndarray | None],
    *,
    path: str | Path = "<frames>",
    crop_size: int = 96,
    smooth_window: int = 12,
    min_face_fraction: float = MIN_FACE_FRACTION,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate, smooth and crop: the shared tail of detected and file landmarks.

    Args:
        gray: (T, H, W) uint8 frames.
        marks: T entries, (68, 2) or None (shorter lists are padded with None).
        path: the file named by :class:`NoFaceError`.

    Returns:
        crops (T, S, S) uint8, dense landmarks (T, 68, 2), found mask (T,) bool.

    Raises:
        NoFaceError: landmarks in no frame or in fewer than ``min_face_fraction`` of them.
    """
    n = len(gray)
    marks = (list(marks) + [None] * n)[:n]  # a detector may have stopped a frame early
    found = np.array([m is not None for m in marks], dtype=bool)
    if n == 0 or not found.any() or found.sum() < min_face_fraction * n:
        raise NoFaceError(str(path), found.tolist(), min_face_fraction)
    dense = smooth_landmarks(interpolate_landmarks(marks), smooth_window)
    ref = reference if reference is not None else mean_face()
    return crop_mouths(gray, dense, ref, size=crop_size), dense, found


def mouth_crops_from_video(
    path: str | Path,
    detector: str | LandmarkDetector = "mediapipe",
    crop_size: int = 96,
    *,
    min_face_fraction: float = MIN_FACE_FRACTION,
    smooth_window: int = 12,
    reference: np.ndarray | None = None,
) -> MouthCrops:
    """Mouth crops of any video: any frame rate (nearest-frame resampled to 25 fps), any size.

    Args:
        path: a video file PyAV can decode.
        detector: a registry name (``"mediapipe"``, ``"dlib"``) or a detector object.
        crop_size: side of the square crops (96).
        min_face_fraction: fewest frames with a face, as a fraction, to crop at all.
        smooth_window: landmark smoothing window in frames (auto_avsr: 12).
        reference: (68, 2) mean face in a 256 x 256 frame (default avsr's).

    Returns:
        :class:`MouthCrops`.

    Raises:
        avsr.data.io.MediaError: the file cannot be read as video.
        NoFaceError: no face, or too few frames with one (names the file and the frames).
    """
    gray, marks, fps = detect_video(path, detector)
    crops, dense, found = crops_from_landmarks(
        gray, marks, path=path, crop_size=crop_size, smooth_window=smooth_window,
        min_face_fraction=min_face_fraction, reference=reference)
    return MouthCrops(crops, dense, found, fps)
