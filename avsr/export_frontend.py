"""Export trained front-end weights: ``python -m avsr.export_frontend ckpt=PATH out=PATH``.

Pan et al.'s stage 1 → stage 2: the video front-end trained on word classification
(``stage=word_classification``) initialises a sentence-level model. The export holds the
submodule's ``state_dict`` (keys relative to it), its config and the source checkpoint; a run
loads it with ``init=[{format: weights, path: OUT, target: video_frontend}]`` (:mod:`avsr.checkpoints.weights`).

Arguments (``key=value``):
    ckpt: a training checkpoint of this project (``.ckpt``).
    out: output file (``.pt``).
    module: submodule of the model to export (default ``video_frontend``; e.g.
        ``audio_frontend``, ``encoder``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from avsr.checkpoints import read_checkpoint
from avsr.utils.checkpoint import atomic_torch_save

__all__ = ["export_frontend", "main"]


def export_frontend(ckpt: str | Path, out: str | Path, module: str = "video_frontend"
                    ) -> dict[str, Any]:
    """Write ``{"state_dict", "module", "config", "source"}`` of ``model.<module>`` to ``out``.

    Returns:
        The exported dict.

    Raises:
        FileNotFoundError: no checkpoint.
        KeyError: the checkpoint's model has no weights under ``model.<module>.``.
    """
    ckpt = Path(ckpt)
    checkpoint = read_checkpoint(ckpt, what="ckpt")
    prefix = f"model.{module}."
    state = {k[len(prefix):]: v.clone() for k, v in checkpoint["state_dict"].items()
             if k.startswith(prefix)}
    if not state:
        raise KeyError(f"{ckpt}: no weights under {prefix!r}")
    config = None
    run_cfg = checkpoint.get("avsr_config")
    if isinstance(run_cfg, dict):
        config = run_cfg.get("model", {}).get(module)
    exported = {"state_dict": state, "module": module, "config": config, "source": str(ckpt)}
    atomic_torch_save(exported, out)
    return exported


def main(argv: list[str] | None = None) -> int:
    args = OmegaConf.from_cli(sys.argv[1:] if argv is None else argv)
    if "ckpt" not in args or "out" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    exported = export_frontend(args.ckpt, args.out, args.get("module", "video_frontend"))
    n = sum(v.numel() for v in exported["state_dict"].values())
    print(f"exported model.{exported['module']} ({len(exported['state_dict'])} tensors, "
          f"{n / 1e6:.2f} M values) from {args.ckpt} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
