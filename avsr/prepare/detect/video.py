"""Read any video as RGB (for the detectors) and gray (for the crop) frames at 25 fps.

:func:`avsr.data.io.load_video` gives gray frames only; detectors need colour. Both come from
one decode here; the gray frames are the same pixels ``load_video`` gives (the luma plane),
so a detected clip is cropped from exactly the frames a clip with landmark files is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avsr.data.io import FPS, MediaError, _gray

__all__ = ["ClipFrames", "iter_rgb_gray", "read_rgb_gray", "resample_indices"]


@dataclass
class ClipFrames:
    """Frames of a clip resampled to 25 fps.

    Attributes:
        rgb: (T, H, W, 3) uint8.
        gray: (T, H, W) uint8.
        source_fps: the file's frame rate (25.0 when it declares none).
    """

    rgb: np.ndarray
    gray: np.ndarray
    source_fps: float


def resample_indices(num_frames: int, fps: float, target: float = FPS) -> np.ndarray:
    """Source frame shown at every ``target``-fps instant (nearest frame), as
    :func:`avsr.prepare.pipeline._read_frames` resamples: (N,) int64."""
    if abs(fps - target) <= 0.01:
        return np.arange(num_frames)
    n = int(num_frames * target / fps)
    return np.minimum(np.round(np.arange(n) * fps / target).astype(np.int64), num_frames - 1)


def iter_rgb_gray(path: str | Path) -> tuple[float, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The file's frame rate and a stream of (rgb (H, W, 3), gray (H, W)) uint8 frames
    resampled to 25 fps, decoded one at a time (a long clip is never held in RGB at once).

    The frames are those of :func:`resample_indices`: output frame k shows source frame
    min(round(k * fps / 25), N - 1), N frames in, int(N * 25 / fps) out.

    Raises:
        MediaError: missing, unreadable, no video stream (at the call), or decoding failed /
            no decodable frame (while iterating).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(path, f"cannot open ({e})") from e
    if not container.streams.video:
        container.close()
        raise MediaError(path, "no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else float(FPS)
    same = abs(fps - FPS) <= 0.01

    def frames() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        k, n_in, emitted, last = 0, 0, 0, None
        # output instants k waiting to be known inside the clip: k < int(N * 25 / fps) as
        # resample_indices counts them, and N is only known at the end (it only grows)
        pending: list[tuple[int, tuple[np.ndarray, np.ndarray]]] = []
        try:
            with container:
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    n_in = i + 1
                    last = (frame.to_ndarray(format="rgb24"), _gray(frame))
                    if same:
                        emitted += 1
                        yield last
                        continue
                    while round(k * fps / FPS) == i:  # nondecreasing in k: stream order
                        pending.append((k, last))
                        k += 1
                    limit = int(n_in * FPS / fps)
                    while pending and pending[0][0] < limit:
                        emitted += 1
                        yield pending.pop(0)[1]
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise MediaError(path, f"video decoding failed ({e})") from e
        if last is None:
            raise MediaError(path, "no decodable video frame")
        n_out = n_in if same else int(n_in * FPS / fps)
        for _ in range(n_out - emitted):  # instants past the last frame: min(..., N - 1)
            yield last

    return fps, frames()


def read_rgb_gray(path: str | Path) -> ClipFrames:
    """Decode every frame of ``path`` (any rate, any size) and resample it to 25 fps.

    Raises:
        MediaError: missing, unreadable, no video stream or no decodable frame (or none left
            at 25 fps).
    """
    fps, frames = iter_rgb_gray(path)
    both = list(frames)
    if not both:
        raise MediaError(path, f"no frame at {FPS} fps (a clip shorter than one frame)")
    rgb, gray = zip(*both)
    return ClipFrames(np.stack(rgb), np.stack(gray), fps)
