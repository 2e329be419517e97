"""The landmark-detector contract shared by every backend, and the "no face" error.

A detector turns RGB frames into 68-point landmarks in the iBUG order that
:mod:`avsr.prepare.landmarks` documents (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer
lips 48-59, inner lips 60-67), x/y in pixels with pixel centres at integers, so detected
landmarks and the public landmark files (auto_avsr, AV-HuBERT, mpc001) go through the same
interpolation, smoothing and crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LandmarkDetector", "NoFaceError", "frame_ranges", "largest_box"]


@runtime_checkable
class LandmarkDetector(Protocol):
    """Finds one face per frame and returns its 68 landmarks.

    Attributes:
        name: the registry name (``"mediapipe"``, ``"dlib"``), recorded in summaries.
    """

    name: str

    def detect(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """Landmarks of the largest (most prominent) face of every frame.

        Args:
            frames: (T, H, W, 3) uint8 RGB frames of one clip, in order (a detector may
                track the face from frame to frame, so the order matters).

        Returns:
            T entries: a (68, 2) float64 array (x, y pixels, iBUG order) or None where no
            face was found.
        """
        ...


class NoFaceError(ValueError):
    """No face, or a face in too few frames, to crop a clip; names the file and frames."""

    def __init__(self, path: str, found: Sequence[bool], min_fraction: float) -> None:
        self.path = str(path)
        self.missing = frame_ranges([not f for f in found])
        n, k = len(found), int(sum(found))
        what = "no face in any frame" if k == 0 else (
            f"a face in only {k} of {n} frames (needs {min_fraction:.0%})")
        super().__init__(f"{path}: {what}; frames without a face: {self.missing or 'none'}")


def frame_ranges(mask: Sequence[bool]) -> str:
    """Runs of True as inclusive ranges, e.g. ``[1, 1, 0, 1] -> "0-1, 3"``."""
    runs, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append(f"{start}" if i - 1 == start else f"{start}-{i - 1}")
            start = None
    return ", ".join(runs)


def largest_box(boxes: Sequence[tuple[float, float, float, float]]) -> int | None:
    """Index of the largest (x0, y0, x1, y1) box, None for no box.

    Why the largest: in talking-head corpora (LRS2/LRS3/VoxCeleb2) the speaker is the
    prominent face; a small background face must not steal the crop.
    """
    if not boxes:
        return None
    areas = [max(0.0, x1 - x0) * max(0.0, y1 - y0) for x0, y0, x1, y1 in boxes]
    return int(np.argmax(areas))
