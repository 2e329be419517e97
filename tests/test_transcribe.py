"""``avsr.transcribe``: files, folders and lists of mp4s; a clear error for a missing stream."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import tiny_overrides, write_clip
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from avsr.transcribe import collect_media, transcribe

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_synth_root, tmp_path_factory) -> Path:
    """An untrained tiny model saved the way training saves checkpoints."""
    out = tmp_path_factory.mktemp("ckpt")
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid",
                                          *tiny_overrides(tiny_synth_root, out)])
    tokenizer = hydra.utils.instantiate(cfg.data).load_tokenizer()
    with open_dict(cfg):
        cfg.vocab_size = tokenizer.vocab_size
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    path = out / "tiny.ckpt"
    torch.save({"avsr_config": OmegaConf.to_container(cfg, resolve=True),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _decode_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("transcribe", overrides=["ckpt=x", "media=y", "paths.output_dir=/tmp/x",
                                               *overrides])
    return cfg.decode


def test_file_folder_and_list_give_the_same_transcripts(tiny_ckpt, tmp_path) -> None:
    clips = [write_clip(tmp_path / "clips" / f"c{i}.mp4", 10 + 3 * i, seed=i) for i in range(3)]
    listing = tmp_path / "list.txt"
    listing.write_text("clips/c2.mp4\n# a comment\nclips/c0.mp4\n")
    assert collect_media(listing) == [tmp_path / "clips/c2.mp4", tmp_path / "clips/c0.mp4"]
    decode = _decode_cfg()
    assert decode.primary_decoder == "beam"
    folder = transcribe(tiny_ckpt, tmp_path / "clips", "audiovisual", decode, batch_size=2)
    assert [p for p, _ in folder] == [str(c) for c in clips]
    assert all(isinstance(t, str) for _, t in folder)
    single = transcribe(tiny_ckpt, clips[1], "audiovisual", decode)
    listed = transcribe(tiny_ckpt, listing, "audiovisual", decode)
    by_path = dict(folder)
    assert single == [(str(clips[1]), by_path[str(clips[1])])]  # batching changes nothing
    assert listed == [(str(clips[2]), by_path[str(clips[2])]),
                      (str(clips[0]), by_path[str(clips[0])])]
    # greedy decoding and single modalities run too
    greedy = transcribe(tiny_ckpt, clips[0], "video", _decode_cfg("decode=greedy"))
    assert len(greedy) == 1
    assert len(transcribe(tiny_ckpt, clips[0], "audio", decode)) == 1


def test_missing_stream_is_a_clear_error(tiny_ckpt, tmp_path) -> None:
    silent = write_clip(tmp_path / "silent.mp4", 10, audio=False)
    with pytest.raises(ValueError, match=r"silent.mp4 has no audio stream.*modality=video"):
        transcribe(tiny_ckpt, silent, "audiovisual", _decode_cfg(), on_missing_stream="error")
    # by default it falls back to video with a warning (tests/test_transcribe_any.py)
    assert len(transcribe(tiny_ckpt, silent, "video", _decode_cfg())) == 1
    with pytest.raises(FileNotFoundError, match="no such file"):
        transcribe(tiny_ckpt, tmp_path / "nope.mp4", "video", _decode_cfg())
    with pytest.raises(ValueError, match="modality"):
        transcribe(tiny_ckpt, silent, "lips", _decode_cfg())
