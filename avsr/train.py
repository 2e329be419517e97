"""Training entry point: ``python -m avsr.train +experiment=NAME [overrides]``.

Composes the Hydra config, makes sure the data exists (generating the synthetic corpus and
training the SentencePiece model when absent), builds the injected model and the stage's
LightningModule, trains with atomic checkpoints and, when ``evaluate=true``, decodes the test
split of the best checkpoint into the WER table.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.loggers import WandbLogger

from avsr.checkpoints.weights import apply_init
from avsr.data.tokenizer import vocabulary
from avsr.utils.checkpoint import AtomicCheckpointIO
from avsr.utils.instantiate import instantiate_callbacks, instantiate_loggers
from avsr.utils.runtime import prepare_data, set_torch_threads, skip_totals

__all__ = ["train", "main"]

log = logging.getLogger(__name__)


class _ConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config in every checkpoint so ``avsr.evaluate`` and
    ``avsr.transcribe`` rebuild the exact model from the checkpoint alone, and the tokenizer's
    pieces (``avsr_vocabulary``) so they can prove that they decode with the same ids."""

    def __init__(self, config: dict[str, Any], pieces: list[str] | None = None) -> None:
        self.config = config
        self.pieces = pieces

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["avsr_config"] = self.config
        if self.pieces is not None:
            checkpoint["avsr_vocabulary"] = self.pieces


def _timestamped_run_dir() -> Path | None:
    """The Hydra output folder of this job when its name is made from the clock (``${now:``
    in ``hydra.run.dir``, or ``hydra.sweep.dir`` for a multirun); None when the folder is
    fixed or the job was not started by Hydra (``train(cfg)`` from Python)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    node = hydra_cfg.sweep if hydra_cfg.get("mode") == RunMode.MULTIRUN else hydra_cfg.run
    pattern = OmegaConf.to_container(node, resolve=False).get("dir")  # as written, unresolved
    output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None)
    if output_dir is None or "${now:" not in str(pattern):
        return None
    return Path(output_dir)


def _resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """``ckpt_path=last`` resumes from this run's own ``last.ckpt`` if there is one.

    Raises:
        ValueError: ``ckpt_path=last`` in a run folder named after the clock (Hydra's default
            ``hydra.run.dir``): every start gets a new, empty folder, so it could never resume.
        FileNotFoundError: an explicit checkpoint path that does not exist.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        run_dir = _timestamped_run_dir()
        if run_dir is not None and (run_dir.resolve() == checkpoint_dir.resolve()
                                    or run_dir.resolve() in checkpoint_dir.resolve().parents):
            raise ValueError(
                f"ckpt_path=last resumes from <run dir>/checkpoints/last.ckpt, but this run's "
                f"folder {run_dir} is new (Hydra names it after the clock), so nothing could "
                "ever be resumed: give the run a fixed folder, e.g. hydra.run.dir=logs/my_run "
                "(the same one on every start)")
        last = checkpoint_dir / "last.ckpt"
        if last.is_file():
            return str(last)
        log.info("ckpt_path=last but %s does not exist: starting from scratch", last)
        return None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


_LEGACY = {
    "init_from": "init=[{format: FORMAT, path: FILE}] (format: auto_avsr|usr|avhubert|wav2vec2)",
    "init_weights": "init=[{format: weights, path: FILE, target: video_frontend}]",
}


def _check_legacy_keys(cfg: DictConfig) -> None:
    """The three ways of loading weights became one ``init`` list: an old key would be
    silently ignored, so it is an error that shows the new spelling."""
    for key, new in _LEGACY.items():
        if cfg.get(key) is not None:
            raise ValueError(f"'{key}' was replaced by the run-level init list: {new} (see "
                             "avsr/checkpoints/weights.py)")
    if cfg.get("stage") is not None and "init" in cfg.stage:
        raise ValueError("'stage.init' was replaced by the run-level init list: "
                         "init=[{path: CKPT, modules: [audio_frontend, video_frontend, fusion, "
                         "encoder]}] (see avsr/checkpoints/weights.py)")


def _finished_summary(output_dir: Path) -> dict[str, Any] | None:
    """The summary of a run that already finished in ``output_dir`` (its ``summary.json``,
    the last thing a run writes), or None."""
    path = output_dir / "summary.json"
    if not path.is_file():
        return None
    log.warning("%s exists: this run finished earlier and is not started again "
                "(skip_finished=true); delete it, or the folder, to run it again", path)
    return json.loads(path.read_text())


