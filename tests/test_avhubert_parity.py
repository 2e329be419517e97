"""Parity with AV-HuBERT's own code (``../shared/fixtures/avhubert_pretrain``).

The fixture holds a small AV-HuBERT (2 x 64 pre-LN transformer, real ResNet-18 widths and
positional convolution) and its seq2seq fine-tuning model, with AV-HuBERT's own state_dict
keys, inputs, and the outputs facebookresearch/av_hubert's model code produced (its README).
The checkpoints go through ``avsr.convert`` into the model of
``+experiment=reproduce/avhubert_base_lrs3`` shrunk to the fixture's sizes, which must
reproduce every recorded output: front-ends, fusion, every encoder layer, the single-modality
fine-tuning paths, the cluster logits and the decoder logits. AV-HuBERT leaks padding into
batched results where avsr zeroes it, so batched outputs are compared on each item's valid
frames, and the fixture's ``trimmed_*`` outputs with each item run alone.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir

from avsr.convert import CheckpointImportError, import_checkpoint
from avsr.convert.avhubert import cluster_head_state
from avsr.models.utils import make_pad_mask
from avsr.objectives.avhubert import ClusterHead
from test_fixture_parity import FIXTURES, ROOT

FOLDER = FIXTURES / "avhubert_pretrain"
EOS, PAD = 2, 1  # fairseq Dictionary: </s> starts the decoder input, <pad> fills it
TINY = ["vocab_size=16", "model.encoder.d_model=64", "model.encoder.num_layers=2",
        "model.encoder.num_heads=4", "model.encoder.ffn_dim=128", "model.decoder.num_layers=1",
        "model.decoder.num_heads=4", "model.decoder.ffn_dim=128"]
MODALITY_KEYS = {"audiovisual": "extract_finetune_av", "video": "extract_finetune_video_only",
                 "audio": "extract_finetune_audio_only"}


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """float32 parity: 1e-4 absolute (the largest difference seen is ~1e-5)."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4,
                               msg=lambda m: f"{what}: {m}")


def build(overrides: list[str] = ()) -> torch.nn.Module:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=reproduce/avhubert_base_lrs3", *TINY,
                                          *overrides])
    return hydra.utils.instantiate(cfg.model).eval()


@pytest.fixture(scope="module")
def fixture() -> dict:
    if not (FOLDER / "state_dict.pt").exists():
        pytest.skip(f"fixture {FOLDER} not available")
    return {name: torch.load(FOLDER / f"{name}.pt", weights_only=True)
            for name in ("inputs", "outputs", "state_dict", "state_dict_seq2seq")}


@pytest.fixture(scope="module")
def pretrained(fixture: dict) -> tuple[torch.nn.Module, ClusterHead]:
    model = build()
    report = import_checkpoint(model, "avhubert", dict(fixture["state_dict"]),
                               keep_init=["decoder.", "ctc."])
    assert set(report.dropped) == {"mask_emb", "label_embs_concat", "final_proj.weight",
                                   "final_proj.bias"}
    assert not [k for k in report.kept_init if not k.startswith(("decoder.", "ctc."))]
    # 10 k-means clusters + the km Dictionary's 4 special symbols, 32-d final_proj
    head = ClusterHead(64, 14, proj_dim=32)
    head.load_state_dict(cluster_head_state(fixture["state_dict"]))
    return model, head.eval()


def run(model: torch.nn.Module, head: ClusterHead | None, video: torch.Tensor,
        features: torch.Tensor, lengths: torch.Tensor, modality: str = "audiovisual") -> dict:
    """Every output the fixture records, through AVSRModel's typed steps.

    video (B, T, 1, 88, 88), features (B, T, 104) stacked filterbanks (AV-HuBERT's audio
    input: the audio front-end's linear layer alone), lengths (B,) frames.
    """
    fusion = model.fusion
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen.__setitem__(k, o)) for k, m in
             (("video_proj", fusion.video_proj), ("layer_norm", fusion.fusion.layer_norm))]
    try:
        with torch.no_grad():
            feats = model.embed(None, None, video, lengths, (modality,))
            audio, _ = model.audio_frontend.project(features, lengths)
            feats = feats._replace(audio=audio, audio_lengths=lengths, has_audio=lengths > 0)
            (stream,) = model.fuse_streams(feats, (modality,), keep_all=True)
            enc, enc_lengths, hidden = model.encode(stream.x, stream.lengths,
                                                    return_hidden=True)
            logits = head(enc) if head is not None else None
    finally:
        for h in hooks:
            h.remove()
    return {"video_resnet_out": feats.video, "feature_extractor_video_out": seen.get("video_proj"),
            "feature_extractor_audio_out": audio, "fused_features_layer_norm": seen["layer_norm"],
            "post_extract_proj_out": stream.x, "encoder_layer_out": torch.stack(hidden),
            "extract_features_final": enc, "lengths": enc_lengths, "cluster_logits": logits}


