"""Checkpoint importers (avsr.convert): strict all-or-nothing loading, checkpoint layouts,
the restricted unpickler (fairseq pickles without fairseq), AV-HuBERT, wav2vec 2.0 through
torchaudio's importers, the CLI and the run's ``init`` list. Output parity with the papers' own code is in
tests/test_fixture_parity.py."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
import torchaudio
from omegaconf import OmegaConf
from test_fixture_parity import build, load_fixture

from avsr.convert import CheckpointImportError, import_checkpoint, read_checkpoint
from avsr.convert.unpickler import Stub, to_plain


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- strictness
def test_unknown_missing_and_misshaped_keys_fail_listing_them_and_load_nothing() -> None:
    path, _, _ = load_fixture("auto_avsr_video")
    good = torch.load(path, weights_only=True)
    model = build("autoavsr_vsr_lrs3")
    before = _state(model)

    extra = {**good, "encoder.encoders.0.mystery.weight": torch.zeros(3)}
    with pytest.raises(CheckpointImportError, match="mystery"):
        import_checkpoint(model, "auto_avsr", extra)
    wanted = {k: v for k, v in good.items() if k != "decoder.after_norm.weight"}
    with pytest.raises(CheckpointImportError, match=r"decoder\.layer_norm\.weight") as err:
        import_checkpoint(model, "auto_avsr", wanted)
    assert err.value.missing == ["decoder.layer_norm.weight"]
    wrong = {**good, "ctc.ctc_lo.bias": torch.zeros(50)}
    with pytest.raises(CheckpointImportError, match=r"ctc\.ctc_lo\.bias: checkpoint \(50,\)"):
        import_checkpoint(model, "auto_avsr", wrong)
    assert _same(_state(model), before)  # nothing loaded half-way

    report = import_checkpoint(model, "auto_avsr", good)
    assert not _same(_state(model), before)
    assert "loaded 237 tensors" in report.summary()


def test_lightning_checkpoint_with_pickled_hyperparameters(tmp_path: Path) -> None:
    """auto_avsr's last.ckpt: ``model.``-prefixed state_dict beside argparse hyperparameters."""
    path, _, _ = load_fixture("auto_avsr_audio")
    state = {f"model.{k}": v.contiguous() for k, v in torch.load(path, weights_only=True).items()}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"args": argparse.Namespace(lr=1e-3)},
                "epoch": 74}, ckpt)
    model = build("autoavsr_asr_lrs3")
    assert len(import_checkpoint(model, "auto_avsr", ckpt).loaded) == 237


def _usr_semi(state: dict) -> dict:
    """USR's semi-supervised layout: student, EMA teacher (perturbed) and pseudo-label heads."""
    body = {k[len("_orig_mod."):]: v for k, v in state.items()}
    out = {f"_orig_mod.model.backbone.{k}": v for k, v in body.items()}
    out |= {f"_orig_mod.model.target_backbone.{k}": v + 1 for k, v in body.items()
            if v.is_floating_point()}
    out |= {f"_orig_mod.model.target_backbone.{k}": v for k, v in body.items()
            if not v.is_floating_point()}
    out["_orig_mod.model.out_layer_unlabelled_v.weight"] = torch.zeros(56, 64)
    return out


def test_usr_semi_supervised_student_or_ema_teacher() -> None:
    path, _, _ = load_fixture("usr_unified")
    semi = _usr_semi(torch.load(path, weights_only=True))
    model = build("usr_base_lrs3")
    student = import_checkpoint(model, "usr", semi, heads="av")
    w = model.encoder.after_norm.weight.clone()
    assert "_orig_mod.model.out_layer_unlabelled_v.weight" in student.dropped
    import_checkpoint(model, "usr", semi, heads="av", ema=True)
    torch.testing.assert_close(model.encoder.after_norm.weight, w + 1)


def test_usr_encoder_only_pretraining_checkpoint_needs_keep_init() -> None:
    path, _, _ = load_fixture("usr_unified")
    full = torch.load(path, weights_only=True)
    pre = {f"model._orig_mod.model.backbone.{k[len('_orig_mod.'):]}": v for k, v in full.items()
           if k.startswith("_orig_mod.encoder.")}
    pre["model._orig_mod.model.predictor.weight"] = torch.zeros(2)
    model = build("usr_base_lrs3")
    with pytest.raises(CheckpointImportError, match="model keys the checkpoint does not fill"):
        import_checkpoint(model, "usr", pre)
    report = import_checkpoint(model, "usr", pre, keep_init=["decoder.", "ctc."])
    assert report.kept_init and all(k.startswith(("decoder.", "ctc.")) for k in report.kept_init)
    assert "model._orig_mod.model.predictor.weight" in report.dropped


