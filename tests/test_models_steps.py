"""The model's typed steps (embed, fuse, encode, decode) compose to its forward pass; hidden
states and decoder states equal what forward hooks read from the modules themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from avsr.modalities import MODALITIES
from avsr.models import (
    AudioResNet,
    AVSRModel,
    ConcatFusion,
    CTCHead,
    TransformerDecoder,
    TransformerEncoder,
    VideoResNet,
)
from avsr.models.conformer import ConformerEncoder
from avsr.models.encoder_identity import IdentityEncoder
from avsr.models.lm import TransformerLM
from avsr.models.rel_encoder import RelPosEncoder
from avsr.models.streams import stack_streams

V, D = 12, 16
ROOT = Path(__file__).resolve().parents[1]


def _model(encoder: nn.Module | None = None) -> AVSRModel:
    torch.manual_seed(0)
    return AVSRModel(
        audio_frontend=AudioResNet(widths=(4, 8, 8, 12)),
        video_frontend=VideoResNet(widths=(4, 8, 8, 10), stem_channels=4),
        fusion=ConcatFusion(12, 10, D, missing="learned"),
        encoder=encoder or TransformerEncoder(D, 2, 2, 32, dropout=0.0),
        decoder=TransformerDecoder(V, D, 2, 2, 32, dropout=0.0),
        ctc=CTCHead(D, V),
    ).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    v_len = torch.tensor([6, 4, 5])
    a_len = v_len * 640
    a_len[2] = 0  # item 2 has no audio: it runs in the video stream only
    return (torch.randn(3, 6 * 640, generator=g), a_len, torch.randn(3, 6, 1, 24, 24, generator=g),
            v_len, torch.randint(3, V, (3, 4), generator=g), torch.tensor([4, 2, 3]))


def _hooked(modules, run):
    """Outputs of ``modules`` while ``run()`` runs (the reference the steps are checked on)."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in modules]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    return result, seen


def test_steps_compose_to_forward_unified():
    model = _model()
    audio, a_len, video, v_len, tokens, t_len = _batch()
    with torch.no_grad():
        out = model(audio, a_len, video, v_len, tokens, t_len)
        feats = model.embed(audio, a_len, video, v_len)
        fused = model.fuse(feats)
        enc, enc_len = model.encode(fused.x, fused.lengths)
        logits, states = model.decode(tokens[fused.index], t_len[fused.index], enc, enc_len,
                                      return_states=True)
    assert fused.modalities == MODALITIES and fused.sizes == (2, 3, 2)
    assert feats.has_audio.tolist() == [True, True, False]
    for m, o in out.items():
        torch.testing.assert_close(fused.split(enc)[m], o.enc)
        torch.testing.assert_close(fused.split(logits)[m], o.decoder_logits)
        torch.testing.assert_close(fused.split(fused.index)[m], o.index)
    torch.testing.assert_close(model.decoder.output_projection(states), logits)


def test_fused_streams_take_edits_before_the_encoder():
    # the seam the word classifier needs: per-stream features, edited, stacked, encoded
    model = _model()
    audio, a_len, video, v_len, _, _ = _batch()
    with torch.no_grad():
        streams = model.fuse_streams(model.embed(audio, a_len, video, v_len, ("video",)),
                                     ("video",))
        plain, _ = model.encode(*stack_streams(streams)[:2])
        edited = [s._replace(x=s.x + torch.linspace(0, 1, D)) for s in streams]
        moved, _ = model.encode(*stack_streams(edited)[:2])
        ref, _ = model.encode_modality(None, None, video, v_len, "video")
    torch.testing.assert_close(plain, ref)
    assert not torch.allclose(moved, plain)


def test_embed_runs_only_the_front_ends_the_modalities_read():
    model = _model()
    audio, a_len, video, v_len, _, _ = _batch()
    feats, called = _hooked([model.audio_frontend, model.video_frontend],
                            lambda: model.embed(audio, a_len, video, v_len, ("video",)))
    assert feats.audio is None and feats.video is not None and len(called) == 1


