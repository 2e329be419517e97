"""Zhang et al.'s flexible masking through AVHuBERTObjective: a whole stream masked at input
and at feature level reaches the fusion as its mask embedding, and the loss covers the item."""

from __future__ import annotations

import json

import pytest
import torch

from avsr.models.avsr_model import AVSRModel
from avsr.models.ctc import CTCHead
from avsr.models.encoder import TransformerEncoder
from avsr.models.frontends.filterbank import FilterbankFrontend
from avsr.models.frontends.video_resnet import VideoResNet
from avsr.models.fusion import TransformerFusion
from avsr.objectives.avhubert import AVHuBERTObjective
from avsr.ssl.labels import write_labels

FRAMES = 12


def _model() -> AVSRModel:
    torch.manual_seed(0)
    return AVSRModel(FilterbankFrontend(output_dim=8),
                     VideoResNet(widths=[4, 4, 8, 8], stem_channels=4),
                     TransformerFusion(audio_dim=8, video_dim=8, output_dim=16, num_layers=1,
                                       num_heads=2, ffn_dim=32),
                     TransformerEncoder(16, 1, 2, 32), None, CTCHead(16, 10))


@pytest.fixture()
def labels(tmp_path):
    for i, n in enumerate((FRAMES, 9)):
        write_labels(tmp_path, f"u{i}", [k % 5 for k in range(n)])
    (tmp_path / "kmeans.json").write_text(json.dumps({"num_clusters": 5, "label_rate": 25}))
    return tmp_path


def _batch() -> dict:
    return {"audio": torch.randn(2, FRAMES * 640),
            "audio_lengths": torch.tensor([FRAMES * 640, 9 * 640]),
            "video": torch.rand(2, FRAMES, 1, 24, 24), "video_lengths": torch.tensor([FRAMES, 9]),
            "ids": ["u0", "u1"]}


def _run(labels, level: str, p_audio: float, p_video: float):
    model = _model()
    obj = AVHuBERTObjective(str(labels), level=level, p_mask_audio_stream=p_audio,
                            p_mask_video_stream=p_video, feature_mask_prob=0.3,
                            feature_mask_span=2, audio_mask_prob=0.3, audio_mask_span=2,
                            video_mask_prob=0.0, video_mask_span=2, video_fill="learned",
                            proj_dim=8)
    obj.bind(model)
    seen = {}
    fuse = model.fuse

    def spy(feats, *args, **kwargs):
        seen["audio"], seen["video"] = feats.audio, feats.video
        seen["audio_lengths"], seen["video_lengths"] = feats.audio_lengths, feats.video_lengths
        return fuse(feats, *args, **kwargs)

    model.fuse = spy
    out = obj(model, _batch(), torch.Generator().manual_seed(0))
    out["loss"].backward()
    return obj, seen, out


def test_whole_audio_stream_masked_at_input_level(labels):
    obj, seen, out = _run(labels, "input", 1.0, 0.0)
    emb = obj.audio_mask_emb.detach()
    # every valid frame of every item's audio is the mask embedding; video keeps its features
    assert torch.equal(seen["audio"][0, :FRAMES], emb.expand(FRAMES, -1))
    assert torch.equal(seen["audio"][1, :9], emb.expand(9, -1))
    assert not torch.isclose(seen["video"][0], obj.video_mask_emb.detach()).all(-1).any()
    # the loss covers every valid frame, and the embedding learns
    assert out["mask_fraction"] == 1.0
    assert obj.audio_mask_emb.grad is not None and obj.audio_mask_emb.grad.abs().sum() > 0


def test_whole_video_stream_masked_at_input_level(labels):
    obj, seen, out = _run(labels, "input", 0.0, 1.0)
    emb = obj.video_mask_emb.detach()
    assert torch.equal(seen["video"][0, :FRAMES], emb.expand(FRAMES, -1))
    assert out["mask_fraction"] == 1.0


@pytest.mark.parametrize(("p_audio", "p_video", "kept"), [(1.0, 0.0, "video"),
                                                         (0.0, 1.0, "audio")])
def test_whole_stream_masked_at_feature_level_is_the_missing_modality(labels, p_audio, p_video,
                                                                     kept):
    obj, seen, out = _run(labels, "feature", p_audio, p_video)
    lost = "audio" if kept == "video" else "video"
    # the lost stream is absent for every item (length 0), the kept one untouched ...
    assert seen[f"{lost}_lengths"].tolist() == [0, 0]
    assert seen[f"{kept}_lengths"].tolist() == [FRAMES, 9]
    # ... so the fusion sees exactly what it sees at inference with one modality
    fusion = _model().fusion.eval()
    with torch.no_grad():
        masked = fusion(seen["audio"], seen["video"], seen["audio_lengths"],
                        seen["video_lengths"])[0]
        alone = fusion(seen["audio"] if kept == "audio" else None,
                       seen["video"] if kept == "video" else None,
                       seen["audio_lengths"] if kept == "audio" else None,
                       seen["video_lengths"] if kept == "video" else None)[0]
    torch.testing.assert_close(masked, alone)
    assert out["mask_fraction"] == 1.0  # predicted on every frame


def test_feature_level_without_stream_masking_keeps_the_features(labels):
    obj, seen, out = _run(labels, "feature", 0.0, 0.0)
    emb = obj.audio_mask_emb.detach()
    assert not torch.isclose(seen["audio"], emb).all(-1).any()
    assert 0.0 < out["mask_fraction"] < 1.0  # the spans after fusion only
