"""Do the unified model's streams pull its shared weights the same way? (issue 21)

USR trains one model on the audio, video and audio-visual streams of every batch; the loss is
their sum, so each shared weight follows the sum of three gradients. Where the streams'
gradients point apart (cosine near 0 or negative) a step helps one stream at another's
expense, and the unified model learns each modality slower per step than a model of that
modality alone. This measures it on a checkpoint: for each validation batch, the gradient of
each stream's hybrid loss (the objective of the run, ``SupervisedObjective.stream_losses``)
with respect to each part of the model, then per part and stream pair the cosine of the two
gradients (mean over batches) and of their sums over all batches, and each stream's gradient
norm.

    python benchmarks/stream_gradients.py \\
        --ckpt logs/claim_unified/sweep/unified/checkpoints/last.ckpt --batches 8 \\
        --out benchmarks/results/claim_unified/stream_gradients.json

The model is in eval mode (no dropout, batch-norm running statistics), so two runs agree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import hydra  # noqa: E402

from avsr.checkpoints import load_run  # noqa: E402
from avsr.evaluate import checkpoint_tokenizer  # noqa: E402


def part_of(name: str) -> str:
    """The top-level model part of a parameter name (``encoder.layers.0.w`` -> ``encoder``)."""
    return name.split(".", 1)[0]


def stream_gradients(model: nn.Module, objective: Any, batch: Mapping[str, Any]
                     ) -> dict[str, dict[str, torch.Tensor]]:
    """Per stream, per model part, the flattened gradient of that stream's loss.

    Returns:
        ``{stream: {part: (P,) gradient}}``; a part whose gradient is None or all zeros
        (the stream does not reach it) is absent.
    """
    parts, _ = objective.stream_losses(model, batch)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads: dict[str, dict[str, torch.Tensor]] = {}
    for m, loss in parts.items():
        got = torch.autograd.grad(loss["loss"], [p for _, p in named], retain_graph=True,
                                  allow_unused=True)
        by_part: dict[str, list[torch.Tensor]] = {}
        for (n, _), g in zip(named, got):
            if g is not None:
                by_part.setdefault(part_of(n), []).append(g.reshape(-1))
        # a part the stream does not run gets no gradient, or an exact zero one (e.g. the
        # video front-end of the audio stream): it is no direction to compare
        grads[m] = {k: flat for k, v in by_part.items() if (flat := torch.cat(v)).any()}
    return grads


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def summarise(per_batch: Iterable[dict[str, dict[str, torch.Tensor]]]) -> dict[str, Any]:
    """Cosines per part and stream pair: mean over batches, and of the summed gradients;
    mean gradient norm per part and stream."""
    cos: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    sums: dict[tuple[str, str], torch.Tensor] = {}
    batches = 0
    for grads in per_batch:
        batches += 1
        for m, by_part in grads.items():
            for part, g in by_part.items():
                norms.setdefault(f"{part}/{m}", []).append(float(g.norm()))
                sums[(m, part)] = sums[(m, part)] + g if (m, part) in sums else g.clone()
        for a, b in itertools.combinations(sorted(grads), 2):
            for part in sorted(set(grads[a]) & set(grads[b])):
                cos.setdefault(f"{part}/{a}~{b}", []).append(_cos(grads[a][part],
                                                                   grads[b][part]))
    overall = {}
    for key in cos:
        part, pair = key.split("/")
        a, b = pair.split("~")
        overall[key] = _cos(sums[(a, part)], sums[(b, part)])
    return {"batches": batches,
            "cosine_mean_over_batches": {k: sum(v) / len(v) for k, v in cos.items()},
            "cosine_min_over_batches": {k: min(v) for k, v in cos.items()},
            "cosine_of_summed_gradients": overall,
            "grad_norm_mean": {k: sum(v) / len(v) for k, v in norms.items()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="training checkpoint of a supervised run")
    p.add_argument("--batches", type=int, default=8, help="validation batches")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    start = time.time()
    run = load_run(args.ckpt)
    model, cfg = run.model, run.config
    datamodule = hydra.utils.instantiate(cfg.data)
    tokenizer = checkpoint_tokenizer(datamodule, args.ckpt, cfg, run.vocabulary)
    datamodule.setup("validate")
    objective = hydra.utils.instantiate(cfg.stage.objective)
    objective.bind_tokenizer(tokenizer)
    model.eval()

    def batches():
        for i, batch in enumerate(datamodule.val_dataloader()):
            if i >= args.batches:
                return
            yield stream_gradients(model, objective, batch)

    result = {"checkpoint": args.ckpt, **summarise(batches()),
              "wall_s": round(time.time() - start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for key, value in sorted(result["cosine_of_summed_gradients"].items()):
        print(f"{key:40s} summed {value:+.3f}   per batch "
              f"{result['cosine_mean_over_batches'][key]:+.3f}")
    return result


if __name__ == "__main__":
    main()