@pytest.mark.parametrize("kind", ["transformer", "conformer", "relpos"])
def test_hidden_states_are_every_layer_output(kind):
    encoder = {
        "transformer": lambda: TransformerEncoder(D, 3, 2, 32, dropout=0.0),
        "conformer": lambda: ConformerEncoder(D, 3, 2, 32, dropout=0.0, kernel_size=3),
        "relpos": lambda: RelPosEncoder(D, 3, 2, 32, dropout=0.0, macaron=True, conv_kernel=3),
    }[kind]()
    model = _model(encoder)
    audio, a_len, video, v_len, _, _ = _batch()
    # the conformer runs torchaudio's layers through its own path, ending in final_layer_norm
    blocks = ([b.final_layer_norm for b in encoder.layers] if kind == "conformer"
              else list(encoder.layers))
    with torch.no_grad():
        (enc, enc_len), seen = _hooked(blocks, lambda: model.encode_modality(
            audio, a_len, video, v_len, "audiovisual"))
        enc2, enc_len2, hidden = model.encode_modality(audio, a_len, video, v_len, "audiovisual",
                                                       return_hidden=True)
    assert len(hidden) == len(seen) == 3
    for h, s in zip(hidden, seen):
        torch.testing.assert_close(h, s)
    torch.testing.assert_close(enc2, enc)
    assert torch.equal(enc_len2, enc_len)
    if kind == "transformer":  # pre-LN: the last hidden state is before the final norm
        valid = enc_len[0]
        torch.testing.assert_close(encoder.layer_norm(hidden[-1])[0, :valid], enc[0, :valid])


def test_layer_drop_leaves_skipped_layers_out_of_the_hidden_states():
    encoder = TransformerEncoder(D, 3, 2, 32, dropout=0.0, layer_drop=1.0, pos_enc="none").train()
    x = torch.randn(2, 5, D)
    y, _, hidden = encoder(x, torch.tensor([5, 3]), return_hidden=True)
    assert hidden == []  # every layer skipped: the output is the final norm of the input
    torch.testing.assert_close(y[0], encoder.layer_norm(x[0]))


def test_hidden_states_need_a_layered_encoder():
    model = _model(IdentityEncoder(D))
    with pytest.raises(ValueError, match="IdentityEncoder cannot return hidden states"):
        model.encode(torch.randn(2, 3, D), torch.tensor([3, 2]), return_hidden=True)


def test_decoder_states_are_the_final_norm_outputs():
    model = _model()
    audio, a_len, video, v_len, tokens, t_len = _batch()
    with torch.no_grad():
        out, seen = _hooked([model.decoder.layer_norm], lambda: model(
            audio, a_len, video, v_len, tokens, t_len, return_decoder_states=True))
    states = torch.cat([o.decoder_states for o in out.values()])
    torch.testing.assert_close(states, seen[0])
    for o in out.values():
        torch.testing.assert_close(model.decoder.output_projection(o.decoder_states),
                                   o.decoder_logits)
    assert all(o.decoder_states is None for o in model(audio, a_len, video, v_len, tokens,
                                                       t_len).values())


def test_decoder_and_lm_share_the_token_layers_with_their_keys():
    dec = TransformerDecoder(V, D, 1, 2, 32, tie_embeddings=True)
    lm = TransformerLM(V, D, 1, 2, 32, tie_embeddings=False)
    # the keys checkpoints and the importers use: token layers first, norm and head last
    for module, head in ((dec, ["output_projection.weight"]),
                         (lm, ["output_projection.weight", "output_projection.bias"])):
        keys = list(module.state_dict())
        assert keys[0] == "embed_tokens.weight"
        assert keys[-2 - len(head):] == ["layer_norm.weight", "layer_norm.bias", *head]
    assert dec.output_projection.weight is dec.embed_tokens.weight
    assert lm.output_projection.weight is not lm.embed_tokens.weight
    tokens = torch.randint(0, V, (2, 5))
    lm.eval()
    x = lm.embed_tokens(tokens) * D**0.5 + lm.embed_positions.table(5)[None]
    torch.testing.assert_close(lm.embed_inputs(tokens), x)
    torch.testing.assert_close(lm.embed_inputs(tokens[:, 3:], offset=3), x[:, 3:])


def test_models_do_not_import_data():
    code = ("import sys, avsr.models, avsr.objectives.braven; "
            "bad = sorted(m for m in sys.modules if m.startswith('avsr.data')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_modality_names_are_defined_once():
    literal = '("audio", "video", "audiovisual")'
    where = [str(p.relative_to(ROOT)) for p in (ROOT / "avsr").rglob("*.py")
             if literal in p.read_text()]
    assert where == ["avsr/modalities.py"]