def _fit_wall_s(trainer: pl.Trainer, attempt_s: float) -> float:
    """Seconds of ``trainer.fit`` (validation included). The Timer that ``trainer.max_time``
    adds keeps its count in the checkpoints, so with one this spans every resumed attempt up
    to the last checkpoint; without one it is this attempt's ``attempt_s``."""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    return round(timer.time_elapsed("train") if timer is not None else attempt_s, 1)


def train(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Run one training job described by ``cfg``; return a summary dict.

    Args:
        cfg: the composed config (``configs/train.yaml``).
        extra_callbacks: callbacks added to those of ``cfg.callbacks`` (programmatic use).
    """
    start = time.time()
    _check_legacy_keys(cfg)
    if cfg.get("skip_finished"):
        # before the data and the model are built: a finished arm of a rerun sweep costs
        # nothing
        finished = _finished_summary(Path(cfg.paths.output_dir))
        if finished is not None:
            return finished
    which = cfg.get("eval_checkpoint", "best")  # checked before, not after, a long training
    if which not in ("best", "last"):
        raise ValueError(f"eval_checkpoint must be 'best' or 'last', got {which!r}")
    checkpoint_dir = Path(cfg.paths.checkpoint_dir)
    # before any work: ckpt_path=last in a fresh time-stamped folder could never resume
    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"), checkpoint_dir)
    set_torch_threads(cfg.get("num_threads"))
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule, tokenizer = prepare_data(cfg)
    if cfg.get("ssl_labels"):  # k-means targets of AV-HuBERT pre-training, made when absent
        make_labels = hydra.utils.instantiate(cfg.ssl_labels)
        if callable(make_labels):
            make_labels()
    with open_dict(cfg):
        cfg.vocab_size = tokenizer.vocab_size
    config_container = OmegaConf.to_container(cfg, resolve=True)

    model: torch.nn.Module = hydra.utils.instantiate(cfg.model)
    # public or earlier weights, before the stage is built (a teacher copies them)
    apply_init(model, OmegaConf.to_container(cfg.init, resolve=True) if cfg.get("init") else None)
    task: pl.LightningModule = hydra.utils.instantiate(cfg.stage, model=model, tokenizer=tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %.2f M parameters", n_params / 1e6)

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    pieces = vocabulary(tokenizer) if hasattr(tokenizer, "id_to_piece") else None
    callbacks.append(_ConfigInCheckpoint(config_container, pieces))
    callbacks.extend(extra_callbacks or [])
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()]
    )
    for lg in loggers:
        lg.log_hyperparams(config_container)

    fit_start = time.time()
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_s = time.time() - fit_start
    for lg in loggers:
        if isinstance(lg, WandbLogger) and trainer.is_global_zero:
            # flush and close the (offline) run now: Lightning leaves it open, and its files
            # are incomplete until the wandb service is told the run ended
            lg.experiment.finish()

    best = None
    for cb in trainer.checkpoint_callbacks:
        best = getattr(cb, "best_model_path", None) or getattr(cb, "last_model_path", None)
        if best:
            break
    summary: dict[str, Any] = {
        "output_dir": str(output_dir),
        "best_checkpoint": best or None,
        "last_checkpoint": str(checkpoint_dir / "last.ckpt")
        if (checkpoint_dir / "last.ckpt").is_file() else None,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "parameters": n_params,
        "train_wall_s": round(time.time() - start, 1),
        "fit_wall_s": _fit_wall_s(trainer, fit_s),
        "resumed_from": ckpt_path,
        "skipped_media": skip_totals(datamodule.skip_summary()),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()
                    if torch.is_tensor(v) and v.numel() == 1},
    }
    if summary["skipped_media"]["total"]:
        log.warning("skipped %d unreadable items during training: %s",
                    summary["skipped_media"]["total"], summary["skipped_media"]["by_problem"])

    # which weights the test uses: the best validated ("best") or the final ones ("last"; a
    # schedule annealed to the end of a time budget finishes after the last validation)
    chosen = best or summary["last_checkpoint"]
    if which == "last" and summary["last_checkpoint"]:
        chosen = summary["last_checkpoint"]
    summary["evaluated_checkpoint"] = chosen
    if cfg.get("test_after_fit"):  # stages with a test_step (word classification: accuracy)
        tested = trainer.test(task, datamodule=datamodule, ckpt_path=chosen)
        summary["test"] = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    if not trainer.is_global_zero:  # DDP: rank 0 evaluates and writes the summary
        return summary
    if cfg.get("evaluate") and chosen:
        from avsr.evaluate import evaluate_checkpoint

        results = evaluate_checkpoint(
            ckpt_path=chosen,
            eval_cfg=cfg.eval,
            decode_cfg=cfg.decode,
            output_dir=output_dir / "eval",
        )
        summary["eval"] = results["summary"]
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("run summary written to %s", output_dir / "summary.json")
    return summary


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
