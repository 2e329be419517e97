"""Exported programs behind the interfaces the decoders use: ``encode``, ``ctc`` and a decoder
with ``init_state`` / ``step`` / ``reorder_state``, so :class:`~avsr.decoding.beam_search.BeamSearch`
and ``attention_greedy`` run on them unchanged."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsr.data.io import SAMPLES_PER_FRAME

__all__ = ["ExportedModel", "ExportedDecoder", "ExportedDecoderState", "ExportedCTC",
           "load_exported"]

@dataclass
class ExportedDecoderState:
    """Incremental state of :class:`ExportedDecoder`: self keys/values (2 L, N, H, t, Dh),
    cross keys/values (L, G, H, T, Dh) with N = G · W, memory mask (G, 1, 1, T)."""

    self_kv: torch.Tensor
    cross_k: torch.Tensor
    cross_v: torch.Tensor
    cross_mask: torch.Tensor
    max_len: int | None = None

    @property
    def offset(self) -> int:
        return self.self_kv.shape[3]

    def select(self, index: torch.Tensor, memory_index: torch.Tensor | None
               ) -> ExportedDecoderState:
        """Rows ``index`` of the keys/values, rows ``memory_index`` of the memory (``None``:
        keep it); as ``DecoderState.select``."""
        kv = self.self_kv.index_select(1, index)
        if memory_index is None:
            return ExportedDecoderState(kv, self.cross_k, self.cross_v, self.cross_mask,
                                        self.max_len)
        return ExportedDecoderState(kv, self.cross_k.index_select(1, memory_index),
                                    self.cross_v.index_select(1, memory_index),
                                    self.cross_mask.index_select(0, memory_index), self.max_len)


class ExportedDecoder:
    """``init_state`` / ``step`` / ``reorder_state`` of ``TransformerDecoder`` on the
    exported ``decoder_init`` and ``decoder_step`` programs."""

    def __init__(self, init: nn.Module, step: nn.Module, vocab_size: int, num_layers: int,
                 num_heads: int, head_dim: int) -> None:
        self._init = init
        self._step = step
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = head_dim

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor | None = None,
                   max_len: int | None = None) -> ExportedDecoderState:
        if memory_lengths is None:
            memory_lengths = torch.full((memory.shape[0],), memory.shape[1], dtype=torch.long,
                                        device=memory.device)
        cross_k, cross_v, mask = self._init(memory, memory_lengths)
        kv = cross_k.new_empty(2 * self.num_layers, memory.shape[0], self.num_heads, 0,
                               self.head_dim)
        return ExportedDecoderState(kv, cross_k, cross_v, mask, max_len)

    def step(self, tokens_last: torch.Tensor, state: ExportedDecoderState,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, ExportedDecoderState]:
        """Logits (N, V) of the next token and the new state. Every row is computed; with
        ``rows`` the others get logits 0, as ``TransformerDecoder.step`` gives them."""
        groups = state.cross_k.shape[1]
        n = tokens_last.shape[0]
        if n % groups:
            raise ValueError(f"{n} hypotheses cannot share {groups} memories")
        kv = state.self_kv
        logits, kv = self._step(tokens_last.view(groups, n // groups),
                                kv.reshape(kv.shape[0], groups, n // groups, *kv.shape[2:]),
                                state.cross_k, state.cross_v, state.cross_mask)
        logits = logits.flatten(0, 1)
        if rows is not None:
            logits = logits.new_zeros(logits.shape).index_copy_(
                0, rows, logits.index_select(0, rows))
        new = ExportedDecoderState(kv.flatten(1, 2), state.cross_k, state.cross_v,
                                   state.cross_mask, state.max_len)
        return logits, new

    @staticmethod
    def reorder_state(state: ExportedDecoderState, index: torch.Tensor) -> ExportedDecoderState:
        return state.select(index, index)


class ExportedCTC:
    """The exported CTC head: ``ctc(enc)`` -> (B, T, V) log-probabilities."""

    def __init__(self, program: nn.Module) -> None:
        self._program = program

    def __call__(self, enc: torch.Tensor) -> torch.Tensor:
        return self._program(enc)


class ExportedModel:
    """What :func:`load_exported` returns: ``encode``, ``ctc``, ``decoder`` and the ids.

    Attributes:
        encoder, ctc, decoder: callables (``ctc`` / ``decoder`` ``None`` when not exported).
        meta: ``export.json``; ``sos_id``, ``eos_id``, ``blank_id``, ``modality`` from it.
        programs: the loaded ``ExportedProgram`` objects by name.
    """

    def __init__(self, programs: dict[str, torch.export.ExportedProgram], meta: dict[str, Any]
                 ) -> None:
        self.programs = programs
        self.meta = meta
        self.modality: str = meta["modality"]
        self.sos_id, self.eos_id = meta.get("sos_id"), meta.get("eos_id")
        self.blank_id = meta.get("blank_id")
        self.encoder = programs["encoder"].module()
        self.ctc = ExportedCTC(programs["ctc"].module()) if "ctc" in programs else None
        self.decoder = None
        if "decoder_init" in programs and "decoder_step" in programs:
            d = meta["decoder"]
            self.decoder = ExportedDecoder(programs["decoder_init"].module(),
                                           programs["decoder_step"].module(), d["vocab_size"],
                                           d["num_layers"], d["num_heads"], d["head_dim"])

    def encode(self, audio: torch.Tensor | None, audio_lengths: torch.Tensor | None,
               video: torch.Tensor | None, video_lengths: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.encode_modality(...)`` of the exported modality; returns enc (B, T, D), lengths.

        Audio: cut to whole 25 Hz frames (640 samples), as the front-ends do. Audio-visual:
        the program takes 640 samples per video frame; the audio is zero-padded or cut to
        that (the eager model cuts the features of both streams to the shorter one). Padding
        past each item's length changes nothing; audio cut within an item's length differs
        from eager mode in the last frame (the eager front-end's last window reads past it).
        """
        m = self.modality
        ref = audio if m == "audio" else video
        if ref is not None and ref.shape[0] == 1 and m != "video":
            # the audio programs need B >= 2 (see _encoder_dynamic_shapes): rows are
            # independent, so run the item twice and keep one
            def twice(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else torch.cat([t, t])

            enc, lengths = self.encode(twice(audio), twice(audio_lengths), twice(video),
                                       twice(video_lengths))
            return enc[:1], lengths[:1]
        if m in ("audio", "audiovisual") and audio is not None and audio_lengths is None:
            audio_lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long,
                                       device=audio.device)
        if m in ("video", "audiovisual") and video is not None and video_lengths is None:
            video_lengths = torch.full((video.shape[0],), video.shape[1], dtype=torch.long,
                                       device=video.device)
        if audio is not None:  # whole 25 Hz frames, as the front-ends cut it
            audio = audio[:, :audio.shape[1] // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
        if m == "audio":
            return self.encoder(audio, audio_lengths)
        if m == "video":
            return self.encoder(video, video_lengths)
        if audio is None or video is None:
            raise ValueError("the audio-visual program needs audio and video")
        samples = SAMPLES_PER_FRAME * video.shape[1]
        if audio.shape[1] >= samples:
            audio = audio[:, :samples]
        else:
            audio = nn.functional.pad(audio, (0, samples - audio.shape[1]))
        return self.encoder(audio, audio_lengths.clamp(max=samples), video, video_lengths)


def load_exported(folder: str | Path) -> ExportedModel:
    """Load the programs :func:`export_checkpoint` wrote (``torch.export.load``)."""
    folder = Path(folder)
    meta = json.loads((folder / "export.json").read_text())
    programs = {name: torch.export.load(folder / file) for name, file in meta["files"].items()}
    return ExportedModel(programs, meta)
