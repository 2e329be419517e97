"""Media input/output through PyAV: one mp4 (video + audio), or an mp4 with a sibling wav.

Video comes back as grayscale ``uint8`` frames, audio as 16 kHz mono ``float32``. Every failure
is a :class:`MediaError` that names the file and the problem, so datasets can count and report
skips instead of silently producing zeros.

A file cut at the tail whose index sits at the front (``movflags=faststart``) opens fine and
decodes only its first part; the loaders compare what they decoded with what the container
declares and raise ``truncated video`` / ``truncated audio`` instead of returning the part.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avsr.modalities import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

__all__ = [
    "MediaError",
    "SAMPLE_RATE",
    "FPS",
    "SAMPLES_PER_FRAME",
    "load_video",
    "load_audio",
    "probe",
    "write_mp4",
]

# Decoded frames may fall short of the container's count by this much without the file being
# cut: muxers and edit lists disagree with the decoder by a frame now and then.
MAX_MISSING_FRAMES = 2


class MediaError(RuntimeError):
    """A media file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def probe(path: str | Path) -> dict:
    """Return stream facts of a media file without decoding it.

    Returns:
        dict with ``has_video``, ``has_audio``, ``fps`` (float or None), ``num_frames``
        (int or None, from the container), ``sample_rate`` (int or None), ``duration`` (s).
    """
    try:
        with av.open(str(path)) as container:
            v = container.streams.video[0] if container.streams.video else None
            a = container.streams.audio[0] if container.streams.audio else None
            duration = float(container.duration / av.time_base) if container.duration else None
            return {
                "has_video": v is not None,
                "has_audio": a is not None,
                "fps": float(v.average_rate) if v is not None and v.average_rate else None,
                "num_frames": int(v.frames) if v is not None and v.frames else None,
                "sample_rate": int(a.rate) if a is not None else None,
                "duration": duration,
            }
    except (av.error.FFmpegError, OSError) as e:  # pragma: no cover - depends on ffmpeg text
        raise MediaError(path, f"cannot open ({e})") from e


# Limited-range (MPEG) luma 16..235 to full-range gray 0..255: the same values as FFmpeg's
# yuv->gray conversion (checked in tests), as a table lookup instead of a swscale call.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_PLANAR_YUV = {"yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuvj422p", "yuvj444p"}


def _gray(frame: av.VideoFrame) -> np.ndarray:
    """Grayscale (H, W) uint8 of a decoded frame; planar YUV takes the luma plane directly."""
    name = frame.format.name
    if name in _PLANAR_YUV:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
        full_range = name.startswith("yuvj") or frame.color_range == 2  # 2 = AVCOL_RANGE_JPEG
        return y.copy() if full_range else _LIMITED_TO_FULL[y]
    return frame.to_ndarray(format="gray")


