"""Transcribe media files: ``python -m avsr.transcribe ckpt=PATH media=any_video.mp4``.

``media`` is one media file, a folder (every ``.mp4`` below it) or a text file listing one media
path per line (relative paths are relative to the list). ``modality`` picks audio, video or
both.

- Video: a clip that is already a mouth crop (96×96 at 25 fps) is used as it is; any other
  video (a face at any resolution and frame rate) goes through face detection and mouth
  cropping first (:func:`mouth_crops_from_video`, ``detector=mediapipe|dlib``; ``crop=auto``
  decides by size and frame rate, ``always`` / ``never`` force it). A video in which no face is
  found is an error naming the file and the frame ranges without a face.
- Audio: the first audio stream, down-mixed and resampled to 16 kHz.
- A file without the stream the modality needs falls back to the stream it has, with a
  warning (``on_missing_stream=error``: an error instead); a file with neither is an error.

Clips go through the checkpoint's evaluation transforms and the ``decode`` config's primary
decoder (joint CTC/attention beam search by default; ``ctc_beam``: CTC prefix beam search).
Each file gets its transcript, the n-best list with every scorer's score, and word time stamps
from CTC forced alignment of the best hypothesis (encoder frames are 40 ms). Transcripts are
printed as ``path<TAB>text`` (``output=json``: the JSON records instead) and written to
``output`` (TSV, or JSON for a ``.json`` name) and ``json_out`` (JSON) when given;
``write_crop`` writes the mouth-crop video that was recognised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from avsr.data.dataset import collate_fn
from avsr.data.io import FPS, SAMPLE_RATE, write_mp4
from avsr.decoding.alignment import FRAME_S, word_timestamps
from avsr.decoding.nbest import DECODERS, decode_nbest
from avsr.evaluate import (
    build_search,
    checkpoint_tokenizer,
    decode_lm,
    load_model_from_checkpoint,
)
from avsr.inference.media import (  # noqa: F401 - re-exported for users of transcribe
    CROP_SIZE,
    STREAMS,
    Media,
    collect_media,
    crop_path,
    load_media,
    mouth_crops_from_video,
    needs_crop,
    plan_modalities,
)
from avsr.utils.runtime import set_torch_threads

# the media helpers are re-exported: transcribe is where users look for them
__all__ = ["collect_media", "transcribe", "transcribe_files", "word_timestamps",
           "mouth_crops_from_video", "needs_crop", "CROP_SIZE", "FRAME_S", "main"]

log = logging.getLogger(__name__)


def _frame_seconds(media: Media, enc_frames: int) -> float:
    """Seconds per encoder frame: 40 ms (one video frame, 640 samples) for avsr's front-ends;
    another rate (a front-end that subsamples differently) is measured from the media."""
    seconds = (media.video.shape[0] / FPS if media.video is not None
               else media.audio.numel() / SAMPLE_RATE)
    if enc_frames <= 0:
        return FRAME_S
    measured = seconds / enc_frames
    return FRAME_S if abs(measured - FRAME_S) <= 0.1 * FRAME_S else measured


# ---------------------------------------------------------------------------- decoding
@dataclass
class _Decoder:
    """The primary decoder: its name, search object (beam decoders) and fusion LM."""

    name: str
    search: Any = None
    lm: Any = None


def _build_decoder(decode_cfg: DictConfig, nbest: int | None) -> _Decoder:
    name = decode_cfg.get("primary_decoder") or "beam"
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose from {DECODERS}")
    search = build_search(decode_cfg, name)  # built even when decode.decoders omits it
    dec = _Decoder(name, search, decode_lm(decode_cfg) if search is not None else None)
    if nbest is not None and search is not None:
        if nbest < 1:
            raise ValueError(f"nbest must be >= 1, got {nbest}")
        search.nbest = int(nbest)
    return dec


@torch.inference_mode()
def transcribe_files(ckpt: str | Path, media: str | Path, modality: str, decode_cfg: DictConfig,
                     batch_size: int = 16, *, crop: str = "auto", detector: str = "mediapipe",
                     write_crop: str | Path | None = None, words: bool = True,
                     nbest: int | None = None, on_missing_stream: str = "fallback"
                     ) -> list[dict[str, Any]]:
    """Decode media files with a training checkpoint.

    Args:
        ckpt: training checkpoint (holds its model and data config).
        media: a file, a folder or a list file (see :func:`collect_media`).
        modality: ``"audio"``, ``"video"`` or ``"audiovisual"``.
        decode_cfg: the ``decode`` node; its ``primary_decoder`` is used.
        batch_size: clips decoded together.
        crop: ``auto`` (crop videos that are not 96×96 at 25 fps), ``always`` or ``never``.
        detector: face detector for cropping (``mediapipe`` or ``dlib``).
        write_crop: write the mouth-crop clip (with the 16 kHz audio) that was recognised: an
            ``.mp4`` path for one file, else a folder (``<stem>_crop.mp4`` per file).
        words: word time stamps by CTC forced alignment (needs the model's CTC head).
        nbest: hypotheses in the n-best list (beam searches; ``None``: the search's own).
        on_missing_stream: ``fallback`` (use the stream there is, with a warning) or ``error``.

    Returns:
        Per file, in input order: ``path``, ``modality`` (the one used), ``transcript``,
        ``words`` ([{word, start, end}] in s), ``nbest`` ([{text, score, scores}]), ``crop``
        (written crop path or None), ``cropped`` (went through face detection), ``warnings``.

    Raises:
        ValueError: unknown modality, unreadable media, a file with no usable stream, no face
            in a video (``NoFaceError``).
        FileNotFoundError: missing media.
    """
    if modality not in STREAMS:
        raise ValueError(f"modality must be one of {sorted(STREAMS)}, got {modality!r}")
    if crop not in ("auto", "always", "never"):
        raise ValueError(f"crop must be auto, always or never, got {crop!r}")
    files = collect_media(media)
    plan = plan_modalities(files, modality, on_missing_stream)
    model, run_cfg, pieces = load_model_from_checkpoint(ckpt, with_vocabulary=True)
    datamodule = hydra.utils.instantiate(run_cfg.data)
    tokenizer = checkpoint_tokenizer(datamodule, ckpt, run_cfg, pieces)  # never trains one
    dec = _build_decoder(decode_cfg, nbest)
    if dec.name in ("beam", "ctc_beam", "ctc_greedy") and model.ctc is None and (
            dec.name != "beam" or getattr(dec.search, "ctc_weight", 0) > 0):
        raise ValueError(f"decoder {dec.name} needs a CTC head; this checkpoint has none")
    video_tf = hydra.utils.instantiate(run_cfg.data.eval_video_transform)
    audio_tf = hydra.utils.instantiate(run_cfg.data.eval_audio_transform)
    results: list[dict[str, Any]] = []
    crops_written: set[Path] = set()
    for start in range(0, len(files), batch_size):
        chunk = [load_media(files[i], *plan[i], crop, detector)
                 for i in range(start, min(start + batch_size, len(files)))]
        records: list[dict[str, Any] | None] = [None] * len(chunk)
        for used in dict.fromkeys(m.modality for m in chunk):  # one encoder pass per modality
            idx = [i for i, m in enumerate(chunk) if m.modality == used]
            items = [{"id": str(chunk[i].path), "text": "", "tokens": torch.zeros(0).long(),
                      "video": video_tf(chunk[i].video) if chunk[i].video is not None else None,
                      "audio": audio_tf(chunk[i].audio) if chunk[i].audio is not None else None}
                     for i in idx]
            batch = collate_fn(items)
            enc, lengths = model.encode_modality(batch["audio"], batch["audio_lengths"],
                                                 batch["video"], batch["video_lengths"],
                                                 modality=used)
            ctc_lp = model.ctc(enc) if model.ctc is not None else None
            nbests = decode_nbest(dec.name, model, enc, lengths, ctc_lp, tokenizer,
                                  max_len_ratio=float(decode_cfg.max_len_ratio),
                                  search=dec.search, lm=dec.lm)
            for j, i in enumerate(idx):
                m = chunk[i]
                hyps = nbests[j]
                best = hyps[0]["tokens"] if hyps else []
                timed = (word_timestamps(ctc_lp[j, : int(lengths[j])], best, tokenizer,
                                         tokenizer.blank_id, _frame_seconds(m, int(lengths[j])))
                         if words and ctc_lp is not None else [])
                crop_file = None
                if write_crop and m.video is not None:
                    crop_file = crop_path(write_crop, m.path, len(files) > 1, crops_written)
                    write_mp4(crop_file, m.video, m.audio)
                    crops_written.add(crop_file)
                records[i] = {
                    "path": str(m.path), "modality": m.modality,
                    "transcript": tokenizer.decode(best), "words": timed,
                    "nbest": [{"text": tokenizer.decode(h["tokens"]), "score": h["score"],
                               "scores": h["scores"]} for h in hyps],
                    "crop": str(crop_file) if crop_file is not None else None,
                    "cropped": m.cropped, "warnings": m.warnings,
                }
        results += records
    return results


def transcribe(ckpt: str | Path, media: str | Path, modality: str, decode_cfg: DictConfig,
               batch_size: int = 16, **options: Any) -> list[tuple[str, str]]:
    """(path, transcript) per file, in input order; ``options`` as :func:`transcribe_files`."""
    return [(r["path"], r["transcript"])
            for r in transcribe_files(ckpt, media, modality, decode_cfg, batch_size, **options)]


@hydra.main(version_base="1.3", config_path="../configs", config_name="transcribe")
def main(cfg: DictConfig) -> Any:
    set_torch_threads(cfg.get("num_threads"))
    results = transcribe_files(
        cfg.ckpt, cfg.media, cfg.modality, cfg.decode, cfg.batch_size,
        crop=cfg.get("crop", "auto"), detector=cfg.get("detector", "mediapipe"),
        write_crop=cfg.get("write_crop"), words=bool(cfg.get("words", True)),
        nbest=cfg.get("nbest"), on_missing_stream=cfg.get("on_missing_stream", "fallback"))
    lines = [f"{r['path']}\t{r['transcript']}" for r in results]
    as_json = json.dumps(results, indent=2)
    output = cfg.get("output")
    print(as_json if output == "json" else "\n".join(lines))
    if output and output != "json":
        text = as_json if str(output).lower().endswith(".json") else "\n".join(lines)
        Path(output).write_text(text + "\n")
        log.info("transcripts written to %s", output)
    if cfg.get("json_out"):
        Path(cfg.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_out).write_text(as_json + "\n")
        log.info("JSON written to %s", cfg.json_out)
    return results


if __name__ == "__main__":
    main()
