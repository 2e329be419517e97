"""Semi-supervised diagnostics: the teacher's pseudo-label WER against the unlabelled
utterances' hidden transcripts, which reach the metrics and never a loss."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import jiwer
import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir

from avsr.data.corpora import LRS3, normalize_text
from avsr.data.datamodule import AVDataModule
from avsr.decoding.greedy import ctc_greedy
from avsr.lightning.task import TrainTask
from avsr.models.avsr_model import AVSRModel
from avsr.models.ctc import CTCHead
from avsr.models.decoder import TransformerDecoder
from avsr.models.encoder import TransformerEncoder
from avsr.models.frontends.filterbank import FilterbankFrontend
from avsr.models.frontends.video_resnet import VideoResNet
from avsr.models.fusion import ConcatFusion
from avsr.objectives.hybrid import HybridCTCAttentionLoss
from avsr.objectives.semi import SemiSupervisedObjective
from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
BLANK, EOS = 0, 2


class _Words:
    """A tokenizer stand-in: id i is the word ``w<i>``."""

    blank_id, sos_id, eos_id, vocab_size = BLANK, EOS, EOS, 10

    def decode(self, ids) -> str:
        return " ".join(f"w{int(i)}" for i in ids if int(i) not in (BLANK, EOS))


def _task() -> TrainTask:
    torch.manual_seed(0)
    model = AVSRModel(FilterbankFrontend(output_dim=8),
                      VideoResNet(widths=[4, 4, 8, 8], stem_channels=4),
                      ConcatFusion(audio_dim=8, video_dim=8, output_dim=16),
                      TransformerEncoder(16, 2, 2, 32), TransformerDecoder(10, 16, 1, 2, 32),
                      CTCHead(16, 10))
    # threshold 0.5: some labels are dropped, yet every label counts in the WER
    objective = SemiSupervisedObjective(loss=HybridCTCAttentionLoss(ctc_weight=0.3),
                                        threshold=0.5, max_len_ratio=0.5)
    task = TrainTask(model=model, objective=objective, tokenizer=_Words(),
                     optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    task.configure_model()
    task.objective.start_step(task.model, 0)
    return task


def _batch(references: list[str] | None) -> dict:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([12, 9, 7])
    unlabelled = {"ids": ["a", "b", "c"], "video": torch.rand(3, 12, 1, 32, 32, generator=g),
                  "video_lengths": lengths, "audio": torch.randn(3, 12 * 640, generator=g),
                  "audio_lengths": lengths * 640}
    if references is not None:
        unlabelled["reference_text"] = references
    labelled = {"ids": ["d"], "video": torch.rand(1, 8, 1, 32, 32, generator=g),
                "video_lengths": torch.tensor([8]), "audio": torch.randn(1, 8 * 640, generator=g),
                "audio_lengths": torch.tensor([8 * 640]), "tokens": torch.tensor([[3, 4, 5]]),
                "token_lengths": torch.tensor([3])}
    return {"labelled": labelled, "unlabelled": unlabelled}


def test_hidden_transcripts_never_change_the_loss():
    task = _task()
    outs = []
    for refs in (None, ["w3 w4", "w5", "w6 w7 w8"], ["w1 w1 w1 w1", "", "w9"]):
        torch.manual_seed(5)  # the same dropout draws in every pass
        outs.append(task.objective(task.model, _batch(refs)))
    assert "pseudo_wer_audiovisual" not in outs[0]
    for out in outs[1:]:
        assert torch.equal(out["loss"], outs[0]["loss"])
        for key in ("loss_unlab_video", "loss_lab_audio", "pseudo_att_kept"):
            assert torch.equal(out[key], outs[0][key]), key
    assert outs[1]["pseudo_wer_audiovisual"] != outs[2]["pseudo_wer_audiovisual"]


def test_pseudo_label_wer_is_jiwer_of_the_teachers_decoded_labels():
    task = _task()
    refs = ["w3 w4 w5", "", "w6 w7"]  # the empty one (an unlabelled part) is left out
    out = task.objective(task.model, _batch(refs))
    # decode the same teacher's labels on another path: its greedy CTC and its decoder's
    # tokens up to eos
    media = _batch(None)["unlabelled"]
    teacher = task.objective.teacher.model
    enc, lengths = teacher.encode_modality(media["audio"], media["audio_lengths"],
                                           media["video"], media["video_lengths"], "audiovisual")
    words = _Words()
    ctc_hyps = [words.decode(h) for h in ctc_greedy(teacher.ctc(enc), lengths, BLANK)]
    _, att = task.objective.pseudo_label(media)
    att_hyps = [words.decode(att.tokens[b, :int(att.lengths[b])]) for b in range(3)]
    assert any(att_hyps) and any(ctc_hyps)
    kept = [0, 2]
    for key, hyps in (("pseudo_wer_audiovisual", att_hyps),
                      ("pseudo_wer_ctc_audiovisual", ctc_hyps)):
        expected = jiwer.wer([refs[i] for i in kept], [hyps[i] for i in kept])
        assert float(out[key]) == pytest.approx(expected, abs=1e-6), key


def test_unlabelled_batches_carry_transcripts_only_as_references(lrs3_root, tmp_path):
    """labelled_fraction hides transcripts from training: the unlabelled loader gives no
    tokens and no texts, the transcripts under reference_text; the labelled loader is as
    before."""
    corpus = LRS3(lrs3_root)
    dm = AVDataModule(corpus=corpus, tokenizer_path=tmp_path / "spm.model", vocab_size=40,
                      max_frames=60, seed=0, labelled_fraction=0.5,
                      train_data="labelled+unlabelled")
    dm.setup("fit")
    truth = {u.id: normalize_text(u.text) for u in corpus.utterances("train")}
    loaders = dm.train_dataloader()
    seen = 0
    for batch in loaders["unlabelled"]:
        assert batch["tokens"].numel() == 0 and not any(batch["texts"])
        assert batch["reference_text"] == [truth[i] for i in batch["ids"]]
        seen += len(batch["ids"])
    assert seen == len(truth)
    for batch in loaders["labelled"]:
        assert "reference_text" not in batch
        assert batch["texts"] == [truth[i] for i in batch["ids"]]
        assert int(batch["token_lengths"].min()) > 0


class _PseudoLabelProbe(pl.Callback):
    """Before each step: the unlabelled batch holds no label, and jiwer's WER of the teacher's
    labels (decoded here) against its reference transcripts; after it: the logged value."""

    def __init__(self) -> None:
        self.expected: list[float] = []
        self.logged: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        unl = batch["unlabelled"]
        assert int(unl["token_lengths"].sum()) == 0 and not any(unl["texts"])
        refs = unl["reference_text"]
        assert len(refs) == len(unl["ids"]) and all(r.split() for r in refs)
        _, att = pl_module.objective.pseudo_label(unl)
        tokenizer = trainer.datamodule.tokenizer
        hyps = [tokenizer.decode(att.tokens[b, :int(att.lengths[b])].tolist())
                for b in range(len(refs))]
        self.expected.append(jiwer.wer(refs, hyps))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.logged.append(float(trainer.callback_metrics["train/pseudo_wer_audiovisual"]))


def test_a_tiny_semi_stage_logs_the_teachers_pseudo_label_wer(tiny_synth_root, tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_low_semi", "evaluate=false", "trainer.max_steps=1",
            "trainer.max_time=null", "trainer.log_every_n_steps=1", "data.labelled_fraction=0.5",
            "trainer.num_sanity_val_steps=0", "trainer.val_check_interval=2",
            "trainer.check_val_every_n_epoch=null",
            *tiny_overrides(tiny_synth_root, tmp_path)])
    probe = _PseudoLabelProbe()
    assert train(cfg, extra_callbacks=[probe])["global_step"] == 1
    assert probe.logged == pytest.approx(probe.expected, abs=1e-6)
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    logged = [r for r in rows if r.get("train/pseudo_wer_audiovisual")]
    assert len(logged) == 1 and logged[0].get("train/pseudo_wer_ctc_audiovisual")
    assert logged[0].get("train/pseudo_att_kept") and logged[0].get("train/pseudo_ctc_kept")
