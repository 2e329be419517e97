"""MediaPipe backend: face detection to find the face, the face mesh for its landmarks.

auto_avsr's preparation (Ma et al., ICASSP 2023, ``preparation/detectors/mediapipe``) runs
MediaPipe face detection with the full-range model (``model_selection=1``) and, where it finds
nothing, the short-range model (``model_selection=0``). auto_avsr keeps only the detector's
6 key points; the crop here needs the 68-point scheme, so the face mesh (468 points, legacy
``mediapipe.solutions`` API, models inside the wheel) is run on a square window around the
detected face and mapped to 68 points with :data:`~avsr.prepare.detect.mesh68.MESH_TO_68`.

Tracking: where both detection models miss a frame, the previous frame's face window is
reused for the mesh (faces move little in 40 ms); the mesh's own face check then decides
whether the face is still there. Frames still without a face are left None and filled by
:func:`~avsr.prepare.landmarks.interpolate_landmarks` (auto_avsr's rule).
"""

from __future__ import annotations

import numpy as np

from avsr.prepare.detect.base import largest_box
from avsr.prepare.detect.mesh68 import MESH_TO_68

__all__ = ["MediaPipeDetector"]


class MediaPipeDetector:
    """68-point landmarks from MediaPipe face detection + face mesh.

    Args:
        min_detection_confidence: face detection threshold (auto_avsr: 0.5).
        window_scale: side of the mesh window / the larger side of the detected box. The
            detector's box is tight (brows to chin); the mesh wants the whole head with some
            margin, as its own detector would give it.
        track: reuse the last face window where detection misses a frame.
    """

    name = "mediapipe"

    def __init__(self, min_detection_confidence: float = 0.5, window_scale: float = 2.0,
                 track: bool = True) -> None:
        from mediapipe.python.solutions import face_detection, face_mesh

        # full range (faces up to 5 m) first, short range (within 2 m) as the fallback
        self._detectors = [
            face_detection.FaceDetection(model_selection=m,
                                         min_detection_confidence=min_detection_confidence)
            for m in (1, 0)]
        # static_image_mode: each window on its own, so the result of a frame does not depend
        # on how many frames came before it (reproducible, resumable)
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                        refine_landmarks=False, min_detection_confidence=0.5)
        self.window_scale = window_scale
        self.track = track

    def _box(self, frame: np.ndarray) -> tuple[float, float, float, float] | None:
        """Largest face box (x0, y0, x1, y1) in pixels, or None."""
        h, w = frame.shape[:2]
        for det in self._detectors:
            found = det.process(frame).detections
            if found:
                boxes = []
                for d in found:
                    b = d.location_data.relative_bounding_box
                    boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w,
                                  (b.ymin + b.height) * h))
                return boxes[largest_box(boxes)]
        return None

    def _window(self, box: tuple[float, float, float, float]) -> tuple[int, int, int]:
        """Square window (x0, y0, side) around a face box."""
        x0, y0, x1, y1 = box
        side = max(16, int(round(self.window_scale * max(x1 - x0, y1 - y0))))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return int(round(cx - side / 2)), int(round(cy - side / 2)), side

    def _mesh68(self, frame: np.ndarray, window: tuple[int, int, int]) -> np.ndarray | None:
        x0, y0, side = window
        h, w = frame.shape[:2]
        patch = np.zeros((side, side, 3), np.uint8)  # black outside the frame
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
        result = self._mesh.process(patch).multi_face_landmarks
        if not result:
            return None
        lm = result[0].landmark
        pts = np.array([(lm[i].x, lm[i].y) for i in MESH_TO_68], dtype=np.float64)
        # normalised coordinates count from the patch's corner (pixel edges): - 0.5 puts
        # pixel centres at integers, the convention of the landmark files and of dlib
        return pts * side - 0.5 + np.array([x0, y0], dtype=np.float64)

    def detect(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """See :meth:`LandmarkDetector.detect`: (T, H, W, 3) uint8 RGB -> T x (68, 2) | None."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got {frames.shape}")
        out: list[np.ndarray | None] = []
        last: tuple[int, int, int] | None = None
        for frame in np.ascontiguousarray(frames, dtype=np.uint8):
            box = self._box(frame)
            window = self._window(box) if box is not None else (last if self.track else None)
            pts = self._mesh68(frame, window) if window is not None else None
            if pts is not None:
                # the next frame's fallback window follows the mesh, not the stale box
                last = self._window((*pts.min(axis=0), *pts.max(axis=0))) \
                    if box is None else window
            out.append(pts)
        return out

    def close(self) -> None:
        """Free the MediaPipe graphs."""
        for d in self._detectors:
            d.close()
        self._mesh.close()