# ---------------------------------------------------------------------------- unpickler
def _fake_fairseq() -> list[str]:
    """Register a throw-away ``fairseq`` package whose classes end up in a pickle."""
    names = ["fairseq", "fairseq.data", "fairseq.data.dictionary"]
    for n in names:
        sys.modules[n] = types.ModuleType(n)

    class Dictionary:
        def __init__(self) -> None:
            self.symbols = ["<s>", "<pad>", "</s>", "<unk>", "hello"]
            self.indices = {s: i for i, s in enumerate(self.symbols)}

    Dictionary.__module__ = "fairseq.data.dictionary"
    Dictionary.__qualname__ = "Dictionary"
    sys.modules["fairseq.data.dictionary"].Dictionary = Dictionary  # type: ignore[attr-defined]
    return names


def _save_fairseq_checkpoint(path: Path, model_state: dict, cfg: dict) -> None:
    names = _fake_fairseq()
    try:
        dictionary = sys.modules["fairseq.data.dictionary"].Dictionary()
        torch.save({"cfg": OmegaConf.create(cfg), "model": model_state,
                    "args": argparse.Namespace(arch="av_hubert"),
                    "task_state": {"dictionaries": [dictionary]},
                    "optimizer_history": [{"num_updates": 3}]}, path)
    finally:
        for n in names:
            del sys.modules[n]


def test_fairseq_pickle_loads_without_fairseq(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    _save_fairseq_checkpoint(path, {"w": torch.arange(4.0)}, {"model": {"encoder_layers": 12}})
    assert "fairseq" not in sys.modules
    with pytest.raises(Exception):  # the safe loader refuses the foreign classes
        torch.load(path, weights_only=True)
    ckpt = read_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], torch.arange(4.0))
    assert to_plain(ckpt["cfg"]) == {"model": {"encoder_layers": 12}}
    assert to_plain(ckpt["args"]) == {"arch": "av_hubert"}
    dictionary = ckpt["task_state"]["dictionaries"][0]
    assert isinstance(dictionary, Stub) and dictionary.symbols[-1] == "hello"
    assert "fairseq" not in sys.modules


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_unpickler_runs_no_code_from_the_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {"w": torch.ones(1)}, "evil": _Evil()}, tmp_path / "x.pt")
    ckpt = read_checkpoint(tmp_path / "x.pt")
    assert isinstance(ckpt["evil"], Stub) and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------- AV-HuBERT
_AVHUBERT_TINY = ["vocab_size=12", "model.encoder.d_model=32", "model.encoder.num_layers=2",
                  "model.encoder.num_heads=4", "model.encoder.ffn_dim=64",
                  "model.encoder.pos_conv_kernel=8", "model.encoder.pos_conv_groups=4",
                  "model.decoder.num_layers=1", "model.decoder.num_heads=4",
                  "model.decoder.ffn_dim=64"]


def _avhubert_names(state: dict) -> dict:
    """avsr keys -> AV-HuBERT's (REFERENCE.md 5.1), for a synthetic fairseq checkpoint."""
    out = {}
    for k, v in state.items():
        if k.startswith(("decoder.", "ctc.")):
            continue
        k = (k.replace("audio_frontend.proj", "feature_extractor_audio.proj")
             .replace("video_frontend.", "feature_extractor_video.resnet.")
             .replace("fusion.video_proj", "feature_extractor_video.proj")
             .replace("fusion.fusion.", "")
             .replace("encoder.pos_enc.pos_conv.0.parametrizations.weight.original0",
                      "encoder.pos_conv.0.weight_g")
             .replace("encoder.pos_enc.pos_conv.0.parametrizations.weight.original1",
                      "encoder.pos_conv.0.weight_v")
             .replace("encoder.pos_enc.pos_conv.0.bias", "encoder.pos_conv.0.bias"))
        out[k] = torch.randn_like(v) if v.is_floating_point() else v
    out["mask_emb"] = torch.zeros(32)
    out["label_embs_concat"] = torch.zeros(5, 8)
    out["final_proj.weight"] = torch.zeros(8, 32)
    return out


