"""dlib backend: AV-HuBERT's face detection and 68-point shape predictor.

AV-HuBERT's ``preparation/detect_landmark.py`` (Shi et al., ICLR 2022) converts each frame to
gray, runs dlib's HOG frontal face detector upsampling the frame once (``detector(gray, 1)``:
LRS3 faces are small), falls back to the CNN (MMOD) face detector ``mmod_human_face_detector``
where HOG finds nothing, and runs ``shape_predictor_68_face_landmarks`` in the face box.
That is ``mode="avhubert"``, the default. ``mode="cnn"`` runs the MMOD detector on every
frame (upsampled once; ~1 s per 176 x 144 frame on one CPU core, far slower than HOG) and
``mode="hog"`` HOG only.

The model files come from the ``face_recognition_models`` wheel; its ``__init__`` imports
``pkg_resources``, so the files are located through the import system without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from avsr.prepare.detect.base import largest_box

__all__ = ["DlibDetector", "dlib_model_dir"]

MODES = ("avhubert", "cnn", "hog")


def dlib_model_dir() -> Path:
    """Folder holding ``shape_predictor_68_face_landmarks.dat`` / ``mmod_human_face_detector.dat``.

    Raises:
        FileNotFoundError: ``face_recognition_models`` is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib models not found: install face_recognition_models "
                                "(pip install avsr[prepare])")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibDetector:
    """68-point landmarks from dlib (AV-HuBERT's recipe).

    Args:
        mode: ``"avhubert"`` (HOG, upsample 1; MMOD CNN where HOG misses), ``"cnn"`` (MMOD
            on every frame) or ``"hog"``.
        upsample: times each frame is upsampled before detection (AV-HuBERT: 1 for HOG).
        model_dir: folder with the ``.dat`` files (default: :func:`dlib_model_dir`).
    """

    name = "dlib"

    def __init__(self, mode: str = "avhubert", upsample: int = 1,
                 model_dir: str | Path | None = None) -> None:
        import dlib

        if mode not in MODES:
            raise ValueError(f"dlib mode must be one of {MODES}, got {mode!r}")
        d = Path(model_dir) if model_dir is not None else dlib_model_dir()
        self.mode, self.upsample = mode, upsample
        self._hog = dlib.get_frontal_face_detector() if mode != "cnn" else None
        self._cnn = (dlib.cnn_face_detection_model_v1(str(d / "mmod_human_face_detector.dat"))
                     if mode != "hog" else None)
        self._predictor = dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))

    def _rects(self, gray: np.ndarray) -> list:
        rects = list(self._hog(gray, self.upsample)) if self._hog is not None else []
        if not rects and self._cnn is not None:
            # AV-HuBERT calls the CNN without upsampling as a fallback; as the only detector
            # it is upsampled like HOG, or small faces are missed
            up = self.upsample if self.mode == "cnn" else 0
            rects = [d.rect for d in self._cnn(gray, up)]
        return rects

    def detect(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """See :meth:`LandmarkDetector.detect`: (T, H, W, 3) uint8 RGB -> T x (68, 2) | None."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got {frames.shape}")
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY that AV-HuBERT uses
        grays = np.round(frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                              np.float32)).astype(np.uint8)
        out: list[np.ndarray | None] = []
        for gray in grays:
            rects = self._rects(np.ascontiguousarray(gray))
            # AV-HuBERT keeps the last face dlib lists; the largest is the speaker more often
            best = largest_box([(r.left(), r.top(), r.right(), r.bottom()) for r in rects])
            if best is None:
                out.append(None)
                continue
            shape = self._predictor(gray, rects[best])
            out.append(np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)],
                                dtype=np.float64))
        return out
