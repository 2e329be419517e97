"""Inference export: ``python -m avsr.export ckpt=CKPT out=DIR modality=video``.

Four ``torch.export`` programs (``.pt2``, :func:`torch.export.save`) and ``export.json``:

- ``encoder.pt2``: front-ends + fusion + encoder of one modality, what
  ``model.encode_modality(audio, audio_lengths, video, video_lengths, modality)`` computes. Inputs:
  ``audio`` (B, S) float and ``audio_lengths`` (B,) long samples; ``video`` (B, F, 1, H, W) and
  ``video_lengths`` (B,) frames; audio-visual takes all four with S = 640 · F (the loader
  pads or cuts the audio). Outputs ``enc`` (B, T, D), ``enc_lengths`` (B,).
- ``ctc.pt2``: the CTC head, ``enc`` (B, T, D) -> log-probabilities (B, T, V).
- ``decoder_init.pt2``: ``memory`` (B, T, D), ``memory_lengths`` (B,) -> the cross-attention
  keys and values of every decoder layer, each (L, B, H, T, D / H), and the memory mask
  (B, 1, 1, T) (``TransformerDecoder.init_state``).
- ``decoder_step.pt2``: one token per hypothesis (``TransformerDecoder.step``) on a (G, W)
  grid (G utterances × W hypotheses sharing one memory): ``tokens`` (G, W) long, ``self_kv``
  (2 L, G, W, H, t, D / H) the keys/values of the t tokens fed so far (t = 0 at the first
  step), cross keys/values and mask from ``decoder_init`` -> ``logits`` (G, W, V) and
  ``self_kv`` (2 L, G, W, H, t + 1, D / H).

Dynamic: B, S, F, T, G, W, t. Static: the frame size H × W (fixed by the training crop) and
the model dimensions. Ranges: F <= 2048 encoder frames (the encoders' positional tables), S
a multiple of 640 (whole frames), t <= 2047 (the decoder's table), B >= 2 for the encoders
that read audio (their traced graph asserts B != 1). :func:`load_exported` wraps the
programs in objects with the interface :class:`avsr.decoding.beam_search.BeamSearch` and
``attention_greedy`` use, and takes care of B = 1 and of audio lengths.

ONNX is not written: it needs the ``onnx`` and ``onnxscript`` packages (and ``onnxruntime`` to
run it), which the environment does not have; ``torch.onnx.export(program, dynamo=True)`` of
these same programs is the way once they are installed.

Arguments (``key=value``):
    ckpt: a training checkpoint of this project.
    out: output folder.
    modality: ``audio``, ``video`` or ``audiovisual`` (default ``audiovisual``).
    image_size: video frame side (default: the checkpoint's evaluation crop, else 88).
    sos_id, eos_id, blank_id: override the ids read from the checkpoint's tokenizer.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

# the CLI over avsr.inference; the names are re-exported so `avsr.export` is the one import
from avsr.inference.export import export_checkpoint, export_model, token_ids  # noqa: F401
from avsr.inference.exported import ExportedModel, load_exported  # noqa: F401
from avsr.inference.programs import (  # noqa: F401
    CTCProgram,
    DecoderInitProgram,
    DecoderStepProgram,
    EncoderProgram,
)

__all__ = [
    "EncoderProgram", "CTCProgram", "DecoderInitProgram", "DecoderStepProgram",
    "export_model", "export_checkpoint", "token_ids", "load_exported", "ExportedModel", "main",
]


def main(argv: list[str] | None = None) -> int:
    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    if "ckpt" not in args or "out" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    ids = {k: int(args[k]) for k in ("sos_id", "eos_id", "blank_id") if k in args}
    size = args.get("image_size")
    meta = export_checkpoint(args.ckpt, args.out, str(args.get("modality", "audiovisual")),
                             int(size) if size is not None else None, **ids)
    total = sum(meta["export_seconds"].values())
    print(f"exported {', '.join(meta['files'])} ({meta['modality']}) of {args.ckpt} to "
          f"{args.out} in {total:.1f} s; sos {meta['sos_id']} eos {meta['eos_id']} "
          f"blank {meta['blank_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
