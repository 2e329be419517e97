"""What ``avsr.transcribe`` reads: media files, their streams, and mouth crops of raw face video.

- :func:`collect_media`: a file, a folder (``**/*.mp4``) or a list file.
- :func:`needs_crop` / :func:`mouth_crops_from_video`: a clip that is not a 96×96 mouth crop
  at 25 fps goes through face detection and cropping (:mod:`avsr.prepare.detect`).
- :func:`plan_modalities`: per file, the modality it can be decoded with (a file without the
  stream the modality needs falls back to the one it has, with a warning, or is an error).
- :func:`load_media`: the decoded streams, audio cut or padded to 640 samples per frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import av
import torch

from avsr.data.io import (
    FPS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    MediaError,
    load_audio,
    load_video,
    probe,
)

__all__ = ["STREAMS", "CROP_SIZE", "collect_media", "mouth_crops_from_video", "needs_crop",
           "plan_modalities", "Media", "load_media", "crop_path"]

log = logging.getLogger(__name__)

STREAMS = {"audio": ("audio",), "video": ("video",), "audiovisual": ("audio", "video")}
_LIST_SUFFIXES = {".txt", ".lst", ".list", ".scp"}
CROP_SIZE = 96  # stored mouth crops: 96×96 gray at 25 fps
MAX_AV_MISMATCH_S = 0.4


def collect_media(media: str | Path) -> list[Path]:
    """The media files named by ``media``: a file, a folder (``**/*.mp4``) or a list file."""
    path = Path(media).expanduser()
    if path.is_dir():
        files = sorted(path.rglob("*.mp4"))
        if not files:
            raise FileNotFoundError(f"media={path}: no .mp4 files in this folder")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"media={path}: no such file or folder")
    if path.suffix.lower() in _LIST_SUFFIXES:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        files = [Path(ln) if Path(ln).is_absolute() else path.parent / ln
                 for ln in lines if ln and not ln.startswith("#")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"media={path} lists missing files: {missing[:5]}")
        return files
    return [path]


def mouth_crops_from_video(path: str | Path, detector: str = "mediapipe",
                           crop_size: int = CROP_SIZE) -> Any:
    """Detect the face in every frame of ``path`` and crop the mouth: the hook to
    ``avsr.prepare.detect.mouth_crops_from_video``.

    Returns an object with ``crops`` ((T, crop_size, crop_size) uint8 at 25 fps),
    ``landmarks``, ``found`` and ``fps``. Raises ``NoFaceError`` (a ``ValueError`` naming the
    file and the frame ranges without a face); transcribe lets it through.
    """
    try:
        from avsr.prepare.detect import mouth_crops_from_video as detect
    except ImportError as e:
        raise RuntimeError(
            f"{path} is not a {crop_size}x{crop_size} mouth crop at {FPS} fps and needs face "
            f"detection, but avsr.prepare.detect cannot be imported ({e}; install the "
            "`prepare` extra); pass a mouth-crop clip, crop=never, or modality=audio") from e
    return detect(path, detector=detector, crop_size=crop_size)


def _video_geometry(path: Path) -> tuple[int, int, float | None]:
    """(width, height, fps) of the first video stream, without decoding."""
    try:
        with av.open(str(path)) as container:
            s = container.streams.video[0]
            rate = float(s.average_rate) if s.average_rate else None
            return int(s.codec_context.width), int(s.codec_context.height), rate
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise ValueError(f"{path}: cannot read its video stream ({e})") from e


def needs_crop(path: str | Path, crop: str = "auto") -> bool:
    """Whether the video of ``path`` goes through face detection and mouth cropping:
    ``always`` / ``never``, or (``auto``) when it is not a 96×96 clip at 25 fps."""
    if crop not in ("auto", "always", "never"):
        raise ValueError(f"crop must be auto, always or never, got {crop!r}")
    if crop != "auto":
        return crop == "always"
    width, height, fps = _video_geometry(Path(path))
    is_crop = width == height == CROP_SIZE and fps is not None and abs(fps - FPS) <= 0.5
    return not is_crop


def plan_modalities(files: Sequence[Path], modality: str, on_missing_stream: str
                     ) -> list[tuple[str, list[str]]]:
    """Per file, the modality it is decoded with and the warnings that go with it."""
    if on_missing_stream not in ("fallback", "error"):
        raise ValueError(f"on_missing_stream must be fallback or error, got {on_missing_stream!r}")
    plan = []
    for f in files:
        try:
            facts = probe(f)
        except MediaError as e:
            raise ValueError(f"{f}: cannot read this media file ({e.problem})") from e
        have = [s for s in ("audio", "video") if facts[f"has_{s}"]]
        if not have:
            raise ValueError(f"{f} has neither an audio nor a video stream: nothing to "
                             "transcribe")
        need = STREAMS[modality]
        missing = [s for s in need if s not in have]
        if not missing:
            plan.append((modality, []))
            continue
        if on_missing_stream == "error":
            other = "video" if missing[0] == "audio" else "audio"
            hint = f"; try modality={other}" if other in have else ""
            raise ValueError(f"{f} has no {missing[0]} stream, which modality={modality} "
                             f"needs{hint}")
        used = have[0] if len(have) == 1 else modality
        msg = (f"{f} has no {' or '.join(missing)} stream, which modality={modality} needs: "
               f"transcribing it with modality={used}")
        log.warning("%s", msg)
        plan.append((used, [msg]))
    return plan


@dataclass
class Media:
    path: Path
    modality: str
    video: torch.Tensor | None = None  # (T, 96, 96) uint8 at 25 fps
    audio: torch.Tensor | None = None  # (S,) float32 at 16 kHz
    cropped: bool = False
    warnings: list[str] = field(default_factory=list)


def load_media(path: Path, modality: str, warnings: list[str], crop: str, detector: str) -> Media:
    media = Media(path, modality, warnings=list(warnings))
    streams = STREAMS[modality]
    if "video" in streams:
        if needs_crop(path, crop):
            # NoFaceError (a ValueError naming the file and frame ranges) passes through
            result = mouth_crops_from_video(path, detector=detector, crop_size=CROP_SIZE)
            video = torch.as_tensor(result.crops)
            if video.dtype != torch.uint8 or video.ndim != 3:
                raise ValueError(f"{path}: the detector returned crops of shape "
                                 f"{tuple(video.shape)} {video.dtype}, not (T, H, W) uint8")
            media.video, media.cropped = video, True
        else:
            try:
                media.video = load_video(path)
            except MediaError as e:
                hint = "; crop=auto crops and resamples it" if "fps" in e.problem else ""
                raise ValueError(f"{path}: {e.problem}{hint}") from e
    if "audio" in streams:
        try:
            media.audio = load_audio(path)
        except MediaError as e:
            raise ValueError(f"{path}: {e.problem}") from e
    if media.video is not None and media.audio is not None:
        video_s, audio_s = media.video.shape[0] / FPS, media.audio.numel() / SAMPLE_RATE
        if abs(video_s - audio_s) > MAX_AV_MISMATCH_S:
            msg = (f"{path}: audio ({audio_s:.2f} s) and video ({video_s:.2f} s) differ in "
                   "length; the audio is cut or padded to the video")
            log.warning("%s", msg)
            media.warnings.append(msg)
        # the model pairs 640 samples with each frame: cut the codec tail or pad with silence
        target = media.video.shape[0] * SAMPLES_PER_FRAME
        audio = media.audio
        media.audio = audio[:target] if audio.numel() >= target else torch.nn.functional.pad(
            audio, (0, target - audio.numel()))
    return media


def crop_path(write_crop: str | Path, path: Path, many: bool, used: set[Path]) -> Path:
    target = Path(write_crop).expanduser()
    as_dir = many or target.is_dir() or target.suffix.lower() != ".mp4"
    if not as_dir:
        return target
    out = target / f"{path.stem}_crop.mp4"
    k = 1
    while out in used:
        out = target / f"{path.stem}_crop{k}.mp4"
        k += 1
    return out
