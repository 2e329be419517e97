"""BRAVEn targets and loss, AV-HuBERT head: against torch's own ops on a tiny real model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avsr.metrics.rank import rankme
from avsr.models.avsr_model import AVSRModel
from avsr.models.ctc import CTCHead
from avsr.models.encoder import TransformerEncoder
from avsr.models.frontends.filterbank import FilterbankFrontend
from avsr.models.fusion import ConcatFusion
from avsr.objectives.avhubert import ClusterHead
from avsr.objectives.braven import BRAVEnObjective, instance_norm, negative_cosine


def _model() -> AVSRModel:
    from avsr.models.frontends.video_resnet import VideoResNet

    torch.manual_seed(0)
    return AVSRModel(FilterbankFrontend(output_dim=8),
                     VideoResNet(widths=[4, 4, 8, 8], stem_channels=4),
                     ConcatFusion(audio_dim=8, video_dim=8, output_dim=16),
                     TransformerEncoder(16, 2, 2, 32), None, CTCHead(16, 10))


def test_block_outputs_and_instance_norm():
    enc = TransformerEncoder(16, 3, 2, 32).eval()
    x = torch.randn(2, 7, 16)
    y, lengths, blocks = enc(x, torch.tensor([7, 7]), return_hidden=True)
    assert len(blocks) == 3
    torch.testing.assert_close(enc.layer_norm(blocks[-1]), y)  # last block, before final LN
    ref = F.instance_norm(blocks[0].transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(instance_norm(blocks[0], lengths), ref, atol=1e-4, rtol=1e-4)
    short = instance_norm(blocks[0], torch.tensor([7, 4]))
    torch.testing.assert_close(short[1, :4], instance_norm(blocks[0][1:, :4],
                                                           torch.tensor([4]))[0])
    assert (short[1, 4:] == 0).all()


def test_negative_cosine_on_masked_frames_only():
    p, t = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = True
    ref = -F.cosine_similarity(p[mask], t[mask], dim=-1).mean()
    torch.testing.assert_close(negative_cosine(p, t, mask), ref)


def test_braven_loss_trains_student_and_predictor_not_teacher():
    model = _model()
    obj = BRAVEnObjective(mask_prob=0.5, mask_span=2, predictor_layers=1, predictor_heads=2)
    obj.bind(model)
    batch = {"audio": torch.randn(2, 12 * 640), "audio_lengths": torch.tensor([12 * 640, 9 * 640]),
             "video": torch.rand(2, 12, 1, 24, 24), "video_lengths": torch.tensor([12, 9])}
    out = obj(model, batch, torch.Generator().manual_seed(0))
    assert set(out) >= {"loss", "loss_audio", "loss_video", "loss_audiovisual"}
    expected = 0.7 * out["loss_audio"] + 0.3 * out["loss_video"] + 0.7 * out["loss_audiovisual"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    assert obj.predictor.mask_token.grad is not None
    assert model.encoder.layers[0].parameters().__next__().grad is not None
    assert model.video_frontend.parameters().__next__().grad is not None
    # the collapse monitor: the effective rank of the teacher's block mean, before the
    # targets' normalisation, on the valid frames only
    assert 1.0 <= float(out["teacher_rank"]) <= 16.0 and not out["teacher_rank"].requires_grad
    with torch.no_grad():
        states, t_len = obj.teacher_states(batch["audio"], batch["audio_lengths"],
                                           batch["video"], batch["video_lengths"])
        target, _ = obj.targets(batch["audio"], batch["audio_lengths"], batch["video"],
                                batch["video_lengths"])
    torch.testing.assert_close(target, instance_norm(states, t_len))
    torch.testing.assert_close(out["teacher_rank"],
                               rankme(torch.cat([states[0, :12], states[1, :9]])))


def test_normalise_blocks_normalises_each_block_before_the_mean():
    model = _model().eval()
    obj = BRAVEnObjective(predictor_layers=1, predictor_heads=2, normalise_blocks=True)
    obj.bind(model)
    obj.teacher.model.eval()
    a, a_len = torch.randn(2, 10 * 640), torch.tensor([10 * 640, 7 * 640])
    v, v_len = torch.rand(2, 10, 1, 24, 24), torch.tensor([10, 7])
    with torch.no_grad():
        target, lengths = obj.targets(a, a_len, v, v_len)
        _, _, blocks = obj.teacher.model.encode_modality(a, a_len, v, v_len, "audiovisual",
                                                         return_hidden=True)
    want = instance_norm(torch.stack([instance_norm(b, lengths) for b in blocks]).mean(0),
                         lengths)
    torch.testing.assert_close(target, want, atol=1e-4, rtol=1e-4)
    obj.normalise_blocks = False
    with torch.no_grad():
        plain, _ = obj.targets(a, a_len, v, v_len)
    assert not torch.allclose(plain, target, atol=1e-3)


def test_rankme_against_its_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.1, 0.01])
    # singular values are the square roots of the eigenvalues of x^T x
    s = torch.linalg.eigvalsh(x.double().T @ x.double()).clamp(min=0).sqrt()
    p = s / s.sum() + 1e-7
    assert float(rankme(x)) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-4)
    # on one line: rank 1; evenly over D orthogonal directions: rank D
    line = torch.randn(40, 1, generator=g) * torch.randn(1, 6, generator=g)
    assert float(rankme(line)) == pytest.approx(1.0, abs=1e-3)
    assert float(rankme(torch.eye(6) * 3.0)) == pytest.approx(6.0, rel=1e-4)
    assert float(rankme(torch.zeros(5, 4))) == 1.0 and float(rankme(torch.ones(1, 4))) == 1.0
    with pytest.raises(ValueError, match=r"\(N, D\), got shape \(2, 3, 4\)"):
        rankme(torch.zeros(2, 3, 4))


def test_cluster_head_is_cosine_over_temperature():
    head = ClusterHead(6, 5, proj_dim=4, temperature=0.1)
    x = torch.randn(2, 3, 6)
    z = head.proj(x)
    ref = torch.einsum("btd,kd->btk", F.normalize(z, dim=-1),
                       F.normalize(head.embeddings, dim=-1)) / 0.1
    torch.testing.assert_close(head(x), ref)


def test_conformer_block_outputs():
    from avsr.models.conformer import ConformerEncoder

    enc = ConformerEncoder(d_model=16, num_layers=2, num_heads=2, ffn_dim=32, kernel_size=3).eval()
    y, _, blocks = enc(torch.randn(2, 6, 16), torch.tensor([6, 4]), return_hidden=True)
    assert len(blocks) == 2
    torch.testing.assert_close(blocks[-1][0], y[0])  # the conformer's output is its last block
