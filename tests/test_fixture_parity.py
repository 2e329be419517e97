"""Parity with the papers' own code: auto_avsr and USR fixtures (``../shared/fixtures``).

Each fixture holds a small model of the public system's exact architecture with the system's
own state_dict keys, inputs, and the outputs its code produced (see the fixtures' READMEs).
The checkpoint goes through ``avsr.convert`` into a model built from the matching
``configs/experiment/reproduce/*`` experiment (shrunk to the fixture's sizes) and must
reproduce every output. The peers leak padding into batched results where avsr does not, so:
padded items are compared with the peers' single-item ("single_" / "trimmed_") outputs, batched
keys with the longest item (or every item where the peer does not leak), and losses are
recomputed by avsr's loss from the peer's batched logits.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir

from avsr.convert import import_checkpoint
from avsr.decoding.beam_search import BeamSearch
from avsr.objectives.hybrid import HybridCTCAttentionLoss

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("AVSR_FIXTURES", ROOT.parent / "shared" / "fixtures"))

_TINY_DECODER = ["model.decoder.num_layers=1", "model.decoder.num_heads=4",
                 "model.decoder.ffn_dim=256"]
_TINY_CONFORMER = ["model.encoder.d_model=64", "model.encoder.num_layers=2",
                   "model.encoder.num_heads=4", "model.encoder.ffn_dim=256"]
TINY = {
    "autoavsr_vsr_lrs3": ["vocab_size=48", *_TINY_CONFORMER, *_TINY_DECODER],
    "autoavsr_asr_lrs3": ["vocab_size=48", *_TINY_CONFORMER, *_TINY_DECODER],
    "autoavsr_avsr_lrs3": [
        "vocab_size=48", "model.encoder.d_model=64", "model.fusion.fusion.hidden_dim=128",
        *[f"model.fusion.{s}_encoder.{k}" for s in ("audio", "video")
          for k in ("num_layers=2", "num_heads=4", "ffn_dim=256")],
        *_TINY_DECODER],
    "usr_base_lrs3": ["vocab_size=56", *_TINY_CONFORMER, *_TINY_DECODER],
}


def close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """About 1e-5 relative to the tensor's scale (the fixtures' README)."""
    scale = float(expected.abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale + 1e-6,
                               msg=lambda m: f"{what}: {m}")


def load_fixture(name: str) -> tuple[Path, dict, dict]:
    folder = FIXTURES / name
    if not (folder / "state_dict.pt").exists():
        pytest.skip(f"fixture {folder} not available")
    return (folder / "state_dict.pt", torch.load(folder / "inputs.pt", weights_only=True),
            torch.load(folder / "outputs.pt", weights_only=True))


def build(experiment: str) -> torch.nn.Module:
    """The model of ``+experiment=reproduce/<experiment>`` at the fixture's sizes."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment=reproduce/{experiment}",
                                          *TINY[experiment]])
    return hydra.utils.instantiate(cfg.model).eval()


def block_outputs(encoder_layers, run) -> list[torch.Tensor]:
    """Outputs of every layer while ``run()`` executes."""
    outs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, o: outs.append(o)) for layer in
             encoder_layers]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return outs


def check_losses(outputs: dict, inputs: dict, suffix: str, ctc_lengths: torch.Tensor,
                 eos: int) -> dict[str, torch.Tensor]:
    """avsr's hybrid loss on the peer's batched CTC log-probs and logits = the peer's losses."""
    loss = HybridCTCAttentionLoss(ctc_weight=0.1, label_smoothing=0.1, blank_id=0, sos_id=eos,
                                  eos_id=eos)
    tokens = inputs["tokens"].clamp(min=0)
    got = loss(outputs[f"ctc_log_probs{suffix}"], ctc_lengths, outputs[f"decoder_logits{suffix}"],
               tokens, inputs["token_lengths"])
    for key in ("loss_ctc", "loss_att"):
        close(got[key], outputs[f"{key}{suffix}"], key + suffix)
    assert abs(float(got["acc"]) - float(outputs[f"acc{suffix}"])) < 1e-6
    return got


