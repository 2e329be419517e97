"""Pseudo-label heads of the semi-supervised stage: fresh (USR) or copies of the model's own
output layers (after a supervised warm-up)."""

from __future__ import annotations

import functools

import pytest
import torch

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

IDS = {"blank_id": 0, "sos_id": 2, "eos_id": 2}  # avsr SentencePiece ids; no tokenizer here


def _task(heads_from_model: bool, tie: bool = False) -> TrainTask:
    torch.manual_seed(0)
    model = AVSRModel(FilterbankFrontend(output_dim=8),
                      VideoResNet(widths=[4, 4, 8, 8], stem_channels=4),
                      ConcatFusion(audio_dim=8, video_dim=8, output_dim=16),
                      TransformerEncoder(16, 2, 2, 32),
                      TransformerDecoder(10, 16, 1, 2, 32, tie_embeddings=tie), CTCHead(16, 10))
    objective = SemiSupervisedObjective(loss=HybridCTCAttentionLoss(**IDS, ctc_weight=0.3),
                                        heads_from_model=heads_from_model)
    task = TrainTask(model=model, objective=objective,
                     optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    task.configure_model()
    return task


@pytest.mark.parametrize("tie", [False, True])
def test_heads_start_as_the_models_output_layers(tie):
    task = _task(True, tie)
    x = torch.randn(2, 5, 16)
    dec = task.model.decoder.output_projection
    for m in ("audio", "video", "audiovisual"):
        torch.testing.assert_close(task.objective.ctc_heads[m](x), task.model.ctc.ctc_lo(x))
        torch.testing.assert_close(task.objective.att_heads[m](x), dec(x))
        # copies, not shared parameters: the heads train apart from the labelled outputs
        assert task.objective.att_heads[m].weight.data_ptr() != dec.weight.data_ptr()


def test_heads_start_fresh_by_default():
    task = _task(False)
    x = torch.randn(2, 5, 16)
    assert not torch.allclose(task.objective.ctc_heads["video"](x), task.model.ctc.ctc_lo(x))


def test_unlabelled_weight_starts_then_ramps():
    objective = _task(False).objective
    objective.unlabelled_start_step, objective.unlabelled_rampup_steps = 3, 4
    assert [objective.unlabelled_scale(s) for s in range(9)] == [0, 0, 0, .25, .5, .75, 1, 1, 1]
    objective.unlabelled_rampup_steps = 0
    assert [objective.unlabelled_scale(s) for s in (2, 3)] == [0, 1]
    with pytest.raises(ValueError, match="unlabelled_start_step"):
        SemiSupervisedObjective(loss=objective.loss, unlabelled_start_step=-1)
