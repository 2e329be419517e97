"""``python -m avsr.convert --from FORMAT IN OUT [options] [Hydra overrides]``.

Builds the avsr model of the composed training config (``configs/train.yaml`` plus overrides,
typically ``+experiment=reproduce/<family>``), imports the public checkpoint IN into it (all or
nothing) and writes OUT, an avsr checkpoint that ``python -m avsr.evaluate ckpt=OUT`` and
``avsr.transcribe`` load (``avsr_config`` + ``state_dict`` with the ``model.`` prefix).
``vocab_size`` is taken from the checkpoint's output layer unless overridden.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from avsr.convert import FORMATS, convert_state_dict, read_checkpoint
from avsr.convert.common import load_mapped
from avsr.utils.checkpoint import atomic_torch_save

__all__ = ["main", "convert_file"]

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
_VOCAB_KEYS = ("ctc.ctc_lo.weight", "decoder.output_projection.weight",
               "decoder.embed_tokens.weight")


def convert_file(format: str, src: str | Path, dst: str | Path, overrides: list[str],
                 keep_init: list[str] | None = None, **options) -> dict:
    """Convert ``src`` into an avsr checkpoint at ``dst``; returns the import summary."""
    if format == "wav2vec2":
        from avsr.convert.wav2vec2 import load_source

        checkpoint, source = load_source(src)
    else:
        checkpoint, source = read_checkpoint(src), str(src)
    mapped, dropped, meta = convert_state_dict(format, checkpoint, source, **options)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    explicit_vocab = any(o.split("=")[0].lstrip("+") == "vocab_size" for o in overrides)
    with open_dict(cfg):
        if not explicit_vocab:
            for key in _VOCAB_KEYS:
                if key in mapped:
                    cfg.vocab_size = int(mapped[key].shape[0])
                    break
        cfg.init = []  # the weights are in this checkpoint now
    model = hydra.utils.instantiate(cfg.model)
    if format == "wav2vec2" and not keep_init:
        from avsr.convert.wav2vec2 import default_keep_init

        keep_init = default_keep_init(list(model.state_dict()),
                                      options.get("prefix", "audio_frontend."))
    if format == "avhubert":
        from avsr.convert.avhubert import check_decoder

        check_decoder(model, mapped, source)
    report = load_mapped(model, mapped, source, dropped, keep_init or ())
    summary = {"source": str(src), "format": format, "options": options,
               "loaded": len(report.loaded), "dropped": report.dropped,
               "kept_init": report.kept_init,
               "meta": json.loads(json.dumps(meta, default=str))}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({
        "avsr_config": OmegaConf.to_container(cfg, resolve=False),
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "import_report": summary,
    }, dst)
    print(report.summary())
    print(f"wrote {dst}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m avsr.convert", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="format", required=True, choices=sorted(FORMATS))
    parser.add_argument("src", help="public checkpoint (file, or a Hugging Face folder)")
    parser.add_argument("dst", help="avsr checkpoint to write")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides of configs/train.yaml, e.g. "
                             "+experiment=reproduce/autoavsr_vsr_lrs3")
    parser.add_argument("--keep-init", nargs="*", default=[],
                        help="model key prefixes left at initialisation (e.g. decoder. ctc.)")
    parser.add_argument("--heads", default=None, help="usr: v, a or av output heads")
    parser.add_argument("--ema", action="store_true", help="usr: import the EMA teacher")
    parser.add_argument("--prefix", default=None, help="wav2vec2: the front-end's key prefix")
    parser.add_argument("--flavour", default=None, help="wav2vec2: fairseq|huggingface|torchaudio")
    parser.add_argument("--no-decoder", action="store_true",
                        help="avhubert: leave a fine-tuned checkpoint's decoder out")
    args = parser.parse_intermixed_args(argv)
    options = {}
    if args.format == "usr":
        options = {"heads": args.heads or "av", "ema": args.ema}
    elif args.format == "wav2vec2":
        options = {k: v for k, v in (("prefix", args.prefix), ("flavour", args.flavour))
                   if v is not None}
    elif args.format == "avhubert" and args.no_decoder:
        options = {"decoder": False}
    if args.format != "avhubert" and args.no_decoder:
        parser.error(f"--no-decoder does not apply to {args.format}")
    if args.format not in ("usr", "wav2vec2") and (args.heads or args.ema or args.prefix
                                                   or args.flavour):
        parser.error(f"--heads/--ema/--prefix/--flavour do not apply to {args.format}")
    convert_file(args.format, args.src, args.dst, args.overrides, args.keep_init, **options)


if __name__ == "__main__":
    main()
