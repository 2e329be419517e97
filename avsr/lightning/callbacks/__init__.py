"""Training callbacks: exact resume, freezing parts, speed/memory logging, performance options."""

from avsr.lightning.callbacks.exact_resume import ExactResume
from avsr.lightning.callbacks.freeze import FreezeSchedule
from avsr.lightning.callbacks.performance import PerformanceOptions
from avsr.lightning.callbacks.speed_monitor import SpeedMonitor

__all__ = ["ExactResume", "FreezeSchedule", "PerformanceOptions", "SpeedMonitor"]
