"""Corpus preparation on generated videos whose landmarks are known exactly.

Each raw RGB video shows a face placed by a known similarity transform per frame (scale,
rotation, a drifting translation) of avsr's mean face; a bright rectangle is painted around
the mean face's mouth centre. After the warp back to the mean face and the 96 x 96 crop, that
rectangle must sit, axis-aligned, at the crop centre (48, 48) in every frame.
"""

from __future__ import annotations

import json
import math
import pickle
import wave
from pathlib import Path

import numpy as np
import pytest

from avsr.data.corpora import LRS3
from avsr.data.io import SAMPLES_PER_FRAME, load_video, write_mp4
from avsr.prepare import (
    PrepareOptions,
    interpolate_landmarks,
    mean_face,
    prepare_corpus,
    read_landmarks,
    similarity_transform,
    smooth_landmarks,
    split_long,
    write_manifests,
)
from avsr.prepare.crop import apply_transform
from avsr.prepare.segments import Transcript, Word

H = W = 160
HALF = (14, 8)  # half width / height of the painted mouth patch, in mean-face pixels


def _transform(t: int, angle_deg: float = 12.0, scale: float = 0.5) -> np.ndarray:
    """Mean face -> raw frame at frame t: fixed rotation and scale, linear drift."""
    a = math.radians(angle_deg)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.concatenate([lin, np.array([[40.0 + 0.8 * t], [20.0 + 0.4 * t]])], axis=1)


def _frame(m: np.ndarray) -> np.ndarray:
    """RGB frame: coloured background, the mouth rectangle (in mean-face space) in white."""
    inv = np.linalg.inv(m[:, :2])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    uv = (np.stack([xx, yy], axis=-1) - m[:, 2]) @ inv.T  # raw pixel -> mean-face coords
    inside = (np.abs(uv[..., 0] - 128) <= HALF[0]) & (np.abs(uv[..., 1] - 188) <= HALF[1])
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (40, 70, 100)
    img[inside] = 255
    return img


def make_clip(root: Path, rel: str, n: int, *, missing: tuple[int, ...] = (), text: str = "",
              words: list[tuple[str, float, float]] | None = None, npy: bool = False,
              lm_root: Path | None = None) -> list[np.ndarray]:
    """Raw video + audio + transcript under ``root`` and landmarks under ``lm_root``."""
    ms = [_transform(t) for t in range(n)]
    video = root / f"{rel}.mp4"
    audio = 0.2 * np.sin(2 * np.pi * 220 * np.arange(n * SAMPLES_PER_FRAME) / 16000)
    write_mp4(video, np.stack([_frame(m) for m in ms]), audio.astype(np.float32))
    lines = [f"Text:  {text}", "Conf:  4"]
    if words:
        lines += ["", "WORD START END ASDSCORE"]
        lines += [f"{w} {s:.2f} {e:.2f} 1.0" for w, s, e in words]
    video.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    marks = [None if t in missing else apply_transform(m, mean_face()) for t, m in enumerate(ms)]
    lm = (lm_root or root.parent / "landmarks") / rel
    lm.parent.mkdir(parents=True, exist_ok=True)
    if npy:
        np.save(lm.with_suffix(".npy"),
                np.stack([np.full((68, 2), np.nan) if x is None else x for x in marks]))
    else:
        lm.with_suffix(".pkl").write_bytes(pickle.dumps(marks))
    return marks


def _centroid(crop: np.ndarray) -> tuple[float, float, int, int]:
    mask = crop > 160
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean(), np.ptp(rows) + 1, np.ptp(cols) + 1


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw") / "lrs3"
    lm = root.parent / "landmarks"
    make_clip(root, "trainval/spk001/00001", 20, missing=(4, 7, 8, 9, 15),
              text="PLACE BLUE NOW", lm_root=lm)
    make_clip(root, "test/spk009/00001", 12, text="SET RED", npy=True, missing=(5,),
              lm_root=lm)
    # 2 s pretrain clip with a 0.6 s word gap: cut in two with max_duration 1.5 s
    make_clip(root, "pretrain/spk002/00001", 50, text="BIN RED AT SOON", lm_root=lm,
              words=[("BIN", 0.1, 0.4), ("RED", 0.45, 0.7), ("AT", 1.3, 1.5),
                     ("SOON", 1.55, 1.9)])
    # landmarks in 3 of 10 frames: too few
    make_clip(root, "trainval/spk003/00001", 10, text="LAY GREEN", lm_root=lm,
              missing=(0, 1, 2, 3, 5, 6, 8))
    return root


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared") / "lrs3"
    summary = prepare_corpus("lrs3", raw, out, landmarks=raw.parent / "landmarks", workers=1,
                             options=PrepareOptions(max_duration=1.5), progress=False)
    return out, summary


