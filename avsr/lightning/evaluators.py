"""What a training task scores on the validation (and test) split.

An evaluator sees every evaluation batch with the objective's logs and per-stream outputs
(:meth:`~avsr.objectives.base.Objective.evaluate`) and logs through the task. Corpus-level
scores (WER, accuracy) are sums of counts reduced across DDP ranks once per epoch, so they are
exact, not an average of per-rank ratios.

- :class:`ObjectiveLoss`: the objective's own loss and parts (``val/loss``: the checkpoint
  monitor of pre-training).
- :class:`CTCGreedyWER`: greedy CTC WER per stream (``val/wer_<m>``, ``val/wer``). Greedy CTC
  is cheap and tracks the final beam/attention WER closely enough to select checkpoints; the
  full decoding matrix is ``avsr.evaluate``'s job.
- :class:`Accuracy`: top-1 accuracy per stream of a classifier (``val/acc_<m>``, ``val/acc``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from avsr.decoding.greedy import ctc_greedy
from avsr.metrics.wer import ErrorCounter

__all__ = ["Evaluator", "ObjectiveLoss", "CTCGreedyWER", "Accuracy"]

Log = Callable[..., None]


def _reduce(counts: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)  # sums: exact corpus-level ratios across ranks
    return counts


class Evaluator:
    """Base class: ``start(prefix, tokenizer, modalities)`` per epoch, ``step(batch, logs,
    outputs, log)`` per batch, ``end(device, log)`` per epoch. ``log`` is the LightningModule's
    ``log``. Every rank reduces the counts of every stream in ``modalities`` (in that order),
    whether or not its own batches had the stream, so the collectives match."""

    def start(self, prefix: str, tokenizer: Any, modalities: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.tokenizer = tokenizer
        self.modalities = modalities

    def step(self, batch: Mapping[str, Any], logs: Mapping[str, torch.Tensor], outputs: Any,
             log: Log) -> None:
        raise NotImplementedError

    def end(self, device: torch.device, log: Log) -> None:
        """Nothing to finish by default."""


class ObjectiveLoss(Evaluator):
    """Logs the objective's evaluation logs as ``<prefix>/<name>`` (epoch means over ranks)."""

    def step(self, batch, logs, outputs, log) -> None:
        log_dict = {f"{self.prefix}/{k}": v.detach() for k, v in logs.items()}
        for name, value in log_dict.items():
            log(name, value, batch_size=len(batch["ids"]), on_step=False, on_epoch=True,
                sync_dist=True)


class CTCGreedyWER(Evaluator):
    """Greedy CTC WER of each stream, against ``batch["texts"]``.

    Reads per-stream outputs with ``index``, ``ctc_log_probs`` and ``enc_lengths``
    (:class:`~avsr.models.avsr_model.ModalityOutput`); a task without a tokenizer logs none.
    """

    def start(self, prefix: str, tokenizer: Any, modalities: tuple[str, ...]) -> None:
        super().start(prefix, tokenizer, modalities)
        self.counters = {m: ErrorCounter() for m in modalities}

    def step(self, batch, logs, outputs, log) -> None:
        if self.tokenizer is None or not outputs:
            return
        for m, o in outputs.items():
            hyps = ctc_greedy(o.ctc_log_probs, o.enc_lengths, self.tokenizer.blank_id)
            idx = o.index.tolist()
            self.counters[m].update(
                [batch["texts"][i] for i in idx], [self.tokenizer.decode(h) for h in hyps],
                [batch["ids"][i] for i in idx])

    def end(self, device, log) -> None:
        wers = []
        for m, c in self.counters.items():
            counts = _reduce(torch.tensor([c.edits, c.words], dtype=torch.float64, device=device))
            if counts[1] > 0:
                w = float(counts[0] / counts[1])
                wers.append(w)
                log(f"{self.prefix}/wer_{m}", w, prog_bar=True, sync_dist=False)
        if wers:
            log(f"{self.prefix}/wer", sum(wers) / len(wers), prog_bar=True, sync_dist=False)


class Accuracy(Evaluator):
    """Top-1 accuracy of each stream's ``(index, logits)`` against ``batch["labels"]``."""

    def start(self, prefix: str, tokenizer: Any, modalities: tuple[str, ...]) -> None:
        super().start(prefix, tokenizer, modalities)
        self.counts = {m: torch.zeros(2, dtype=torch.float64) for m in modalities}

    def step(self, batch, logs, outputs, log) -> None:
        for m, (index, logits) in (outputs or {}).items():
            labels = batch["labels"].index_select(0, index)
            correct = float((logits.argmax(-1) == labels).sum())
            self.counts[m] += torch.tensor([correct, float(labels.numel())], dtype=torch.float64)

    def end(self, device, log) -> None:
        accs = []
        for m, counts in self.counts.items():
            counts = _reduce(counts.to(device))
            if counts[1] > 0:
                acc = float(counts[0] / counts[1])
                accs.append(acc)
                log(f"{self.prefix}/acc_{m}", acc, prog_bar=True, sync_dist=False)
        if accs:
            log(f"{self.prefix}/acc", sum(accs) / len(accs), sync_dist=False)
