"""Linear probes of a run's encoder (issue 21): how much of the transcript the frozen encoder
states of each stream hold, as read by one linear CTC layer.

For each checkpoint the encoder side (front-ends, fusion, encoder) is rebuilt and loaded by
:func:`avsr.checkpoints.load_run` and frozen. Its states are computed once per stream, with
the evaluation transforms, for the labelled training utterances (the run's own labelled part:
``labelled_fraction``, ``labelled_seed``) and for the validation split. One linear layer
D -> V is then trained on them (standardised per channel by the training states' statistics,
as MAE's probe does, unless ``--no-standardise``) with the CTC loss for a fixed number of steps
on small batches. The table gives its greedy CTC WER on the validation split, its CTC loss per
target token there (graded where a weak encoder leaves every WER near 100 %), and the
effective rank (RankMe, :mod:`avsr.metrics.rank`) of the validation states: near 1 for a
collapsed encoder. ``--layer K`` probes the output of encoder block K instead of the encoder's
(BRAVEn's targets average all blocks; the last block of a pre-trained student feeds a
predictor, not a CTC layer). ``random`` is a freshly initialised model of the first
checkpoint's config: the floor a trained encoder must clear.
Every row uses the data and the tokenizer of that first checkpoint.

    python benchmarks/linear_probe.py --ckpt braven=logs/braven/checkpoints/last.ckpt \\
        --ckpt supervised=logs/i_supervised/checkpoints/last.ckpt --ckpt random \\
        --out benchmarks/results/linear_probe
    # the EMA teacher of a pre-training run, on another copy of the corpus
    python benchmarks/linear_probe.py --ckpt PRE.ckpt --source objective.teacher.model \\
        --data corpus.root=data/synthetic/grid --out OUT

Writes ``<out>/probe.json`` and ``<out>/probe.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset

from avsr.checkpoints import instantiate_stored, load_run
from avsr.data.tokenizer import check_vocabulary
from avsr.decoding.greedy import ctc_greedy
from avsr.evaluate import checkpoint_tokenizer, evaluation_data_config
from avsr.metrics.rank import rankme
from avsr.metrics.wer import ErrorCounter
from avsr.modalities import MODALITIES

ENCODER_SIDE = ("audio_frontend", "video_frontend", "fusion", "encoder")
RANDOM = "random"


class Row(NamedTuple):
    """One encoder to probe: its name and checkpoint (None: freshly initialised)."""

    name: str
    path: Path | None


class Features(NamedTuple):
    """Frozen encoder states of one stream: per utterance (T_i, D) states, target tokens and
    transcript."""

    states: list[torch.Tensor]
    tokens: list[torch.Tensor]
    texts: list[str]


def parse_rows(specs: Sequence[str]) -> list[Row]:
    """``[NAME=]PATH`` or ``random`` for each ``--ckpt``; a path's default name is its run
    directory (``<run>/checkpoints/last.ckpt`` -> ``<run>``). A NAME holds no ``/``, so a
    path with ``=`` in it (a Hydra multirun job directory) needs no name.

    Raises:
        ValueError: no checkpoint besides ``random`` (it takes the config of the first), or a
            name given twice.
    """
    rows = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name:
            name, path = "", spec
        if path == RANDOM:
            rows.append(Row(name or RANDOM, None))
            continue
        p = Path(path)
        default = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        rows.append(Row(name or default, p))
    if not any(r.path is not None for r in rows):
        raise ValueError(f"--ckpt {list(specs)}: give at least one checkpoint; 'random' is a "
                         "fresh model of the first checkpoint's config")
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"--ckpt: row names must differ, got {names} (name them NAME=PATH)")
    return rows


def streams(model: nn.Module, data_modalities: Sequence[str],
            wanted: Sequence[str] | None = None) -> list[str]:
    """The streams of ``wanted`` (default: all) that both the model's front-ends and the
    data's media allow."""
    has = {"audio": getattr(model, "audio_frontend", None) is not None and "audio" in
           data_modalities,
           "video": getattr(model, "video_frontend", None) is not None and "video" in
           data_modalities}
    has["audiovisual"] = has["audio"] and has["video"]
    return [m for m in (wanted or MODALITIES) if has[m]]


