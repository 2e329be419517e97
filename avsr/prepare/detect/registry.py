"""Detector names -> classes, so the CLI, configs and ``avsr.transcribe`` pick a backend by
name and a new backend is one :func:`register_detector` call."""

from __future__ import annotations

from collections.abc import Callable

from avsr.prepare.detect.base import LandmarkDetector

__all__ = ["DETECTORS", "make_detector", "register_detector"]

# name -> "module:Class", imported on use: mediapipe and dlib are heavy, optional imports
DETECTORS: dict[str, str | Callable[..., LandmarkDetector]] = {
    "mediapipe": "avsr.prepare.detect.mediapipe_detector:MediaPipeDetector",
    "dlib": "avsr.prepare.detect.dlib_detector:DlibDetector",
}


def register_detector(name: str, factory: str | Callable[..., LandmarkDetector]) -> None:
    """Add (or replace) a backend: a callable or a ``"module:Class"`` path."""
    DETECTORS[name] = factory


def make_detector(name: str, **kwargs) -> LandmarkDetector:
    """Build the detector registered as ``name`` with ``kwargs`` (e.g. ``mode="hog"``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown landmark detector {name!r}; known: {sorted(DETECTORS)}")
    factory = DETECTORS[name]
    if isinstance(factory, str):
        import importlib

        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)