def test_landmark_files_interpolation_and_smoothing(raw) -> None:
    marks = read_landmarks(raw.parent / "landmarks/trainval/spk001/00001.pkl")
    assert [i for i, m in enumerate(marks) if m is None] == [4, 7, 8, 9, 15]
    truth = np.stack([apply_transform(_transform(t), mean_face()) for t in range(20)])
    # gaps inside a linear drift are recovered exactly ...
    np.testing.assert_allclose(interpolate_landmarks(marks), truth, atol=1e-9)
    # ... and frames before the first / after the last detection hold the nearest one
    ends = interpolate_landmarks([None, None, *truth[2:19], None])
    np.testing.assert_allclose(ends, truth[[2, 2, *range(2, 19), 18]], atol=1e-9)
    npy = read_landmarks(raw.parent / "landmarks/test/spk009/00001.npy")
    assert npy[5] is None and npy[4] is not None
    assert interpolate_landmarks([None, None]) is None
    # smoothing removes per-frame shape jitter but follows the head's position
    rng = np.random.default_rng(0)
    jitter = truth + rng.normal(0, 1.0, truth.shape)
    smooth = smooth_landmarks(jitter, 12)
    assert np.abs(smooth - truth).mean() < 0.6 * np.abs(jitter - truth).mean()
    np.testing.assert_allclose(smooth.mean(axis=1), jitter.mean(axis=1), atol=1e-9)


def test_similarity_fit_recovers_a_known_transform() -> None:
    m = _transform(3, angle_deg=-20, scale=1.7)
    pts = mean_face()
    np.testing.assert_allclose(similarity_transform(pts, apply_transform(m, pts)), m, atol=1e-9)
    assert mean_face()[48:68].mean(axis=0).tolist() == [128.0, 188.0]


def test_crop_puts_the_mouth_at_the_centre_of_every_frame(prepared) -> None:
    out, summary = prepared
    for rel, n in (("trainval/spk001/00001", 20), ("test/spk009/00001", 12)):
        crops = load_video(out / f"{rel}.mp4").numpy()
        assert crops.shape == (n, 96, 96)
        for t, crop in enumerate(crops):
            r, c, height, width = _centroid(crop)
            assert abs(r - 48) < 0.3 and abs(c - 48) < 0.3, (rel, t, r, c)
            # rotation undone and scale restored: an axis-aligned 29 x 17 rectangle
            assert abs(width - (2 * HALF[0] + 1)) <= 1 and abs(height - (2 * HALF[1] + 1)) <= 1
        with wave.open(str(out / f"{rel}.wav")) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            assert w.getnframes() == n * SAMPLES_PER_FRAME


def test_long_utterances_split_at_word_gaps(prepared) -> None:
    words = (Word("A", 0.0, 5.0), Word("B", 5.2, 9.0), Word("C", 9.5, 15.0), Word("D", 16, 17))
    segs = split_long(Transcript("A B C D", "", words))
    assert [(s.suffix, s.start, s.end, s.text) for s in segs] == [
        ("_0", 0.0, 9.25, "A B"), ("_1", 9.25, 15.5, "C"), ("_2", 15.5, None, "D")]
    assert segs[1].words == (Word("C", 0.25, 5.75),)
    assert len(split_long(Transcript("A B", "", words[:2]))) == 1  # under 15 s: whole
    out, _ = prepared
    utts = {u.id: u for u in LRS3(out).utterances("pretrain")}
    assert sorted(utts) == ["pretrain/spk002/00001_0", "pretrain/spk002/00001_1"]
    # cut halfway through the 0.7..1.3 s gap: frames 0..24 and 25..49
    assert [len(load_video(utts[k].video_path)) for k in sorted(utts)] == [25, 25]
    assert utts["pretrain/spk002/00001_1"].text == "AT SOON"
    assert utts["pretrain/spk002/00001_1"].audio_path.endswith(".wav")
    txt = (out / "pretrain/spk002/00001_1.txt").read_text()
    assert "AT 0.30 0.50 1.0" in txt  # re-timed from the piece start (1.0 s)