def _declared_frames(stream: av.video.stream.VideoStream) -> int | None:
    """Frames the container says the video stream holds: its frame count, else its duration
    times its rate; None when it says neither (then there is nothing to compare with)."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and stream.average_rate:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    return None


def load_video(path: str | Path, expected_fps: float | None = FPS, fps_tolerance: float = 0.5,
               *, max_missing_frames: int | None = MAX_MISSING_FRAMES) -> torch.Tensor:
    """Decode every video frame of ``path`` to grayscale.

    Args:
        path: media file with a video stream.
        expected_fps: frame rate the pipeline requires (25 for LRS2/LRS3); ``None`` skips the
            check. Mouth-ROI models are trained at 25 fps, so another rate is an error, not
            something to resample silently.
        fps_tolerance: allowed deviation from ``expected_fps``.
        max_missing_frames: how many fewer frames than the container declares may decode
            before the file counts as truncated; None: no check.

    Returns:
        Tensor of shape (T, H, W), dtype uint8.

    Raises:
        MediaError: the file is missing, unreadable, truncated (fewer frames decode than the
            container declares), has no video stream, the wrong frame rate or no decodable
            frame.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else None
            if expected_fps is not None and rate is not None and abs(rate - expected_fps) > fps_tolerance:
                raise MediaError(path, f"video is {rate:.2f} fps, expected {expected_fps}")
            stream.thread_type = "AUTO"
            declared = _declared_frames(stream)
            for frame in container.decode(stream):
                frames.append(_gray(frame))
    except MediaError:
        raise
    except av.error.InvalidDataError as e:  # e.g. an mp4 cut short: its index is missing
        raise MediaError(path, f"corrupt or truncated file ({e})") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(path, f"video decoding failed ({e})") from e
    if not frames:
        raise MediaError(path, "no decodable video frame")
    if (max_missing_frames is not None and declared is not None
            and len(frames) < declared - max_missing_frames):
        # the problem's text before " (" is the skip report's category: keep counts out of it
        raise MediaError(path, f"truncated video (decoded {len(frames)} of {declared} frames "
                               "the container declares)")
    return torch.from_numpy(np.stack(frames))


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, *,
               max_missing_s: float | None = MAX_MISSING_FRAMES / FPS) -> torch.Tensor:
    """Decode the first audio stream of ``path`` to mono float at ``sample_rate``.

    Resampling and down-mixing go through FFmpeg's resampler (PyAV ``AudioResampler``).

    Args:
        path: media file with an audio stream (mp4, wav, ...).
        sample_rate: output rate.
        max_missing_s: how much shorter than the stream's declared duration the decoded audio
            may be, plus one codec frame (a cut file ends on a whole packet), before the file
            counts as truncated; None: no check. Streams without a declared duration (and WAV,
            whose demuxer derives it from the file size) are not checked.

    Returns:
        Tensor of shape (S,), dtype float32, values in [-1, 1].

    Raises:
        MediaError: missing file, no audio stream, truncated stream, decoding failure or zero
            samples.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "no audio stream")
            stream = container.streams.audio[0]
            declared_s = (float(stream.duration * stream.time_base)
                          if stream.duration and stream.time_base else None)
            codec_frame_s = (stream.codec_context.frame_size or 0) / (stream.rate or sample_rate)
            decoded_s = 0.0
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                decoded_s += frame.samples / (frame.sample_rate or sample_rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except av.error.InvalidDataError as e:  # e.g. an mp4 cut short: its index is missing
        raise MediaError(path, f"corrupt or truncated file ({e})") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(path, f"audio decoding failed ({e})") from e
    if not chunks or sum(c.size for c in chunks) == 0:
        raise MediaError(path, "zero-length audio")
    if (max_missing_s is not None and declared_s is not None
            and decoded_s < declared_s - max_missing_s - codec_frame_s):
        raise MediaError(path, f"truncated audio (decoded {decoded_s:.2f} s of {declared_s:.2f} s "
                               "the container declares)")
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32, copy=False))


def write_mp4(
    path: str | Path,
    video: np.ndarray | torch.Tensor | None,
    audio: np.ndarray | torch.Tensor | None = None,
    *,
    fps: int = FPS,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
    audio_bitrate: int = 96000,
) -> None:
    """Write an mp4 with an H.264 video stream and/or an AAC audio stream.

    The file is written to a temporary name and renamed, so an interrupted writer never leaves
    a half-written mp4 under the final name.

    Args:
        path: output ``.mp4``.
        video: (T, H, W) grayscale or (T, H, W, 3) RGB uint8 frames; H and W must be even.
        audio: (S,) mono float in [-1, 1] at ``sample_rate``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if isinstance(video, torch.Tensor):
        video = video.cpu().numpy()
    if isinstance(audio, torch.Tensor):
        audio = audio.cpu().numpy()
    if video is None and audio is None:
        raise ValueError("write_mp4 needs video, audio or both")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        vstream = astream = None
        if video is not None:
            if video.ndim not in (3, 4) or video.shape[1] % 2 or video.shape[2] % 2:
                raise ValueError(f"video must be (T, H, W[, 3]) with even H, W; got {video.shape}")
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height = int(video.shape[2]), int(video.shape[1])
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(crf), "preset": "veryfast", "tune": "fastdecode"}
            vstream.codec_context.time_base = Fraction(1, fps)
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
            astream.bit_rate = audio_bitrate
        if vstream is not None:
            fmt = "gray" if video.ndim == 3 else "rgb24"
            for i, img in enumerate(np.ascontiguousarray(video, dtype=np.uint8)):
                frame = av.VideoFrame.from_ndarray(img, format=fmt)
                frame.pts = i
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(1, -1), -1.0, 1.0)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    tmp.replace(path)
