"""Face landmark detection as a swappable part of the preparation (issue 18).

``mouth_crops_from_video(path, detector="mediapipe", crop_size=96)`` turns any video into
25 fps mouth crops; ``make_detector(name)`` builds a backend by name:

- ``"mediapipe"``: auto_avsr's face detection (full-range model, short-range fallback) +
  the face mesh mapped to 68 points (:mod:`.mediapipe_detector`, :mod:`.mesh68`);
- ``"dlib"``: AV-HuBERT's HOG / MMOD CNN face detector + 68-point shape predictor
  (:mod:`.dlib_detector`).

Backends import their libraries on first use, so importing this package is cheap.
"""

from avsr.prepare.detect.base import LandmarkDetector, NoFaceError, frame_ranges
from avsr.prepare.detect.mouth import (
    MIN_FACE_FRACTION,
    MouthCrops,
    crops_from_landmarks,
    detect_video,
    get_detector,
    mouth_crops_from_video,
)
from avsr.prepare.detect.registry import DETECTORS, make_detector, register_detector
from avsr.prepare.detect.video import ClipFrames, iter_rgb_gray, read_rgb_gray

__all__ = [
    "LandmarkDetector", "NoFaceError", "frame_ranges", "MIN_FACE_FRACTION", "MouthCrops",
    "crops_from_landmarks", "detect_video", "get_detector", "mouth_crops_from_video",
    "DETECTORS", "make_detector", "register_detector", "ClipFrames", "iter_rgb_gray",
    "read_rgb_gray",
]