def test_summary_counts_skips_and_reruns_are_idempotent(raw, prepared) -> None:
    out, summary = prepared
    assert summary["counts"] == {"written": 3, "exists": 0, "too_few_landmarks": 1,
                                 "no_landmarks": 0, "failed": 0}
    assert summary["skipped"][0]["clip"] == "trainval/spk003/00001"
    assert not (out / "trainval/spk003/00001.mp4").exists()
    assert json.loads((out / "prepare_summary.json").read_text())["pieces"] == 4
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".mp4", ".wav"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    index = (out / "index.tsv").read_text()
    (out / "test/spk009/00001.mp4").unlink()  # an interrupted run lost one piece
    again = prepare_corpus("lrs3", raw, out, landmarks=raw.parent / "landmarks", workers=2,
                           options=PrepareOptions(max_duration=1.5), progress=False)
    assert again["counts"]["written"] == 1 and again["counts"]["exists"] == 2
    assert (out / "index.tsv").read_text() == index
    for p in files:
        if "spk009" not in str(p):  # every other piece is left untouched
            assert p.stat().st_mtime_ns == stamps[p], p
    assert not list(out.rglob("*.part"))


def test_manifests_in_avhubert_and_auto_avsr_forms(prepared, tmp_path) -> None:
    from avsr.data.units_tokenizer import UnitsTokenizer

    out, _ = prepared
    units = tmp_path / "units.txt"
    words = "PLACE BLUE NOW SET RED BIN AT SOON".split()
    pieces = ["<unk>"] + sorted({"\u2581" + w for w in words})
    units.write_text("".join(f"{p} {i}\n" for i, p in enumerate(pieces, 1)))
    val = tmp_path / "val.txt"
    val.write_text("trainval/spk001/00001\n")
    counts = write_manifests({"lrs3": out}, tmp_path / "m", val_list=val,
                             tokenizer=UnitsTokenizer(units))
    assert counts == {"lrs3_30h": {"train": 0, "valid": 1, "test": 1},
                      "lrs3_433h": {"train": 2, "valid": 1, "test": 1}}
    tsv = (tmp_path / "m/lrs3_433h/train.tsv").read_text().splitlines()
    assert tsv[0] == str(out.resolve())
    assert tsv[1].split("\t") == ["lrs3/pretrain/spk002/00001_0", "pretrain/spk002/00001_0.mp4",
                                  "pretrain/spk002/00001_0.wav", "25", str(25 * 640)]
    assert (tmp_path / "m/lrs3_433h/train.wrd").read_text().splitlines() == ["bin red",
                                                                             "at soon"]
    tok = UnitsTokenizer(units)
    csv = (tmp_path / "m/lrs3_433h/test.csv").read_text().splitlines()
    assert csv == [f"lrs3,test/spk009/00001.mp4,12,{' '.join(map(str, tok.encode('SET RED')))}"]


def test_lrs2_layout_and_list_files_are_kept(tmp_path) -> None:
    from avsr.data.corpora import LRS2

    raw = tmp_path / "raw"
    make_clip(raw, "main/5535415699068794046/00001", 10, text="SET RED",
              lm_root=tmp_path / "lm")
    for split, ids in (("train", ""), ("val", ""), ("pretrain", ""),
                       ("test", "5535415699068794046/00001 NF\n")):
        (raw / f"{split}.txt").write_text(ids)
    summary = prepare_corpus("lrs2", raw, tmp_path / "out", landmarks=tmp_path / "lm",
                             progress=False)
    assert summary["counts"]["written"] == 1
    (utt,) = LRS2(tmp_path / "out").utterances("test")
    assert utt.id == "main/5535415699068794046/00001" and utt.text == "SET RED"
