"""Transcribe mouth-ROI clips: ``python -m avsr.transcribe ckpt=PATH media=clip.mp4``.

``media`` is one ``.mp4``, a folder (every ``.mp4`` below it) or a text file listing one media
path per line (relative paths are relative to the list). ``modality`` picks audio, video or
both; a file without the stream the modality needs is a clear error before anything is decoded.
Clips go through the checkpoint's evaluation transforms (25 fps gray mouth crops, 16 kHz audio)
and the ``decode`` config's primary decoder (beam search by default). Transcripts are printed as
``path<TAB>text`` and written to ``output`` when given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from avsr.data.corpora import Utterance
from avsr.data.dataset import AVDataset, collate_fn
from avsr.data.io import MediaError, probe
from avsr.decoding.greedy import attention_greedy, ctc_greedy
from avsr.evaluate import build_beam_search, checkpoint_tokenizer, load_model_from_checkpoint
from avsr.utils.runtime import set_torch_threads

__all__ = ["collect_media", "transcribe", "main"]

log = logging.getLogger(__name__)

_STREAMS = {"audio": ("audio",), "video": ("video",), "audiovisual": ("audio", "video")}
_LIST_SUFFIXES = {".txt", ".lst", ".list", ".scp"}


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


def _check_streams(files: list[Path], modality: str) -> None:
    need = _STREAMS[modality]
    for f in files:
        try:
            facts = probe(f)
        except MediaError as e:
            raise ValueError(f"{f}: cannot read this media file ({e.problem})") from e
        for stream in need:
            if not facts[f"has_{stream}"]:
                other = "video" if stream == "audio" else "audio"
                hint = f"; try modality={other}" if facts[f"has_{other}"] else ""
                raise ValueError(f"{f} has no {stream} stream, which modality={modality} "
                                 f"needs{hint}")


@torch.inference_mode()
def transcribe(ckpt: str | Path, media: str | Path, modality: str, decode_cfg: DictConfig,
               batch_size: int = 16) -> list[tuple[str, str]]:
    """Decode media files with a training checkpoint.

    Args:
        ckpt: training checkpoint (holds its model and data config).
        media: a file, a folder or a list file (see :func:`collect_media`).
        modality: ``"audio"``, ``"video"`` or ``"audiovisual"``.
        decode_cfg: the ``decode`` node; its ``primary_decoder`` is used.
        batch_size: clips decoded together.

    Returns:
        (path, transcript) per file, in input order.
    """
    if modality not in _STREAMS:
        raise ValueError(f"modality must be one of {sorted(_STREAMS)}, got {modality!r}")
    files = collect_media(media)
    _check_streams(files, modality)
    model, run_cfg, pieces = load_model_from_checkpoint(ckpt, with_vocabulary=True)
    datamodule = hydra.utils.instantiate(run_cfg.data)
    tokenizer = checkpoint_tokenizer(datamodule, ckpt, run_cfg, pieces)  # never trains one
    decoder = decode_cfg.get("primary_decoder") or "beam"
    beam, lm = build_beam_search(decode_cfg) if decoder == "beam" else (None, None)
    streams = _STREAMS[modality]
    dataset = AVDataset(
        [Utterance(str(f), str(f) if "video" in streams else None,
                   str(f) if "audio" in streams else None, "", None) for f in files],
        tokenizer=None,
        video_transform=hydra.utils.instantiate(run_cfg.data.eval_video_transform),
        audio_transform=hydra.utils.instantiate(run_cfg.data.eval_audio_transform),
        modalities=streams, max_bad_fraction=1.0)
    results: list[tuple[str, str]] = []
    for start in range(0, len(files), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(files)))]
        bad = [str(files[start + i]) for i, item in enumerate(items) if item is None]
        if bad:
            raise ValueError(f"cannot decode {bad}: {dataset.skipped}")
        batch = collate_fn(items)
        enc, lengths = model.encode(batch["audio"], batch["audio_lengths"], batch["video"],
                                    batch["video_lengths"], modality=modality)
        hyps = _decode(model, enc, lengths, tokenizer, decoder, decode_cfg, beam, lm)
        results += [(uid, tokenizer.decode(h)) for uid, h in zip(batch["ids"], hyps)]
    return results


def _decode(model, enc, lengths, tokenizer, decoder: str, decode_cfg: DictConfig, beam,
            lm) -> list[list[int]]:
    if decoder == "beam":
        nbest = beam(model.decoder, enc, lengths, model.ctc(enc), tokenizer.sos_id,
                     tokenizer.eos_id, tokenizer.blank_id, lm=lm)
        return [h[0].tokens if h else [] for h in nbest]
    if decoder == "ctc_greedy":
        return ctc_greedy(model.ctc(enc), lengths, tokenizer.blank_id)
    if decoder == "attention_greedy":
        max_len = max(1, int(float(decode_cfg.max_len_ratio) * int(lengths.max())))
        return attention_greedy(model.decoder, enc, lengths, tokenizer.sos_id, tokenizer.eos_id,
                                max_len)
    raise ValueError(f"unknown decoder {decoder!r}")


@hydra.main(version_base="1.3", config_path="../configs", config_name="transcribe")
def main(cfg: DictConfig) -> Any:
    set_torch_threads(cfg.get("num_threads"))
    results = transcribe(cfg.ckpt, cfg.media, cfg.modality, cfg.decode, cfg.batch_size)
    lines = [f"{path}\t{text}" for path, text in results]
    print("\n".join(lines))
    if cfg.get("output"):
        Path(cfg.output).write_text("\n".join(lines) + "\n")
        log.info("transcripts written to %s", cfg.output)
    return results


if __name__ == "__main__":
    main()