# fixture keys before the encoder -> whether the fixture holds them as (B, D, T) (AV-HuBERT's
# front-end layout) rather than (B, T, D)
FRONT = {"video_resnet_out": True, "feature_extractor_video_out": True,
         "feature_extractor_audio_out": True, "fused_features_layer_norm": False,
         "post_extract_proj_out": False, "extract_features_final": False}


def expected_item(outputs: dict, key: str, i: int, n: int) -> torch.Tensor:
    """The fixture's batched output of item i on its n valid frames, in avsr's layout."""
    ref = outputs[key]
    if key == "encoder_layer_out":
        return ref[:, i, :n]
    if key == "cluster_logits":
        return ref[0, i, :n]
    return ref[i].transpose(0, 1)[:n] if FRONT[key] else ref[i, :n]


def got_item(got: dict, key: str, i: int, n: int) -> torch.Tensor:
    out = got[key]
    return out[:, i, :n] if key == "encoder_layer_out" else out[i, :n]


KEYS = [*FRONT, "encoder_layer_out", "cluster_logits"]


def test_batched_outputs_match(fixture: dict, pretrained) -> None:
    model, head = pretrained
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    lengths = inputs["video_lengths"]
    assert torch.equal(inputs["audio_feature_lengths"], lengths)
    got = run(model, head, inputs["video"], inputs["audio_features"], lengths)
    assert torch.equal(make_pad_mask(got["lengths"], 20), outputs["padding_mask_out"])
    for i, n in enumerate(lengths.tolist()):
        for key in KEYS:
            close(got_item(got, key, i, n), expected_item(outputs, key, i, n), f"{key} item {i}")
        # output_layer=k stops after layer k without the final norm (pre-LN)
        for k in (1, 2):
            close(got["encoder_layer_out"][k - 1, i, :n],
                  outputs[f"extract_features_layer{k}"][i, :n], f"layer {k} item {i}")
        close(got["extract_features_final"][i, :n], outputs["extract_finetune_av"][i, :n],
              f"extract_finetune item {i}")
    # avsr zeroes padding where AV-HuBERT leaves values
    assert not got["extract_features_final"][1, lengths[1]:].any()


def test_trimmed_outputs_match(fixture: dict, pretrained) -> None:
    model, head = pretrained
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    for i, n in enumerate(inputs["video_lengths"].tolist()):
        one = torch.tensor([n])
        got = run(model, head, inputs["video"][i : i + 1, :n],
                  inputs["audio_features"][i : i + 1, :n], one)
        for key in KEYS:
            ref = outputs[f"trimmed_{key}"][i]
            if FRONT.get(key):
                ref = ref.transpose(0, 1)
            mine = got[key][:, 0] if key == "encoder_layer_out" else got[key][0]
            close(mine, ref[0] if key == "cluster_logits" else ref, f"trimmed {key} item {i}")
        for k in (1, 2):
            close(got["encoder_layer_out"][k - 1, 0],
                  outputs[f"trimmed_extract_features_layer{k}"][i], f"trimmed layer {k}")


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_single_modality_matches_extract_finetune(fixture: dict, pretrained,
                                                  modality: str) -> None:
    """AV-HuBERT replaces the absent stream's features by zeros after its front-end; avsr's
    ConcatFusion (``missing: zeros``) fills the absent stream the same way."""
    model, _ = pretrained
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    lengths = inputs["video_lengths"]
    key = MODALITY_KEYS[modality]
    got = run(model, None, inputs["video"], inputs["audio_features"], lengths, modality)
    assert (got["feature_extractor_video_out"] is None) == (modality == "audio")
    for i, n in enumerate(lengths.tolist()):
        close(got["extract_features_final"][i, :n], outputs[key][i, :n], f"{key} item {i}")
        alone = run(model, None, inputs["video"][i : i + 1, :n],
                    inputs["audio_features"][i : i + 1, :n], torch.tensor([n]), modality)
        close(alone["extract_features_final"][0], outputs[f"trimmed_{key}"][i],
              f"trimmed {key} item {i}")
    # the zero fill is what makes it match: a stream present as zeros differs from none
    other = run(model, None, inputs["video"], inputs["audio_features"], lengths)
    assert not torch.allclose(other["extract_features_final"], got["extract_features_final"])


