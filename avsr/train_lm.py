"""Train the shallow-fusion language model: ``python -m avsr.train_lm [overrides]``.

A causal Transformer LM (:class:`avsr.models.lm.TransformerLM`) over the recogniser's own
SentencePiece units, trained on the transcripts of the corpus' training split (plus optional
text files, one sentence per line) and reported by validation perplexity (per unit, eos
included). The checkpoint ``lm.pt`` holds the LM config, weights and figures; decoding uses it
with ``decode.lm_ckpt=.../lm.pt decode.beam.lm_weight=0.3``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from avsr.data.tokenizer import Tokenizer
from avsr.models.lm import TransformerLM, lm_batch
from avsr.utils.runtime import set_torch_threads

__all__ = ["perplexity", "train_lm", "main"]

log = logging.getLogger(__name__)


@torch.inference_mode()
def perplexity(lm: TransformerLM, sentences: list[list[int]], sos_id: int, eos_id: int,
               batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood per unit, eos included)."""
    was_training = lm.training
    lm.eval()
    nll, count = 0.0, 0
    for i in range(0, len(sentences), batch_size):
        inputs, targets, lengths = lm_batch(sentences[i:i + batch_size], sos_id, eos_id)
        logits = lm(inputs, lengths)
        nll += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum"))
        count += int(lengths.sum())
    lm.train(was_training)
    return math.exp(nll / max(count, 1))


def _texts(cfg: DictConfig, split: str) -> list[str]:
    corpus = hydra.utils.instantiate(cfg.corpus)
    return [u.text for u in corpus.utterances(split)]


def train_lm(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and save the LM described by ``cfg`` (``configs/train_lm.yaml``)."""
    start = time.time()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer = Tokenizer(cfg.tokenizer_path)
    texts = _texts(cfg, cfg.train_split)
    for f in cfg.get("text_files") or []:
        texts += [ln.strip() for ln in Path(f).read_text().splitlines() if ln.strip()]
    train = [ids for t in texts if (ids := tokenizer.encode(t))]
    val = [ids for t in _texts(cfg, cfg.val_split) if (ids := tokenizer.encode(t))]
    lm = hydra.utils.instantiate(cfg.lm, vocab_size=tokenizer.vocab_size)
    optimizer = hydra.utils.instantiate(cfg.optimizer)(lm.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        1.0, (s + 1) / max(1, cfg.warmup_steps)) * max(0.0, 1 - s / cfg.max_steps))
    log.info("LM: %d train / %d val sentences, %.2f M parameters", len(train), len(val),
             sum(p.numel() for p in lm.parameters()) / 1e6)
    history = []
    lm.train()
    for step in range(1, cfg.max_steps + 1):
        inputs, targets, lengths = lm_batch(rng.sample(train, min(cfg.batch_size, len(train))),
                                            tokenizer.sos_id, tokenizer.eos_id)
        loss = F.cross_entropy(lm(inputs, lengths).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            ppl = perplexity(lm, val, tokenizer.sos_id, tokenizer.eos_id)
            history.append({"step": step, "train/loss": float(loss), "val/ppl": ppl})
            log.info("step %d: train/loss %.3f val/ppl %.3f", step, float(loss), ppl)
    summary = {
        "val_ppl": history[-1]["val/ppl"] if history else None,
        "train_ppl": perplexity(lm, train[:2000], tokenizer.sos_id, tokenizer.eos_id),
        "unigram_ppl": _unigram_perplexity(train, val, tokenizer.vocab_size,
                                           tokenizer.eos_id),
        "history": history, "train_sentences": len(train), "val_sentences": len(val),
        "wall_s": round(time.time() - start, 1),
    }
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    lm_cfg = OmegaConf.to_container(cfg.lm, resolve=True)
    lm_cfg["vocab_size"] = tokenizer.vocab_size
    torch.save({"lm_config": lm_cfg, "state_dict": lm.state_dict(),
                "tokenizer_path": str(cfg.tokenizer_path), "summary": summary}, out)
    (out.parent / "lm_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"LM validation perplexity {summary['val_ppl']:.3f} (unigram baseline "
          f"{summary['unigram_ppl']:.3f}); saved {out}")
    return summary


def _unigram_perplexity(train: list[list[int]], val: list[list[int]], vocab: int,
                        eos_id: int) -> float:
    """Add-one unigram perplexity on the validation units: the floor an LM must beat."""
    counts = torch.ones(vocab)
    for s in train:
        counts += torch.bincount(torch.tensor(s + [eos_id]), minlength=vocab).float()
    logp = (counts / counts.sum()).log()
    units = [u for s in val for u in s + [eos_id]]
    return math.exp(-float(logp[torch.tensor(units)].mean())) if units else float("nan")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train_lm")
def main(cfg: DictConfig) -> None:
    set_torch_threads(cfg.get("num_threads"))
    train_lm(cfg)


if __name__ == "__main__":
    main()