def probe_data(run_cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The run's data config for probing: its labelled part and validation split, loaded
    clean (evaluation transforms for both, no noise), in this process."""
    cfg = evaluation_data_config(run_cfg, OmegaConf.from_dotlist(list(overrides)))
    cfg = OmegaConf.merge(cfg, {"train_data": "labelled", "noise": None, "num_workers": 0,
                                "cache": False})
    # probing reads fixed states: the same view of a training utterance as of a validation one
    cfg.train_video_transform = cfg.eval_video_transform
    cfg.train_audio_transform = cfg.eval_audio_transform
    return cfg


def _loader(dataset: Any, limit: int | None, batch_size: int) -> DataLoader:
    if limit is not None:
        dataset_view = Subset(dataset, range(min(limit, len(dataset))))
    else:
        dataset_view = dataset
    return DataLoader(dataset_view, batch_size=batch_size, collate_fn=dataset.collate)


@torch.no_grad()
def encode(model: nn.Module, loader: DataLoader, modalities: Sequence[str],
           layer: int | None = None) -> dict[str, Features]:
    """The frozen encoder's states of each stream for every utterance of ``loader`` (the
    media are read once for all streams): its output, or with ``layer`` k the output of
    block k (1-based)."""
    out = {m: Features([], [], []) for m in modalities}
    for batch in loader:
        if not batch["ids"]:
            continue  # every item was unreadable (counted by the dataset)
        for m in modalities:
            enc, lengths, *hidden = model.encode_modality(
                batch.get("audio"), batch["audio_lengths"], batch.get("video"),
                batch["video_lengths"], m, return_hidden=layer is not None)
            if layer is not None:
                blocks = hidden[0]
                if not 1 <= layer <= len(blocks):
                    raise ValueError(f"--layer {layer}: the encoder has {len(blocks)} blocks")
                enc = blocks[layer - 1]
            for b in range(len(batch["ids"])):
                out[m].states.append(enc[b, :int(lengths[b])].clone())
                out[m].tokens.append(batch["tokens"][b, :int(batch["token_lengths"][b])].clone())
                out[m].texts.append(batch["texts"][b])
    return out


def standardise(train: Features, *others: Features, eps: float = 1e-5
                ) -> tuple[Features, ...]:
    """Every split's states shifted and scaled per channel by the training frames' mean and
    standard deviation (MAE's linear probe: BatchNorm without affine in front of the layer;
    He et al., CVPR 2022), so that encoders whose states differ in scale get the same probe.

    Raises:
        ValueError: no training frame.
    """
    frames = torch.cat(train.states) if train.states else torch.empty(0)
    if frames.numel() == 0:
        raise ValueError("no training frames to standardise the probe's input with")
    mean, std = frames.mean(0), frames.std(0, unbiased=False)
    return tuple(Features([(x - mean) / (std + eps) for x in f.states], f.tokens, f.texts)
                 for f in (train, *others))


def _pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in states])
    return nn.utils.rnn.pad_sequence(list(states), batch_first=True), lengths


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of epochs in a fresh random order each (every utterance once per epoch)."""
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield order[i:i + batch_size]


