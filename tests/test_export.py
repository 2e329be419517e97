"""``avsr.export``: torch.export programs of the encoder, CTC head and decoder step match eager
mode at two batch/time sizes, drive the unchanged beam search, save and load back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr.checkpoints import load_run
from avsr.decoding import attention_greedy
from avsr.decoding.beam_search import BeamSearch
from avsr.export import ExportedModel, export_model, load_exported, main, token_ids

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
SIZES = [(2, 17), (4, 9)]  # (batch, video frames): two shapes of one program
TOL = 1e-5
IMAGE = 44  # synth_grid's crop


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_synth_root, tmp_path_factory) -> Path:
    """A real one-step run of the synth_grid recipe at tiny size (tokenizer, vocabulary and
    config stored as training stores them)."""
    from avsr.train import train

    out = tmp_path_factory.mktemp("export_run")
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "debug=fdr", "evaluate=false",
                                          *tiny_overrides(tiny_synth_root, out)])
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def eager(tiny_ckpt):
    return load_run(tiny_ckpt).model


@pytest.fixture(scope="module")
def cli_dir(tiny_ckpt, tmp_path_factory) -> Path:
    """``python -m avsr.export ckpt=... out=... modality=video`` (in process)."""
    out = tmp_path_factory.mktemp("exported") / "video"
    assert main([f"ckpt={tiny_ckpt}", f"out={out}", "modality=video"]) == 0
    return out


@pytest.fixture(scope="module")
def exported(eager, cli_dir) -> dict[str, ExportedModel]:
    """Per modality: audio and audio-visual exported in memory, video loaded from disk."""
    models = {"video": load_exported(cli_dir)}
    ids = {k: models["video"].meta[k] for k in ("sos_id", "eos_id", "blank_id")}
    for modality in ("audio", "audiovisual"):
        programs, info = export_model(eager, modality, IMAGE)
        models[modality] = ExportedModel(programs, {**info, **ids})
    return models


def _inputs(batch: int, frames: int):
    g = torch.Generator().manual_seed(batch * 100 + frames)
    video_lengths = torch.tensor([frames - 2 * i for i in range(batch)])
    video = torch.randn(batch, frames, 1, IMAGE, IMAGE, generator=g)
    audio = torch.randn(batch, frames * 640, generator=g) * 0.1
    return audio, video_lengths * 640, video, video_lengths


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a.float() - b.float()).abs().max().item()


def test_cli_writes_the_programs_and_ids(cli_dir, tiny_ckpt) -> None:
    names = {p.name for p in cli_dir.iterdir()}
    assert {"encoder.pt2", "ctc.pt2", "decoder_init.pt2", "decoder_step.pt2",
            "export.json"} <= names
    meta = json.loads((cli_dir / "export.json").read_text())
    assert (meta["sos_id"], meta["eos_id"], meta["blank_id"]) == (2, 2, 0)
    assert meta["modality"] == "video" and meta["image_size"] == IMAGE
    assert meta["vocab_size"] == 40 and meta["vocabulary"][:3] == ["<blank>", "<unk>", "<eos>"]
    assert meta["vocabulary"] == torch.load(tiny_ckpt, weights_only=True)["avsr_vocabulary"]
    assert meta["decoder"]["num_layers"] == 1 and "decoder_step" in meta["programs"]
    assert main([f"ckpt={tiny_ckpt}"]) == 2  # usage


def test_token_ids_of_a_configured_tokenizer() -> None:
    cfg = OmegaConf.create({"data": {"tokenizer": {
        "_target_": "avsr.data.units_tokenizer.UnitsTokenizer", "units_file": "/nonexistent",
        "blank_id": 0, "eos_id": None, "sos_id": None}}})
    assert token_ids(cfg, ["<blank>", "a", "b", "<eos>"]) == {"blank_id": 0, "sos_id": 3,
                                                               "eos_id": 3}
    with pytest.raises(ValueError, match="stored vocabulary"):
        token_ids(OmegaConf.create({"data": {"tokenizer": None}}), ["<unk>", "<blank>", "x"])


@pytest.mark.parametrize("modality", ["audio", "video", "audiovisual"])
def test_encoder_and_ctc_match_eager_at_two_sizes(eager, exported, modality) -> None:
    model = exported[modality]
    for batch, frames in [*SIZES, (1, 5)]:
        audio, a_len, video, v_len = _inputs(batch, frames)
        with torch.no_grad():
            enc, enc_len = eager.encode_modality(audio, a_len, video, v_len, modality)
            x, x_len = model.encode(audio, a_len, video, v_len)
            assert _max_diff(enc, x) <= TOL
            assert torch.equal(enc_len, x_len) and x.shape[:2] == (batch, frames)
            assert _max_diff(eager.ctc(enc), model.ctc(x)) <= TOL


def test_saved_program_loads_back_with_torch_export_load(eager, cli_dir) -> None:
    ctc = torch.export.load(cli_dir / "ctc.pt2").module()
    encoder = torch.export.load(cli_dir / "encoder.pt2").module()
    for batch, frames in SIZES:
        _, _, video, v_len = _inputs(batch, frames)
        with torch.no_grad():
            enc, enc_len = eager.encode_modality(None, None, video, v_len, "video")
            x, x_len = encoder(video, v_len)
            assert _max_diff(enc, x) <= TOL and torch.equal(enc_len, x_len)
            assert _max_diff(eager.ctc(enc), ctc(enc)) <= TOL


def test_decoder_steps_match_eager(eager, exported) -> None:
    """Several steps of one hypothesis per utterance, then beam-shaped (W = 3) steps with
    parent reordering, a dropped utterance and ``rows``, as the beam search drives them."""
    decoder = exported["video"].decoder
    assert decoder.vocab_size == eager.decoder.vocab_size
    for batch, frames in SIZES:
        _, _, video, v_len = _inputs(batch, frames)
        g = torch.Generator().manual_seed(frames)
        with torch.no_grad():
            enc, enc_len = eager.encode_modality(None, None, video, v_len, "video")
            s_e = eager.decoder.init_state(enc, enc_len, max_len=frames)
            s_x = decoder.init_state(enc, enc_len, max_len=frames)
            last = torch.full((batch,), 2)
            for _ in range(3):
                l_e, s_e = eager.decoder.step(last, s_e)
                l_x, s_x = decoder.step(last, s_x)
                assert _max_diff(l_e, l_x) <= TOL
                last = l_e.argmax(-1)
            # expand to W = 3 hypotheses per utterance
            beams = torch.arange(batch).repeat_interleave(3)
            s_e, s_x = s_e.select(beams, None), s_x.select(beams, None)
            last = torch.randint(3, 40, (batch * 3,), generator=g)
            for step in range(3):
                rows = torch.arange(0, batch * 3, 2) if step == 1 else None
                l_e, s_e = eager.decoder.step(last, s_e, rows=rows)
                l_x, s_x = decoder.step(last, s_x, rows=rows)
                assert _max_diff(l_e, l_x) <= TOL
                parent = torch.randint(0, batch * 3, (batch * 3,), generator=g)
                if step == 1:  # keep every row valid: rows skipped no cache entry
                    parent = torch.arange(0, batch * 3, 2).repeat_interleave(2)[: batch * 3]
                s_e, s_x = s_e.select(parent, None), s_x.select(parent, None)
                last = torch.randint(3, 40, (batch * 3,), generator=g)
            # drop the first utterance, as the beam search does when it ends
            kept = torch.arange(1, batch)
            rows = (kept.unsqueeze(1) * 3 + torch.arange(3)).flatten()
            s_e, s_x = s_e.select(rows, kept), s_x.select(rows, kept)
            l_e, _ = eager.decoder.step(last[rows], s_e)
            l_x, _ = decoder.step(last[rows], s_x)
            assert _max_diff(l_e, l_x) <= TOL


@pytest.mark.parametrize("modality", ["video", "audiovisual"])
def test_beam_search_on_exported_programs_matches_eager(eager, exported, modality) -> None:
    model = exported[modality]
    ids = (model.sos_id, model.eos_id, model.blank_id)
    beam = BeamSearch(beam_size=3, ctc_weight=0.3, nbest=2)
    for batch, frames in SIZES:
        audio, a_len, video, v_len = _inputs(batch, frames)
        with torch.no_grad():
            enc, enc_len = eager.encode_modality(audio, a_len, video, v_len, modality)
            x, x_len = model.encode(audio, a_len, video, v_len)
        want = beam(eager.decoder, enc, enc_len, eager.ctc(enc), *ids)
        got = beam(model.decoder, x, x_len, model.ctc(x), *ids)
        assert [[h.tokens for h in hs] for hs in got] == [[h.tokens for h in hs] for hs in want]
        assert any(hs for hs in want)
        for hs_w, hs_g in zip(want, got):
            for w, g in zip(hs_w, hs_g):
                assert abs(w.score - g.score) <= TOL
                assert w.scores.keys() == g.scores.keys()
                assert all(abs(w.scores[k] - g.scores[k]) <= TOL for k in w.scores)
        greedy_w = attention_greedy(eager.decoder, enc, enc_len, ids[0], ids[1], 10)
        greedy_g = attention_greedy(model.decoder, x, x_len, ids[0], ids[1], 10)
        assert greedy_w == greedy_g


def test_loader_cuts_batch_padding_of_the_audio(eager, exported) -> None:
    """A collated batch whose audio tensor is longer than its video (padding past every
    item's length, and part of a frame): the same outputs as eager mode."""
    audio, a_len, video, v_len = _inputs(2, 9)
    audio = torch.cat([audio, torch.zeros(2, 1000)], dim=1)
    for modality in ("audio", "audiovisual"):
        with torch.no_grad():
            enc, enc_len = eager.encode_modality(audio, a_len, video, v_len, modality)
            x, x_len = exported[modality].encode(audio, a_len, video, v_len)
        assert _max_diff(enc, x) <= TOL and torch.equal(enc_len, x_len)