def check_decoder(model, outputs: dict, inputs: dict, memory: torch.Tensor,
                  memory_lengths: torch.Tensor, expected: torch.Tensor, rows=None) -> None:
    """Teacher-forced logits from a given memory equal the peer's at every valid position."""
    with torch.no_grad():
        logits = model.decoder(outputs["ys_in"], inputs["token_lengths"] + 1, memory,
                               memory_lengths)
    for i, n in enumerate((inputs["token_lengths"] + 1).tolist()):
        if rows is None or i in rows:
            close(logits[i, :n], expected[i, :n], f"decoder logits item {i}")


def check_beam(model, outputs: dict, enc: torch.Tensor, enc_lengths: torch.Tensor,
               log_probs: torch.Tensor, tag: str, eos: int, rows=None) -> None:
    """avsr's batched beam search finds the peer's best hypothesis and n-best scores."""
    weight = float(tag.rsplit("ctc", 1)[1])
    search = BeamSearch(beam_size=5, ctc_weight=weight, pre_beam_ratio=1.5,
                                    pre_beam_score_key="decoder", maxlenratio=0.0, nbest=5)
    nbest = search(model.decoder, enc, enc_lengths, log_probs, eos, eos, 0)
    for i, hyps in enumerate(nbest):
        if rows is not None and i not in rows:
            continue
        assert [t for t in hyps[0].tokens if t != eos] == outputs[f"beam_{tag}_token_ids"][i], tag
        best = hyps[0]
        for key, field in (("score", None), ("score_decoder", "decoder"), ("score_ctc", "ctc")):
            value = best.score if field is None else best.scores[field]
            ref = float(outputs[f"beam_{tag}_{key}"][i])
            assert abs(value - ref) <= 1e-4 * max(1.0, abs(ref)), (tag, key, value, ref)
        ref_scores = [float(s) for s in outputs[f"beam_{tag}_nbest_score"][i] if s > -1e8]
        ours = [h.score for h in hyps if h.score > -1e8][: len(ref_scores)]
        torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref_scores), rtol=1e-5,
                                   atol=1e-4)


# ---------------------------------------------------------------------------- auto_avsr
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_auto_avsr_single_modality(kind: str) -> None:
    path, inputs, outputs = load_fixture(f"auto_avsr_{kind}")
    model = build({"video": "autoavsr_vsr_lrs3", "audio": "autoavsr_asr_lrs3"}[kind])
    report = import_checkpoint(model, "auto_avsr", path)
    assert len(report.loaded) == 237 and not report.dropped
    eos = 47
    if kind == "video":
        x, x_len, frontend = inputs["video"], inputs["video_lengths"], model.video_frontend
        enc_args = (None, None, x, x_len)
    else:
        x, x_len, frontend = inputs["audio"], inputs["audio_lengths"], model.audio_frontend
        enc_args = (x, x_len, None, None)
    with torch.no_grad():
        feats, lengths = frontend(x, x_len)
        enc, enc_lengths = None, None

        def run():
            nonlocal enc, enc_lengths
            enc, enc_lengths = model.encode_modality(*enc_args, modality=kind)
        blocks = block_outputs(model.encoder.encoders, run)
        log_probs = model.ctc(enc)
    # padding-invariant: every item equals the peer's single-item run
    for i, n in enumerate(lengths.tolist()):
        close(feats[i, :n], outputs["single_frontend_out"][i], f"front-end item {i}")
        close(enc[i, :n], outputs["single_encoder_out"][i], f"encoder item {i}")
        close(enc[i, :n], outputs["single_decoder_input"][i], f"decoder input item {i}")
        close(log_probs[i, :n], outputs["single_ctc_log_probs"][i], f"CTC item {i}")
    # the longest item equals the peer's batched run
    close(feats[0], outputs["frontend_out"][0], "batched front-end")
    for k, block in enumerate(blocks):
        close(block[0], outputs["encoder_block_out"][k, 0], f"block {k}")
    close(enc[0], outputs["encoder_out"][0], "batched encoder")
    close(log_probs[0], outputs["ctc_log_probs"][0], "batched CTC")
    check_decoder(model, outputs, inputs, outputs["encoder_out"], lengths,
                  outputs["decoder_logits"])
    check_decoder(model, outputs, inputs, enc, enc_lengths, outputs["decoder_logits"], rows={0})
    got = check_losses(outputs, inputs, "", lengths, eos)
    close(0.1 * got["loss_ctc"] + 0.9 * got["loss_att"], outputs["loss"], "loss")
    for tag in ("ctc0.1", "ctc0.3"):
        check_beam(model, outputs, enc, enc_lengths, log_probs, tag, eos)