def train_head(data: Features, vocab_size: int, blank_id: int, steps: int, batch_size: int,
               lr: float, seed: int) -> tuple[nn.Linear, float]:
    """A linear CTC layer D -> V trained on frozen states; the head and its last batch loss.

    Raises:
        ValueError: no training utterance.
    """
    if not data.states:
        raise ValueError("no labelled training utterance to probe with")
    torch.manual_seed(seed)
    head = nn.Linear(data.states[0].shape[-1], vocab_size)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    batches = _batches(len(data.states), batch_size, torch.Generator().manual_seed(seed))
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = next(batches).tolist()
        x, x_lengths = _pad([data.states[i] for i in idx])
        targets = [data.tokens[i] for i in idx]
        log_probs = head(x).log_softmax(-1).transpose(0, 1)  # (T, B, V)
        # zero_infinity: a state sequence shorter than its transcript cannot be aligned
        loss = F.ctc_loss(log_probs, torch.cat(targets), x_lengths,
                          torch.tensor([t.numel() for t in targets]), blank=blank_id,
                          zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head, float(loss.detach())


@torch.no_grad()
def mean_ctc(head: nn.Linear, data: Features, blank_id: int, batch_size: int = 32) -> float:
    """The probe's CTC loss on ``data``: per utterance divided by its target length, averaged
    over utterances (``F.ctc_loss``'s ``mean``). Graded where the WER is near 100 %."""
    total = 0.0
    for i in range(0, len(data.states), batch_size):
        x, x_lengths = _pad(data.states[i:i + batch_size])
        targets = data.tokens[i:i + batch_size]
        lengths = torch.tensor([t.numel() for t in targets])
        nll = F.ctc_loss(head(x).log_softmax(-1).transpose(0, 1), torch.cat(targets), x_lengths,
                         lengths, blank=blank_id, reduction="none", zero_infinity=True)
        total += float((nll / lengths.clamp(min=1)).sum())
    return total / max(len(data.states), 1)


@torch.no_grad()
def score(head: nn.Linear, data: Features, tokenizer: Any, batch_size: int = 32) -> float:
    """Greedy CTC WER (%) of the probe on ``data``."""
    counter = ErrorCounter()
    for i in range(0, len(data.states), batch_size):
        x, x_lengths = _pad(data.states[i:i + batch_size])
        hyps = ctc_greedy(head(x).log_softmax(-1), x_lengths, tokenizer.blank_id)
        counter.update(data.texts[i:i + batch_size], [tokenizer.decode(h) for h in hyps])
    return 100.0 * counter.wer


def _model(row: Row, reference: Any, source: str, seed: int) -> tuple[nn.Module, Any]:
    """The row's model in eval mode (frozen) and its stored vocabulary (None: not stored, or a
    random row, which shares the reference's)."""
    if row.path is None:
        torch.manual_seed(seed)
        model = instantiate_stored(reference.config.model, f"{reference.path}: model")
        pieces = None
    elif row.path == reference.path:
        model, pieces = reference.model, reference.vocabulary
    else:
        run = load_run(row.path, source=source, parts=ENCODER_SIDE)
        model, pieces = run.model, run.vocabulary
    return model.eval().requires_grad_(False), pieces


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = parse_rows(args.ckpt)
    first = next(r for r in rows if r.path is not None)
    reference = load_run(first.path, source=args.source, parts=ENCODER_SIDE)
    datamodule = hydra.utils.instantiate(probe_data(reference.config, args.data))
    tokenizer = checkpoint_tokenizer(datamodule, first.path, reference.config,
                                     reference.vocabulary)
    datamodule.setup("fit")
    loaders = {"train": _loader(datamodule.datasets["train"], args.train_limit, args.batch_size),
               "val": _loader(datamodule.datasets["val"], args.val_limit, args.batch_size)}
    results: dict[str, Any] = {"args": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                        for k, v in vars(args).items()},
                               "reference": str(first.path), "rows": {}}
    for row in rows:
        start = time.time()
        model, pieces = _model(row, reference, args.source, args.seed)
        if pieces is not None:  # the probe reads targets with the reference's tokenizer
            check_vocabulary(tokenizer, pieces, f"checkpoint {row.path}")
        entry: dict[str, Any] = {"ckpt": str(row.path) if row.path else RANDOM, "wer": {},
                                 "train_loss": {}, "val_loss": {}, "rank": {}}
        modalities = streams(model, datamodule.modalities, args.modalities)
        features = {split: encode(model, loader, modalities, args.layer)
                    for split, loader in loaders.items()}
        for m in modalities:
            train, val = features["train"][m], features["val"][m]
            # collapse gauge of the states themselves (before any standardising)
            entry["rank"][m] = round(float(rankme(torch.cat(val.states))), 2) if val.states \
                else None
            if args.standardise:
                train, val = standardise(train, val)
            head, _ = train_head(train, tokenizer.vocab_size, tokenizer.blank_id,
                                 args.steps, args.batch_size, args.lr, args.seed)
            entry["wer"][m] = round(score(head, val, tokenizer), 2)
            # over the whole split, not the last batch: comparable between rows
            entry["train_loss"][m] = round(mean_ctc(head, train, tokenizer.blank_id), 4)
            entry["val_loss"][m] = round(mean_ctc(head, val, tokenizer.blank_id), 4)
            entry["utterances"] = {"train": len(train.states), "val": len(val.states)}
            print(f"[{row.name}] {m}: val WER {entry['wer'][m]:.1f} %, CTC per token train "
                  f"{entry['train_loss'][m]:.3f} val {entry['val_loss'][m]:.3f}", flush=True)
        entry["wall_s"] = round(time.time() - start, 1)
        results["rows"][row.name] = entry
        write(results, Path(args.out))
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown: validation greedy CTC WER (%) and CTC loss per token of each row's probe per
    stream."""
    head = "| encoder | " + " | ".join(MODALITIES) + " | train / val utts | wall s |\n"
    head += "|---" * (len(MODALITIES) + 3) + "|\n"
    lines = []
    for name, r in results["rows"].items():
        loss, rank = r.get("val_loss", {}), r.get("rank", {})
        cells = [f"{r['wer'][m]:.1f} / {loss[m]:.2f} / {rank.get(m)}" if m in loss else
                 f"{r['wer'][m]:.1f}" if m in r["wer"] else "–" for m in MODALITIES]
        utts = r.get("utterances", {})
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {utts.get('train', 0)} / {utts.get('val', 0)} | {r['wall_s']} |")
    a = results["args"]
    where = f"block {a['layer']}" if a.get("layer") else "encoder"
    if a.get("standardise"):
        where = "standardised " + where
    note = (f"\nLinear CTC probe, {a['steps']} steps of {a['batch_size']} utterances, lr "
            f"{a['lr']}, on frozen `{a['source']}` {where} states; validation greedy CTC WER "
            f"(%) / CTC loss per target token / effective rank (RankMe) of the validation "
            f"states. Data and tokenizer of "
            f"{results['reference']}.\n")
    return head + "\n".join(lines) + "\n" + note


def write(results: dict[str, Any], out: Path) -> None:
    """``<out>/probe.json`` and ``<out>/probe.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(results, indent=2))
    (out / "probe.md").write_text(table(results))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", action="append", required=True,
                   help="[NAME=]PATH of a training checkpoint, or 'random' (a fresh model of "
                        "the first checkpoint's config); repeat for rows")
    p.add_argument("--source", default="model",
                   help="the model's prefix in the checkpoints (objective.teacher.model: a "
                        "pre-training run's EMA teacher)")
    p.add_argument("--modalities", nargs="+", choices=MODALITIES, default=None,
                   help="streams to probe (default: every stream the model and data allow)")
    p.add_argument("--layer", type=int, default=None,
                   help="probe the output of encoder block K (1-based) instead of the encoder's")
    p.add_argument("--no-standardise", dest="standardise", action="store_false",
                   help="probe the raw states (default: per-channel standardised by the "
                        "training frames' statistics)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per probe")
    p.add_argument("--batch-size", type=int, default=8, help="utterances per step")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the probe")
    p.add_argument("--train-limit", type=int, default=None,
                   help="at most this many labelled utterances (default: all)")
    p.add_argument("--val-limit", type=int, default=None,
                   help="at most this many validation utterances (default: all)")
    p.add_argument("--data", nargs="*", default=[],
                   help="KEY=VALUE overrides of the first checkpoint's data config, e.g. "
                        "corpus.root=DIR labelled_fraction=0.1")
    p.add_argument("--seed", type=int, default=0, help="seeds the random row and the probes")
    p.add_argument("--out", required=True, help="directory for probe.json and probe.md")
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        p.error("--steps and --batch-size must be positive")
    return run(args)


if __name__ == "__main__":
    main()