def fairseq_decoder_input(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) ids padded with -1 -> fairseq's prev_output_tokens (B, L + 1): </s>, tokens,
    <pad>."""
    tokens = torch.where(tokens < 0, PAD, tokens)
    return torch.cat([torch.full_like(tokens[:, :1], EOS), tokens], dim=1)


@pytest.fixture(scope="module")
def seq2seq(fixture: dict) -> torch.nn.Module:
    model = build()
    report = import_checkpoint(model, "avhubert", dict(fixture["state_dict_seq2seq"]),
                               keep_init=["ctc."])
    assert set(report.dropped) == {"decoder.embed_positions._float_tensor", "mask_emb",
                                   "label_embs_concat"}
    assert all(k.startswith("ctc.") for k in report.kept_init)
    return model


def test_seq2seq_decoder_logits_match(fixture: dict, seq2seq) -> None:
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    lengths = inputs["video_lengths"]
    prev = fairseq_decoder_input(inputs["tokens"])
    assert torch.equal(prev, outputs["prev_output_tokens"])
    got = run(seq2seq, None, inputs["video"], inputs["audio_features"], lengths)
    enc, enc_lengths = got["extract_features_final"], got["lengths"]
    steps = inputs["token_lengths"] + 1
    with torch.no_grad():
        logits = seq2seq.decode(prev, steps, enc, enc_lengths)
    ref = outputs["s2s_decoder_logits"]
    for i, (n, m) in enumerate(zip(lengths.tolist(), steps.tolist())):
        close(enc[i, :n], outputs["s2s_encoder_out"][i, :n], f"s2s encoder item {i}")
        close(logits[i, :m], ref[i, :m], f"decoder logits item {i}")
        # the item alone, on its own frames and tokens
        with torch.no_grad():
            alone = seq2seq.decode(prev[i : i + 1, :m], steps[i : i + 1],
                                   enc[i : i + 1, :n], enc_lengths[i : i + 1])
        close(alone[0], ref[i, :m], f"decoder logits item {i} alone")


def test_seq2seq_incremental_steps_match(fixture: dict, seq2seq) -> None:
    """Beam search's cached steps number positions like fairseq's incremental decoding."""
    inputs, outputs = fixture["inputs"], fixture["outputs"]
    lengths = inputs["video_lengths"]
    got = run(seq2seq, None, inputs["video"], inputs["audio_features"], lengths)
    prev, ref = outputs["prev_output_tokens"], outputs["s2s_decoder_logits"]
    with torch.no_grad():
        state = seq2seq.decoder.init_state(got["extract_features_final"], got["lengths"])
        for t in range(int(inputs["token_lengths"].min()) + 1):
            logits, state = seq2seq.decoder.step(prev[:, t], state)
            close(logits, ref[:, t], f"step {t}")


def test_fairseq_decoder_needs_fairseq_positions(fixture: dict) -> None:
    """Decoder weights never load into a decoder that would run them with other positions."""
    state = dict(fixture["state_dict_seq2seq"])
    model = build(["model.decoder.scale_embedding=true", "model.decoder.positions=interleaved",
                   "model.decoder.first_position=0"])
    with pytest.raises(CheckpointImportError, match="positions=fairseq"):
        import_checkpoint(model, "avhubert", state, keep_init=["ctc."])
    # ... unless the decoder is left out, to be fine-tuned fresh
    report = import_checkpoint(model, "avhubert", state, keep_init=["decoder.", "ctc."],
                               decoder=False)
    assert report.dropped["decoder.layers.0.fc1.weight"].endswith("(decoder=False)")
    assert not any(k.startswith("decoder.") for k in report.loaded)


def test_cluster_head_needs_a_pretraining_checkpoint(fixture: dict) -> None:
    # fine-tuning removed final_proj: no head to import
    with pytest.raises(CheckpointImportError, match="final_proj.weight"):
        cluster_head_state(dict(fixture["state_dict_seq2seq"]))


def test_unknown_sinusoid_layout_is_refused() -> None:
    from avsr.models.positional import sinusoidal_table

    with pytest.raises(ValueError, match="unknown layout"):
        sinusoidal_table(4, 8, layout="vaswani")


def test_cli_imports_the_decoder_or_leaves_it_out(fixture: dict, tmp_path: Path) -> None:
    from avsr.convert.__main__ import main

    src, dst = tmp_path / "finetuned.pt", tmp_path / "avsr.ckpt"
    state = fixture["state_dict_seq2seq"]
    torch.save({"model": {k: v.contiguous() for k, v in state.items()}}, src)
    overrides = ["+experiment=reproduce/avhubert_base_lrs3", *TINY]
    # --keep-init takes every word after it: the overrides come first
    main(["--from", "avhubert", str(src), str(dst), *overrides, "--keep-init", "ctc."])
    written = torch.load(dst, weights_only=False)["state_dict"]
    torch.testing.assert_close(written["model.decoder.output_projection.weight"],
                               state["decoder.embed_tokens.weight"])
    unscaled = [*overrides, "model.decoder.scale_embedding=true"]
    with pytest.raises(CheckpointImportError, match="scale_embedding=false"):
        main(["--from", "avhubert", str(src), str(dst), *unscaled, "--keep-init", "ctc."])
    main(["--from", "avhubert", str(src), str(dst), *unscaled, "--no-decoder", "--keep-init",
          "decoder.", "ctc."])
    report = torch.load(dst, weights_only=False)["import_report"]
    assert report["options"] == {"decoder": False}
    assert "decoder.layer_norm.weight" in report["dropped"]