def test_auto_avsr_audiovisual() -> None:
    path, inputs, outputs = load_fixture("auto_avsr_audiovisual")
    model = build("autoavsr_avsr_lrs3")
    report = import_checkpoint(model, "auto_avsr", path)
    assert len(report.loaded) == 450 and not report.dropped
    fusion = model.fusion
    with torch.no_grad():
        v, v_len = model.video_frontend(inputs["video"], inputs["video_lengths"])
        a, a_len = model.audio_frontend(inputs["audio"], inputs["audio_lengths"])
        ve, _ = fusion.video_encoder(v, v_len)
        ae, _ = fusion.audio_encoder(a, a_len)
        enc, enc_lengths = model.encode_modality(inputs["audio"], inputs["audio_lengths"],
                                                 inputs["video"], inputs["video_lengths"],
                                                 "audiovisual")
        log_probs = model.ctc(enc)
    for i, n in enumerate(v_len.tolist()):
        close(v[i, :n], outputs["single_video_frontend_out"][i], f"video front-end {i}")
        close(a[i, :n], outputs["single_audio_frontend_out"][i], f"audio front-end {i}")
        close(ve[i, :n], outputs["single_video_encoder_out"][i], f"video encoder {i}")
        close(ae[i, :n], outputs["single_audio_encoder_out"][i], f"audio encoder {i}")
        close(enc[i, :n], outputs["single_decoder_input"][i], f"fused {i}")
        close(log_probs[i, :n], outputs["single_ctc_log_probs"][i], f"CTC {i}")
        # the video front-end does not leak padding in auto_avsr: every valid frame compares
        close(v[i, :n], outputs["video_frontend_out"][i, :n], f"batched video front-end {i}")
    for got, key in ((a, "audio_frontend_out"), (ve, "video_encoder_out"),
                     (ae, "audio_encoder_out"), (enc, "fused_out"), (log_probs, "ctc_log_probs")):
        close(got[0], outputs[key][0], f"batched {key}")
    check_decoder(model, outputs, inputs, outputs["fused_out"], v_len, outputs["decoder_logits"])
    got = check_losses(outputs, inputs, "", v_len, 47)
    close(0.1 * got["loss_ctc"] + 0.9 * got["loss_att"], outputs["loss"], "loss")
    for tag in ("ctc0.1", "ctc0.3"):
        check_beam(model, outputs, enc, enc_lengths, log_probs, tag, 47)


# ---------------------------------------------------------------------------- USR
_MODALITY = {"v": "video", "a": "audio", "av": "audiovisual"}