def test_avhubert_pretrained_and_finetuned(tmp_path: Path) -> None:
    from test_fixture_parity import ROOT
    from hydra import compose, initialize_config_dir
    import hydra

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=reproduce/avhubert_base_lrs3",
                                          *_AVHUBERT_TINY])
    model = hydra.utils.instantiate(cfg.model).eval()
    source = _avhubert_names(model.state_dict())
    path = tmp_path / "base_vox_iter5.pt"
    _save_fairseq_checkpoint(path, source, {"model": {"_name": "av_hubert"}})
    report = import_checkpoint(model, "avhubert", path, keep_init=["decoder.", "ctc."])
    assert report.meta["cfg"] == {"model": {"_name": "av_hubert"}}
    assert set(report.dropped) == {"mask_emb", "label_embs_concat", "final_proj.weight"}
    torch.testing.assert_close(model.fusion.video_proj.weight,
                               source["feature_extractor_video.proj.weight"])
    # the weight-normalised positional convolution rebuilds fairseq's g · v / ‖v‖ (dim 2)
    g, v = source["encoder.pos_conv.0.weight_g"], source["encoder.pos_conv.0.weight_v"]
    torch.testing.assert_close(model.encoder.pos_enc.pos_conv[0].weight,
                               torch._weight_norm(v, g, 2))

    finetuned = {f"encoder.w2v_model.{k}": v for k, v in source.items()
                 if k not in ("mask_emb", "final_proj.weight")}
    finetuned["decoder.embed_tokens.weight"] = torch.randn(12, 32)
    finetuned["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    finetuned["decoder.version"] = torch.tensor([3.0])
    # the decoder is imported (tests/test_avhubert_parity.py proves it against AV-HuBERT's
    # code): a checkpoint that lacks some of its layers is refused unless they may stay
    with pytest.raises(CheckpointImportError, match=r"decoder\.layers\.0\.fc1\.weight"):
        import_checkpoint(model, "avhubert", {"model": finetuned})
    report = import_checkpoint(model, "avhubert", {"model": finetuned}, keep_init=["decoder.",
                                                                                  "ctc."])
    assert "placeholder" in report.dropped["decoder.embed_positions._float_tensor"]
    assert "version marker" in report.dropped["decoder.version"]
    # the tied output layer is the embedding
    torch.testing.assert_close(model.decoder.output_projection.weight,
                               finetuned["decoder.embed_tokens.weight"])
    report = import_checkpoint(model, "avhubert", {"model": finetuned}, keep_init=["decoder.",
                                                                                  "ctc."],
                               decoder=False)
    assert "decoder=False" in report.dropped["decoder.embed_tokens.weight"]


# ---------------------------------------------------------------------------- wav2vec 2.0
_W2V = dict(extractor_mode="layer_norm", extractor_conv_bias=True,
            extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2),
                                         (8, 2, 2), (8, 2, 2)],
            encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=4,
            encoder_pos_conv_groups=2, encoder_num_layers=2, encoder_num_heads=2,
            encoder_attention_dropout=0.0, encoder_ff_interm_features=32,
            encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=True,
            encoder_layer_drop=0.0)


def _reference_wav2vec2() -> torch.nn.Module:
    torch.manual_seed(0)
    ref = torchaudio.models.wav2vec2_model(**_W2V, aux_num_out=None).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


def _frontend() -> torch.nn.Module:
    from avsr.models.frontends.wav2vec2 import Wav2Vec2Frontend

    return Wav2Vec2Frontend(**_W2V, rate="none").eval()


def _fairseq_names(state: dict) -> dict:
    """torchaudio keys -> fairseq's (the inverse of torchaudio's import_fairseq mapping)."""
    subs = [("encoder.feature_projection.projection.", "post_extract_proj."),
            ("encoder.feature_projection.layer_norm.", "layer_norm."),
            ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0",
             "encoder.pos_conv.0.weight_g"),
            ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1",
             "encoder.pos_conv.0.weight_v"),
            ("encoder.transformer.pos_conv_embed.conv.", "encoder.pos_conv.0."),
            ("encoder.transformer.", "encoder."), (".attention.", ".self_attn."),
            (".feed_forward.intermediate_dense.", ".fc1."),
            (".feed_forward.output_dense.", ".fc2.")]
    out = {}
    for k, v in state.items():
        k = k.replace("encoder.transformer.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias")
        k = k.replace(".conv.weight", ".0.weight").replace(".conv.bias", ".0.bias")
        k = k.replace("conv_layers.0.layer_norm.", "conv_layers.0.2.1.")
        if "conv_layers" in k and ".layer_norm." in k:
            k = k.replace(".layer_norm.", ".2.1.")
        if ".layers." in k and ".layer_norm." in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        for a, b in subs:
            k = k.replace(a, b)
        out[k] = v
    out["mask_emb"] = torch.zeros(16)
    out["quantizer.vars"] = torch.zeros(1, 4, 8)
    return out


