"""Average the weights of the last N checkpoints of a run (auto_avsr and USR average the last
10 epochs; REFERENCE.md §2.1, §2.2).

    python -m avsr.average_checkpoints --dir logs/run/checkpoints --last 10 --out avg.ckpt
    python -m avsr.average_checkpoints a.ckpt b.ckpt c.ckpt --out avg.ckpt

"Last" is by ``global_step`` stored in each checkpoint, not by file time. The output is the
newest input checkpoint with its ``state_dict`` replaced by the average (floating tensors are
averaged in float64 then cast back; integer buffers such as BatchNorm's
``num_batches_tracked`` come from the newest), so ``avsr.evaluate ckpt=avg.ckpt`` reads it like
any training checkpoint. Optimiser and loop states are dropped: it is for evaluation.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from avsr.checkpoints import read_checkpoint

__all__ = ["average_state_dicts", "select_last", "average_checkpoints", "main"]

log = logging.getLogger(__name__)

_DROP = ("optimizer_states", "lr_schedulers", "loops", "callbacks")


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors; other tensors from the last state.

    Raises:
        ValueError: no states, or the states do not have the same keys and shapes.
    """
    if not states:
        raise ValueError("nothing to average")
    keys = list(states[-1])
    for i, s in enumerate(states):
        if list(s) != keys:
            diff = set(s) ^ set(keys)
            raise ValueError(f"state {i} has different keys: {sorted(diff)[:5]}")
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        last = states[-1][k]
        if not torch.is_floating_point(last):
            out[k] = last.clone()
            continue
        acc = torch.zeros(last.shape, dtype=torch.float64)
        for i, s in enumerate(states):
            if s[k].shape != last.shape:
                raise ValueError(f"{k}: shape {tuple(s[k].shape)} in state {i} != "
                                 f"{tuple(last.shape)}")
            acc += s[k].double()
        out[k] = (acc / len(states)).to(last.dtype)
    return out


def _load(path: Path) -> dict[str, Any]:
    return read_checkpoint(path)


def select_last(paths: Sequence[str | Path], last: int) -> list[tuple[int, Path]]:
    """The ``last`` checkpoints with the highest ``global_step`` (one per step), oldest first."""
    by_step: dict[int, Path] = {}
    for p in paths:
        step = int(_load(Path(p)).get("global_step", -1))
        by_step.setdefault(step, Path(p))  # last.ckpt duplicates a step: keep one
    steps = sorted(by_step)[-last:]
    return [(s, by_step[s]) for s in steps]


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, last: int | None = None
                        ) -> dict[str, Any]:
    """Average ``paths`` (or their ``last`` newest) into ``out``; returns a small report."""
    chosen = select_last(paths, last or len(paths))
    if not chosen:
        raise ValueError("no checkpoints given")
    ckpts = [_load(p) for _, p in chosen]
    merged = {k: v for k, v in ckpts[-1].items() if k not in _DROP}
    merged["state_dict"] = average_state_dicts([c["state_dict"] for c in ckpts])
    merged["averaged_from"] = [str(p) for _, p in chosen]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(merged, tmp)
    tmp.replace(out)
    return {"out": str(out), "steps": [s for s, _ in chosen], "files": merged["averaged_from"]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files")
    parser.add_argument("--dir", help="take every *.ckpt of this directory")
    parser.add_argument("--last", type=int, default=None, help="average the N newest by step")
    parser.add_argument("--out", required=True, help="output checkpoint")
    args = parser.parse_args(argv)
    paths = list(args.checkpoints)
    if args.dir:
        paths += sorted(str(p) for p in Path(args.dir).glob("*.ckpt")
                        if Path(p).resolve() != Path(args.out).resolve())
    if not paths:
        parser.error("no checkpoints: give files or --dir")
    report = average_checkpoints(paths, args.out, args.last)
    print(f"averaged steps {report['steps']} -> {report['out']}")
    return report


if __name__ == "__main__":
    main()
