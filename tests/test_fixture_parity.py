"""Parity with the papers' own code: auto_avsr and USR fixtures (``../shared/fixtures``).

Each fixture holds a small model of the public system's exact architecture with the system's
own state_dict keys, inputs, and the outputs its code produced (see the fixtures' READMEs).
Our modules load those weights key by key (the renaming below is what issue 7's importers
will do) and must reproduce the outputs. The peers leak padding where we do not, so padded
items are compared with the peers' single-item ("trimmed") outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from avsr.models.ctc import CTCHead
from avsr.models.frontends import AudioResNet, VideoResNet
from avsr.models.fusion import ModalityLinearFusion
from avsr.models.rel_encoder import RelPosEncoder

FIXTURES = Path(os.environ.get(
    "AVSR_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"))
TOL = dict(atol=2e-5, rtol=1e-5)


def _load(name: str) -> tuple[dict, dict, dict]:
    folder = FIXTURES / name
    if not (folder / "state_dict.pt").exists():
        pytest.skip(f"fixture {folder} not available")
    return tuple(torch.load(folder / f, weights_only=True)  # type: ignore[return-value]
                 for f in ("state_dict.pt", "inputs.pt", "outputs.pt"))


def _take(state: dict, prefix: str, renames: tuple[tuple[str, str], ...] = ()) -> dict:
    """Keys under ``prefix`` with the prefix cut and ESPnet spellings renamed."""
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            key = key[len(prefix):]
            for old, new in renames:
                key = key.replace(old, new)
            out[key] = value
    return out


_CONFORMER = (("pointwise_cov", "pointwise_conv"), ("embed.0.", "embed."))


def test_auto_avsr_video_frontend_and_conformer() -> None:
    state, inputs, outputs = _load("auto_avsr_video")
    frontend = VideoResNet(activation="swish").eval()
    frontend.load_state_dict(_take(state, "encoder.frontend."), strict=True)
    encoder = RelPosEncoder(64, 2, 4, 256, macaron=True, conv_kernel=31, input_dim=512).eval()
    encoder.load_state_dict({k: v for k, v in _take(state, "encoder.", _CONFORMER).items()
                             if not k.startswith("frontend.")}, strict=True)
    ctc = CTCHead(64, 48).eval()
    ctc.load_state_dict(_take(state, "ctc."), strict=True)
    lengths = inputs["video_lengths"]
    with torch.no_grad():
        feats, _ = frontend(inputs["video"], lengths)
        enc, _ = encoder(feats, lengths)
        log_probs = ctc(enc)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(feats[i, :n], outputs["single_frontend_out"][i], **TOL)
        torch.testing.assert_close(enc[i, :n], outputs["single_encoder_out"][i], **TOL)
        torch.testing.assert_close(log_probs[i, :n], outputs["single_ctc_log_probs"][i], **TOL)
    torch.testing.assert_close(enc[0], outputs["encoder_out"][0], **TOL)


def test_usr_unified_backbone() -> None:
    state, inputs, outputs = _load("usr_unified")
    state = _take(state, "_orig_mod.encoder.")
    video_frontend = VideoResNet(activation="swish").eval()
    video_frontend.load_state_dict(_take(state, "frontend_v."), strict=True)
    audio_frontend = AudioResNet(activation="swish").eval()
    audio_frontend.load_state_dict(_take(state, "frontend_a."), strict=True)
    fusion = ModalityLinearFusion(512, 512, 64).eval()
    fusion.load_state_dict({f"linear_{k}": v for k, v in _take(state, "linear_").items()},
                           strict=True)
    encoder = RelPosEncoder(64, 2, 4, 256, layer_scale=0.1).eval()
    encoder.load_state_dict({k: v for k, v in state.items()
                             if k.startswith(("encoders.", "after_norm."))}, strict=True)
    lengths = inputs["video_lengths"]
    with torch.no_grad():
        v, v_len = video_frontend(inputs["video"], lengths)
        a, a_len = audio_frontend(inputs["audio"], inputs["audio_lengths"])
        streams = {"v": fusion(None, v, None, v_len), "a": fusion(a, None, a_len, None),
                   "av": fusion(a, v, a_len, v_len)}
        encoded = {m: encoder(x, n)[0] for m, (x, n) in streams.items()}
    # the video front-end does not leak padding in USR either: every valid frame compares
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(v[i, :n], outputs["frontend_v_out"][i, :n], **TOL)
        torch.testing.assert_close(encoded["v"][i, :n],
                                   outputs["trimmed_decoder_input_v"][i], **TOL)
    # USR's audio front-end leaks padding into the shorter item: compare the longest
    torch.testing.assert_close(a[0], outputs["frontend_a_out"][0], **TOL)
    for m in ("v", "a", "av"):
        torch.testing.assert_close(streams[m][0][0], outputs[f"proj_{m}"][0], **TOL)
        torch.testing.assert_close(encoded[m][0], outputs[f"encoder_out_{m}"][0], **TOL)
        torch.testing.assert_close(encoded[m][0], outputs[f"trimmed_decoder_input_{m}"][0],
                                   **TOL)