def _check_same_outputs(ref: torch.nn.Module, frontend: torch.nn.Module) -> None:
    wave = torch.randn(2, 640 * 12)
    with torch.no_grad():
        expected, _ = ref(wave)
        got, _ = frontend(wave, torch.tensor([wave.shape[1]] * 2))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_wav2vec2_fairseq_checkpoint_through_torchaudio_mapping(tmp_path: Path) -> None:
    ref = _reference_wav2vec2()
    path = tmp_path / "wav2vec_small.pt"
    _save_fairseq_checkpoint(path, _fairseq_names(ref.state_dict()), {"model": {"_name": "w2v"}})
    frontend = _frontend()
    report = import_checkpoint(frontend, "wav2vec2", path, prefix="")
    assert report.meta["flavour"] == "fairseq" and report.kept_init == ["num_updates"]
    assert set(report.dropped) == {"mask_emb", "quantizer.vars"}
    _check_same_outputs(ref, frontend)


def test_wav2vec2_huggingface_checkpoint_through_torchaudio_importer(tmp_path: Path) -> None:
    ref = _reference_wav2vec2()
    hf = {}
    for k, v in ref.state_dict().items():
        k = k.replace("encoder.feature_projection.", "feature_projection.")
        hf["wav2vec2." + k.replace("encoder.transformer.", "encoder.")] = v
    config = {"feat_extract_norm": "layer", "conv_dim": [8] * 7,
              "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
              "conv_bias": True, "hidden_size": 16, "feat_proj_dropout": 0.0,
              "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2,
              "num_hidden_layers": 2, "num_attention_heads": 2, "attention_dropout": 0.0,
              "intermediate_size": 32, "activation_dropout": 0.0, "hidden_dropout": 0.0,
              "do_stable_layer_norm": True, "layerdrop": 0.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save(hf, tmp_path / "pytorch_model.bin")
    frontend = _frontend()
    report = import_checkpoint(frontend, "wav2vec2", tmp_path, prefix="")
    assert report.meta["flavour"] == "huggingface"
    _check_same_outputs(ref, frontend)


def test_pickle_module_interface() -> None:
    from avsr.convert import unpickler

    assert unpickler.loads(pickle.dumps({"a": [1, 2]})) == {"a": [1, 2]}


# ---------------------------------------------------------------------------- CLI, init list
def test_cli_writes_a_checkpoint_that_evaluate_loads(tmp_path: Path) -> None:
    from test_fixture_parity import TINY

    from avsr.convert.__main__ import main
    from avsr.evaluate import load_model_from_checkpoint

    path, inputs, outputs = load_fixture("usr_unified")
    overrides = [o for o in TINY["usr_base_lrs3"] if not o.startswith("vocab_size")]
    main(["--from", "usr", str(path), str(tmp_path / "usr_v.ckpt"), "--heads", "v",
          "+experiment=reproduce/usr_base_lrs3", *overrides])
    model, cfg = load_model_from_checkpoint(tmp_path / "usr_v.ckpt")
    assert cfg.vocab_size == 56  # read from the checkpoint's output layer
    with torch.no_grad():
        enc, _ = model.encode_modality(None, None, inputs["video"], inputs["video_lengths"],
                                       "video")
    torch.testing.assert_close(model.ctc(enc)[0], outputs["ctc_log_probs_v"][0], rtol=1e-5,
                               atol=1e-4)


def test_init_list_entry_of_a_converted_format() -> None:
    """A run's ``init`` entry as train.py passes it (avsr.checkpoints.weights)."""
    from avsr.checkpoints.weights import apply_init

    path, _, _ = load_fixture("auto_avsr_video")
    node = OmegaConf.create([{"format": "auto_avsr", "path": str(path),
                              "options": {"keep_init": []}}])
    model = build("autoavsr_vsr_lrs3")
    reports = apply_init(model, OmegaConf.to_container(node))
    assert len(reports[0]["loaded"]) == 237
