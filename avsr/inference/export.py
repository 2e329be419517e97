"""Export a model (or a run checkpoint) as ``torch.export`` programs with dynamic batch and
time, and the ``export.json`` that describes them (token ids, shapes, dynamic dimensions)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.export import Dim

from avsr.data.io import SAMPLES_PER_FRAME
from avsr.inference.programs import (
    CTCProgram,
    DecoderInitProgram,
    DecoderStepProgram,
    EncoderProgram,
)

__all__ = ["FORMAT_VERSION", "PROGRAMS", "export_model", "export_checkpoint", "token_ids"]

FORMAT_VERSION = 1
PROGRAMS = ("encoder", "ctc", "decoder_init", "decoder_step")
MAX_FRAMES = 100_000  # upper bounds of the dynamic dimensions (torch.export needs a range)
MAX_BATCH = 4096
# the encoders' positional tables hold 2048 frames (82 s); longer inputs take another code path
ENCODER_MAX_FRAMES = 2048


# ---------------------------------------------------------------------------- the programs


def _example_inputs(modality: str, batch: int, frames: int, image_size: int
                    ) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([frames - (i % 3) for i in range(batch)])
    audio = torch.randn(batch, frames * SAMPLES_PER_FRAME, generator=g) * 0.1
    video = torch.randn(batch, frames, 1, image_size, image_size, generator=g)
    if modality == "audio":
        return audio, lengths * SAMPLES_PER_FRAME
    if modality == "video":
        return video, lengths
    return audio, lengths * SAMPLES_PER_FRAME, video, lengths


def _encoder_dynamic_shapes(modality: str, max_frames: int) -> tuple[dict[int, Any], ...]:
    # Dim.DYNAMIC rather than named Dims: guards such as min(F, 2 F) == F (the conformer) or
    # 640 (S // 640) <= S (the audio front-ends) hold for every size, but export's solver
    # cannot prove them for a named Dim and refuses it. With audio the traced graph also
    # asserts B != 1 (a reshape of the audio path decomposes differently for B = 1):
    # ExportedModel.encode runs a batch of one as two rows
    batch = Dim("batch", min=1 if modality == "video" else 2, max=MAX_BATCH)
    samples = Dim.DYNAMIC(min=2 * SAMPLES_PER_FRAME, max=(max_frames + 1) * SAMPLES_PER_FRAME - 1)
    frames = Dim.DYNAMIC(min=2, max=max_frames)
    if modality == "audio":
        return {0: batch, 1: samples}, {0: batch}
    if modality == "video":
        return {0: batch, 1: frames}, {0: batch}
    return {0: batch, 1: samples}, {0: batch}, {0: batch, 1: frames}, {0: batch}


def export_model(model: nn.Module, modality: str = "audiovisual", image_size: int = 88,
                 max_frames: int = ENCODER_MAX_FRAMES
                 ) -> tuple[dict[str, torch.export.ExportedProgram], dict[str, Any]]:
    """Export the encoder of ``modality``, the CTC head and the decoder's init and step.

    Args:
        model: an :class:`~avsr.models.avsr_model.AVSRModel` (put in eval mode here).
        modality: the modality the encoder program computes.
        image_size: side of the video frames (static).
        max_frames: most encoder frames (25 Hz) the encoder program accepts.

    Returns:
        ``{name: ExportedProgram}`` (no ``ctc`` / decoder entries for a model without them)
        and a description of the programs (shapes, dynamic dimensions, export seconds).
    """
    model.eval()
    programs: dict[str, torch.export.ExportedProgram] = {}
    seconds: dict[str, float] = {}

    def run(name: str, module: nn.Module, args: tuple, shapes: tuple) -> None:
        start = time.perf_counter()
        with torch.no_grad():
            programs[name] = torch.export.export(module.eval(), args, dynamic_shapes=shapes)
        seconds[name] = round(time.perf_counter() - start, 3)

    param = next(model.parameters())
    enc_args = tuple(t.to(param.device) for t in _example_inputs(modality, 3, 12, image_size))
    run("encoder", EncoderProgram(model, modality), enc_args,
        _encoder_dynamic_shapes(modality, max_frames))
    with torch.no_grad():
        enc, enc_lengths = model.encode_modality(*_unpack(modality, enc_args), modality)
    batch, frames = Dim("batch", min=1, max=MAX_BATCH), Dim("frames", min=1, max=MAX_FRAMES)
    if model.ctc is not None:
        run("ctc", CTCProgram(model.ctc), (enc,), ({0: batch, 1: frames},))
    info: dict[str, Any] = {"modality": modality, "image_size": image_size,
                            "d_model": int(enc.shape[-1])}
    decoder = model.decoder
    if decoder is not None:
        run("decoder_init", DecoderInitProgram(decoder), (enc, enc_lengths),
            ({0: batch, 1: frames}, {0: batch}))
        layers, heads = len(decoder.layers), decoder.layers[0].self_attn.num_heads
        head_dim = decoder.layers[0].self_attn.head_dim
        max_tokens = decoder.embed_positions.pe.shape[0]
        groups, width = Dim("groups", min=1, max=MAX_BATCH), Dim("width", min=1, max=MAX_BATCH)
        past = Dim("past", min=0, max=max_tokens - 1)
        mem_frames = Dim("frames", min=1, max=MAX_FRAMES)
        with torch.no_grad():
            cross_k, cross_v, mask = DecoderInitProgram(decoder)(enc, enc_lengths)
        g, w, t = enc.shape[0], 2, 3
        tokens = torch.arange(g * w, device=param.device).remainder(decoder.vocab_size)
        tokens = tokens.view(g, w)
        self_kv = cross_k.new_zeros(2 * layers, g, w, heads, t, head_dim).normal_()
        cross = {1: groups, 3: mem_frames}
        run("decoder_step", DecoderStepProgram(decoder), (tokens, self_kv, cross_k, cross_v, mask),
            ({0: groups, 1: width}, {1: groups, 2: width, 4: past}, cross, cross,
             {0: groups, 3: mem_frames}))
        info["decoder"] = {"vocab_size": decoder.vocab_size, "num_layers": layers,
                           "num_heads": heads, "head_dim": head_dim,
                           "max_tokens": int(max_tokens)}
    info["export_seconds"] = seconds
    info["programs"] = _describe(modality, image_size, info)
    return programs, info


def _unpack(modality: str, args: tuple) -> tuple:
    if modality == "audio":
        return args[0], args[1], None, None
    if modality == "video":
        return None, None, args[0], args[1]
    return args


def _describe(modality: str, image_size: int, info: dict[str, Any]) -> dict[str, Any]:
    d = info["d_model"]
    video = f"video (B, F, 1, {image_size}, {image_size}) float, video_lengths (B,) long frames"
    audio = "audio (B, S) float, audio_lengths (B,) long samples"
    enc_in = {"audio": [audio], "video": [video],
              "audiovisual": [audio.replace("(B, S)", "(B, 640 F)"), video]}[modality]
    out = {
        "encoder": {"inputs": enc_in,
                    "outputs": [f"enc (B, T, {d}) float", "enc_lengths (B,) long"],
                    "dynamic": {"audio": ["B (2..)", "S (640 k, k <= 2048)"],
                                "video": ["B", "F (2..2048)"],
                                "audiovisual": ["B (2..)", "F (2..2048)", "S = 640 F"]
                                }[modality]},
        "ctc": {"inputs": [f"enc (B, T, {d})"], "outputs": ["log_probs (B, T, V) float32"],
                "dynamic": ["B", "T"]},
    }
    dec = info.get("decoder")
    if dec is not None:
        kv = f"(L={dec['num_layers']}, {{}}, H={dec['num_heads']}, {{}}, {dec['head_dim']})"
        out["decoder_init"] = {
            "inputs": [f"memory (B, T, {d})", "memory_lengths (B,) long"],
            "outputs": ["cross_k " + kv.format("B", "T"), "cross_v " + kv.format("B", "T"),
                        "cross_mask (B, 1, 1, T) bool"],
            "dynamic": ["B", "T"]}
        self_kv = f"(2 L={2 * dec['num_layers']}, G, W, H={dec['num_heads']}, {{}}, " \
                  f"{dec['head_dim']})"
        out["decoder_step"] = {
            "inputs": ["tokens (G, W) long", "self_kv " + self_kv.format("t"),
                       "cross_k " + kv.format("G", "T"), "cross_v " + kv.format("G", "T"),
                       "cross_mask (G, 1, 1, T) bool"],
            "outputs": [f"logits (G, W, V={dec['vocab_size']})",
                        "self_kv " + self_kv.format("t + 1")],
            "dynamic": ["G", "W", f"t (0..{dec['max_tokens'] - 1})", "T"]}
    return out


def token_ids(config: DictConfig, vocabulary: list[str] | None) -> dict[str, int | None]:
    """blank / sos / eos of the checkpoint's tokenizer, from ``config.data.tokenizer``.

    avsr's SentencePiece tokenizer (``data.tokenizer: null``) has fixed ids (checked against
    the stored vocabulary when there is one); a configured tokenizer object (e.g.
    ``UnitsTokenizer``) is built from the stored config, or its id arguments are read.
    """
    from avsr.data.tokenizer import BLANK_ID, EOS_ID

    tok_cfg = config.get("data", {}).get("tokenizer") if "data" in config else None
    if tok_cfg is None:
        ids = {"blank_id": BLANK_ID, "sos_id": EOS_ID, "eos_id": EOS_ID}
        if vocabulary is not None and (vocabulary[BLANK_ID] != "<blank>"
                                       or vocabulary[EOS_ID] != "<eos>"):
            raise ValueError(f"the stored vocabulary has {vocabulary[BLANK_ID]!r} / "
                             f"{vocabulary[EOS_ID]!r} at ids {BLANK_ID} / {EOS_ID}; pass "
                             "blank_id= sos_id= eos_id=")
        return ids
    from avsr.checkpoints.config import UnsafeConfigError, instantiate_stored

    try:
        tok = instantiate_stored(tok_cfg, "data.tokenizer")
        return {"blank_id": tok.blank_id, "sos_id": tok.sos_id, "eos_id": tok.eos_id}
    except UnsafeConfigError:
        raise
    except Exception:  # its files (units list) are not here: the ids its config gives
        last = len(vocabulary) - 1 if vocabulary else None
        eos = tok_cfg.get("eos_id")
        eos = last if eos is None else eos
        sos = tok_cfg.get("sos_id")
        return {"blank_id": tok_cfg.get("blank_id", 0), "sos_id": eos if sos is None else sos,
                "eos_id": eos}


def _image_size(config: DictConfig) -> int:
    """Side of the frames the model was evaluated on: the eval transform's ``output_size``,
    else its ``crop_size``, else 88."""
    data = config.get("data") if "data" in config else None
    for key in ("eval_video_transform", "train_video_transform"):
        node = data.get(key) if data is not None else None
        if node is not None:
            for field in ("output_size", "crop_size"):
                if node.get(field) is not None:
                    return int(node[field])
    return 88


def export_checkpoint(ckpt: str | Path, out: str | Path, modality: str = "audiovisual",
                      image_size: int | None = None, **ids: int) -> dict[str, Any]:
    """Load a run with :func:`avsr.checkpoints.load_run`, export it and write ``out/``.

    Writes ``encoder.pt2``, ``ctc.pt2``, ``decoder_init.pt2``, ``decoder_step.pt2`` (those the
    model has) and ``export.json`` (token ids, shapes, dynamic dimensions, vocabulary).

    Returns:
        The contents of ``export.json``.
    """
    from avsr.checkpoints import load_run

    run = load_run(ckpt)
    size = image_size or _image_size(run.config)
    programs, info = export_model(run.model, modality, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, program in programs.items():
        torch.export.save(program, out / f"{name}.pt2")
    meta = {"format_version": FORMAT_VERSION, "source": str(ckpt),
            "torch": torch.__version__, **token_ids(run.config, run.vocabulary), **ids,
            "vocab_size": info.get("decoder", {}).get("vocab_size"),
            "files": {n: f"{n}.pt2" for n in programs}, **info,
            "vocabulary": run.vocabulary}
    if meta["vocab_size"] is None and run.vocabulary is not None:
        meta["vocab_size"] = len(run.vocabulary)
    (out / "export.json").write_text(json.dumps(meta, indent=1))
    return meta


# ---------------------------------------------------------------------------- loading
