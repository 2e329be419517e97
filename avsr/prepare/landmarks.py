"""68-point face landmarks: reading the public files, filling gaps, smoothing, the mean face.

Landmark files mirror the video paths (``<landmarks>/<split>/<speaker>/<utt>.{pkl,npy}``):

- auto_avsr / AV-HuBERT / mpc001 form: a pickled list with one (68, 2) float array per frame,
  or ``None`` where no face was found (AV-HuBERT's ``detect_landmark.py``, mpc001's released
  LRS2/LRS3/VoxCeleb2 landmarks). Read with a restricted unpickler: no code in the file runs.
- ``.npy``: an array (T, 68, 2) with NaN rows for missing frames, or an object array as above.

Points are (x, y) pixel coordinates with pixel centres at integers (iBUG 68-point order:
jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "MEAN_FACE_SIZE", "MOUTH", "STABLE_POINTS", "mean_face", "read_landmarks",
    "interpolate_landmarks", "smooth_landmarks",
]

# auto_avsr's stable points (nose bridge/tip, eye corners, mouth corners), Ma et al. 2023;
# AV-HuBERT uses [33, 36, 39, 42, 45]
STABLE_POINTS = (28, 33, 36, 39, 42, 45, 48, 54)
MOUTH = slice(48, 68)
MEAN_FACE_SIZE = 256  # the mean face lives in a 256 x 256 frame, as in auto_avsr / AV-HuBERT


def _arc(cx: float, cy: float, ax: float, ay: float, angles: np.ndarray) -> np.ndarray:
    # image coordinates: y grows downwards, so "up" is -sin
    return np.stack([cx + ax * np.cos(angles), cy - ay * np.sin(angles)], axis=1)


def mean_face() -> np.ndarray:
    """avsr's canonical frontal face: (68, 2) float64 in a 256 x 256 frame.

    mpc001's ``20words_mean_face.npy`` (used by auto_avsr, AV-HuBERT) cannot be shipped, so
    avsr defines its own, by construction: face centred at x = 128, eye corners at y = 100
    (outer 36/45 at x = 80/176, inner 39/42 at 110/146: inter-ocular 96 px), nose tip 33 at
    (128, 150), mouth corners 48/54 at (100, 188)/(156, 188) and the 20 mouth points (48-67)
    on two symmetric ellipses whose mean is exactly (128, 188), so a 96 x 96 crop around the
    mouth is the window x 80..175, y 140..235. Any (68, 2) array in the same frame can replace
    it (``--mean-face FILE.npy``, e.g. the original ``20words_mean_face.npy``).
    """
    pts = np.zeros((68, 2))
    pts[0:17] = _arc(128, 100, 72, 136, np.linspace(math.pi, 2 * math.pi, 17))  # jaw, chin 236
    pts[17:22] = np.stack([np.linspace(70, 116, 5), [84, 78, 76, 78, 82]], axis=1)  # brows
    pts[22:27] = np.stack([np.linspace(140, 186, 5), [82, 78, 76, 78, 84]], axis=1)
    pts[27:31] = np.stack([np.full(4, 128.0), np.linspace(102, 138, 4)], axis=1)  # bridge
    pts[31:36] = np.stack([np.linspace(112, 144, 5), [156, 158, 160, 158, 156]], axis=1)
    pts[33] = (128, 150)  # nose tip
    for first, (x0, x1) in ((36, (80, 110)), (42, (146, 176))):  # eyes: corners + lids
        cx, ax = (x0 + x1) / 2, (x1 - x0) / 2
        eye = _arc(cx, 100, ax, 6, np.array([math.pi, 2 * math.pi / 3, math.pi / 3, 0.0,
                                             -math.pi / 3, -2 * math.pi / 3]))
        pts[first:first + 6] = eye
    pts[48:60] = _arc(128, 188, 28, 12, math.pi - np.arange(12) * math.pi / 6)  # 48 .. 59
    pts[60:68] = _arc(128, 188, 18, 5, math.pi - np.arange(8) * math.pi / 4)  # 60 .. 67
    return pts


def _as_frames(obj: object, path: Path) -> list[np.ndarray | None]:
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        if obj.ndim != 3 or obj.shape[1:] != (68, 2):
            raise ValueError(f"{path}: landmarks must be (T, 68, 2), got {obj.shape}")
        return [None if not np.isfinite(f).all() else f.astype(np.float64) for f in obj]
    if isinstance(obj, np.ndarray):
        obj = list(obj)
    if not isinstance(obj, (list, tuple)):
        raise ValueError(f"{path}: expected a list of per-frame landmarks, got {type(obj)}")
    frames: list[np.ndarray | None] = []
    for i, f in enumerate(obj):
        if f is None:
            frames.append(None)
            continue
        a = np.asarray(f, dtype=np.float64)
        if a.ndim == 3 and a.shape[0] >= 1:  # several faces: the first (largest) one
            a = a[0]
        if a.shape != (68, 2):
            raise ValueError(f"{path}: frame {i} landmarks have shape {a.shape}, not (68, 2)")
        frames.append(a if np.isfinite(a).all() else None)
    return frames


def read_landmarks(path: str | Path) -> list[np.ndarray | None]:
    """Read a landmark file: one (68, 2) array per frame, None where no face was found.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a landmark file of a known form.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    from avsr.convert import unpickler  # pickles (and object .npy) run no code from the file

    with path.open("rb") as f:
        if path.suffix != ".npy":
            return _as_frames(unpickler.load(f), path)
        major, _ = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        if dtype != object:
            f.seek(0)
            return _as_frames(np.load(f, allow_pickle=False), path)
        obj = unpickler.load(f)
    return _as_frames(obj if not shape else np.asarray(obj, dtype=object).reshape(shape), path)


def interpolate_landmarks(frames: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Fill frames without landmarks: linear in time between detections, the nearest
    detection before the first / after the last one (as auto_avsr and AV-HuBERT do).

    Returns:
        (T, 68, 2) float64, or None when no frame has landmarks.
    """
    found = [i for i, f in enumerate(frames) if f is not None]
    if not found:
        return None
    t = np.arange(len(frames))
    known = np.stack([frames[i] for i in found]).reshape(len(found), -1)  # (K, 136)
    # np.interp holds the end values outside [first, last]: the nearest-detection rule
    out = np.stack([np.interp(t, found, known[:, j]) for j in range(known.shape[1])], axis=1)
    return out.reshape(len(frames), 68, 2)


def smooth_landmarks(landmarks: np.ndarray, window: int = 12) -> np.ndarray:
    """Average each frame's landmarks over a centred window, keeping the frame's own position.

    auto_avsr's rule (Ma et al. 2023, ``window_margin`` 12): frame t averages frames
    t - m .. t + m with m = min(window // 2, t, T - 1 - t), then the average is shifted so its
    centroid is frame t's centroid: shape jitter is smoothed, head motion is followed.

    Args:
        landmarks: (T, 68, 2).
        window: window length in frames (0 or 1: no smoothing).

    Returns:
        (T, 68, 2) float64.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2), got {landmarks.shape}")
    n = len(landmarks)
    if window <= 1 or n == 0:
        return landmarks.astype(np.float64)
    csum = np.concatenate([np.zeros((1, 68, 2)), np.cumsum(landmarks, axis=0, dtype=np.float64)])
    out = np.empty((n, 68, 2))
    for t in range(n):
        m = min(window // 2, t, n - 1 - t)
        avg = (csum[t + m + 1] - csum[t - m]) / (2 * m + 1)
        out[t] = avg + (landmarks[t].mean(axis=0) - avg.mean(axis=0))
    return out