@pytest.mark.parametrize("heads", ["v", "a", "av"])
def test_usr_unified(heads: str) -> None:
    path, inputs, outputs = load_fixture("usr_unified")
    model = build("usr_base_lrs3")
    report = import_checkpoint(model, "usr", path, heads=heads)
    assert len(report.dropped) == 8  # weight + bias of the other modalities' CTC heads and output layers
    eos, m = 55, heads
    lengths = inputs["video_lengths"]
    args = (inputs["audio"], inputs["audio_lengths"], inputs["video"], lengths)
    with torch.no_grad():
        v, _ = model.video_frontend(inputs["video"], lengths)
        a, a_len = model.audio_frontend(inputs["audio"], inputs["audio_lengths"])
        proj, _ = model.fusion(a if "a" in m else None, v if "v" in m else None, a_len, lengths)
        enc, enc_lengths = None, None

        def run():
            nonlocal enc, enc_lengths
            enc, enc_lengths = model.encode_modality(*args, modality=_MODALITY[m])
        blocks = block_outputs(model.encoder.encoders, run)
        log_probs = model.ctc(enc)
    stream = {"v": 0, "a": 1, "av": 2}[m]
    # every item equals the peer's single-utterance ("trimmed") decoding inputs
    for i, n in enumerate(lengths.tolist()):
        close(enc[i, :n], outputs[f"trimmed_decoder_input_{m}"][i], f"{m} encoder item {i}")
        close(log_probs[i, :n], outputs[f"trimmed_ctc_log_probs_{m}"][i], f"{m} CTC item {i}")
    # the V stream does not leak padding in USR: every valid frame of the batch compares;
    # the audio front-end leaks into the A and AV streams: compare the longest item
    rows = range(2) if m == "v" else range(1)
    for i in rows:
        n = int(lengths[i])
        close(proj[i, :n], outputs[f"proj_{m}"][i, :n], f"{m} projection item {i}")
        for k, block in enumerate(blocks):
            close(block[i, :n], outputs["encoder_block_out"][k, 2 * stream + i, :n],
                  f"{m} block {k} item {i}")
        close(enc[i, :n], outputs[f"encoder_out_{m}"][i, :n], f"{m} encoder item {i}")
        close(log_probs[i, :n], outputs[f"ctc_log_probs_{m}"][i, :n], f"{m} CTC item {i}")
    close(v[0], outputs["frontend_v_out"][0], "video front-end")
    close(a[0], outputs["frontend_a_out"][0], "audio front-end")
    check_decoder(model, outputs, inputs, outputs[f"encoder_out_{m}"], lengths,
                  outputs[f"decoder_logits_{m}"])
    check_decoder(model, outputs, inputs, enc, enc_lengths, outputs[f"decoder_logits_{m}"],
                  rows=set(rows))
    check_losses(outputs, inputs, f"_{m}", lengths, eos)
    if m == "v":  # no padding leak: avsr's own outputs give the peer's batched losses
        with torch.no_grad():
            ys_in = outputs["ys_in"]
            logits = model.decoder(ys_in, inputs["token_lengths"] + 1, enc, enc_lengths)
        loss = HybridCTCAttentionLoss(0.1, 0.1, 0, eos, eos)
        own = loss(log_probs, enc_lengths, logits, inputs["tokens"].clamp(min=0),
                   inputs["token_lengths"])
        close(own["loss_ctc"], outputs["loss_ctc_v"], "own CTC loss")
        close(own["loss_att"], outputs["loss_att_v"], "own attention loss")
    for w in ("0.1", "0.3"):
        check_beam(model, outputs, enc, enc_lengths, log_probs, f"trimmed_{m}_ctc{w}", eos)
        # USR's test loop decodes padded rows; for the longest item that is the same search
        check_beam(model, outputs, enc, enc_lengths, log_probs, f"padded_batch_{m}_ctc{w}", eos,
                   rows={0})


def test_usr_total_loss_formula() -> None:
    """USR's total: 0.9·(0.3·att_v + 0.7·att_a + 0.7·att_av) + 0.1·(same for CTC)."""
    _, inputs, outputs = load_fixture("usr_unified")
    parts = {m: check_losses(outputs, inputs, f"_{m}", inputs["video_lengths"], 55)
             for m in ("v", "a", "av")}
    w = {"v": 0.3, "a": 0.7, "av": 0.7}
    total = sum(w[m] * (0.9 * parts[m]["loss_att"] + 0.1 * parts[m]["loss_ctc"]) for m in w)
    close(total, outputs["loss"], "USR total loss")
