"""The unified model: encode per modality, stacked A/V/AV training pass, absent streams."""

from __future__ import annotations

import pytest
import torch

from avsr.decoding import attention_greedy, ctc_greedy
from avsr.models import (
    AudioResNet,
    AVSRModel,
    ConcatFusion,
    CTCHead,
    TransformerDecoder,
    TransformerEncoder,
    VideoResNet,
)
from avsr.objectives import HybridCTCAttentionLoss

IDS = {"blank_id": 0, "sos_id": 2, "eos_id": 2}  # avsr SentencePiece ids; no tokenizer here

V, D = 12, 16


def _model() -> AVSRModel:
    torch.manual_seed(0)
    return AVSRModel(
        audio_frontend=AudioResNet(widths=(4, 8, 8, 12)),
        video_frontend=VideoResNet(widths=(4, 8, 8, 10), stem_channels=4),
        fusion=ConcatFusion(12, 10, D, missing="learned"),
        encoder=TransformerEncoder(D, 2, 2, 32, dropout=0.0),
        decoder=TransformerDecoder(V, D, 1, 2, 32, dropout=0.0),
        ctc=CTCHead(D, V),
    )


def _batch():
    g = torch.Generator().manual_seed(1)
    video_lengths = torch.tensor([6, 4, 5])
    video = torch.randn(3, 6, 1, 24, 24, generator=g)
    audio = torch.randn(3, 6 * 640, generator=g)
    tokens = torch.randint(3, V, (3, 4), generator=g)
    return audio, video_lengths * 640, video, video_lengths, tokens, torch.tensor([4, 2, 3])


def test_forward_unified_matches_encode_per_modality() -> None:
    model = _model().eval()
    audio, a_len, video, v_len, tokens, t_len = _batch()
    crit = HybridCTCAttentionLoss(**IDS)
    ys_in, ys_len = crit.decoder_inputs(tokens, t_len)
    with torch.no_grad():
        out = model.forward_unified(audio, a_len, video, v_len, ys_in, ys_len)
        assert list(out) == ["audio", "video", "audiovisual"]
        for modality, o in out.items():
            enc, enc_len = model.encode_modality(audio, a_len, video, v_len, modality)
            assert o.index.tolist() == [0, 1, 2]
            torch.testing.assert_close(o.enc_lengths, enc_len)
            torch.testing.assert_close(o.enc[:, : enc.shape[1]], enc, atol=1e-5, rtol=1e-5)
            assert o.ctc_log_probs is not None and o.ctc_log_probs.shape[:2] == o.enc.shape[:2]
            assert o.decoder_logits is not None and o.decoder_logits.shape == (3, 5, V)
            logits = model.decoder(ys_in, ys_len, enc, enc_len)
            torch.testing.assert_close(o.decoder_logits, logits, atol=1e-5, rtol=1e-5)


def test_unified_training_step_with_loss() -> None:
    model = _model().train()
    audio, a_len, video, v_len, tokens, t_len = _batch()
    crit = HybridCTCAttentionLoss(**IDS)
    ys_in, ys_len = crit.decoder_inputs(tokens, t_len)
    out = model.forward_unified(audio, a_len, video, v_len, ys_in, ys_len)
    total = sum(
        crit(o.ctc_log_probs, o.enc_lengths, o.decoder_logits, tokens[o.index], t_len[o.index])[
            "loss"
        ]
        for o in out.values()
    )
    total.backward()
    assert model.video_frontend.frontend3D[0].weight.grad is not None
    assert model.audio_frontend.trunk.conv1.weight.grad is not None


def test_audio_only_batch_runs_only_audio() -> None:
    model = _model().eval()
    audio, a_len, _, _, _, _ = _batch()
    with torch.no_grad():
        out = model.forward_unified(audio, a_len, None, None)
    assert list(out) == ["audio"]
    assert out["audio"].decoder_logits is None


def test_items_without_a_stream_are_left_out_of_that_stream() -> None:
    model = _model().eval()
    audio, a_len, video, v_len, _, _ = _batch()
    v_len = torch.tensor([6, 0, 5])  # item 1 has no video
    with torch.no_grad():
        out = model.forward_unified(audio, a_len, video, v_len)
        assert out["audio"].index.tolist() == [0, 1, 2]
        assert out["video"].index.tolist() == [0, 2]
        assert out["audiovisual"].index.tolist() == [0, 2]
        enc, _ = model.encode_modality(audio[[0, 2]], a_len[[0, 2]], video[[0, 2]], v_len[[0, 2]],
                                       "video")
        torch.testing.assert_close(out["video"].enc[:, : enc.shape[1]], enc, atol=1e-5, rtol=1e-5)
        # audiovisual inference with the video of item 1 absent = audio + missing video
        av, av_len = model.encode_modality(audio, a_len, video, v_len, "audiovisual")
        alone, _ = model.encode_modality(audio[1:2], a_len[1:2], None, None, "audiovisual")
    assert av_len.tolist() == [6, 4, 5]
    torch.testing.assert_close(av[1, :4], alone[0, :4], atol=1e-5, rtol=1e-5)


def test_encode_errors_and_greedy_decoding() -> None:
    model = _model().eval()
    audio, a_len, video, v_len, _, _ = _batch()
    with pytest.raises(ValueError, match="modality"):
        model.encode_modality(audio, a_len, video, v_len, "lips")
    with pytest.raises(ValueError, match=r"\(3, 1, 3840\)"):
        model.encode_modality(audio.unsqueeze(1), a_len, None, None, "audio")
    with pytest.raises(ValueError, match="needs inputs"):
        model.encode_modality(None, None, video, v_len, "audio")
    with torch.no_grad():
        enc, enc_len = model.encode_modality(audio, a_len, video, v_len, "video")
        hyps = ctc_greedy(model.ctc(enc), enc_len, blank_id=0)
        att = attention_greedy(model.decoder, enc, enc_len, sos_id=2, eos_id=2, max_len=5)
    assert len(hyps) == len(att) == 3 and all(len(h) <= 5 for h in att)
