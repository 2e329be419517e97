"""Tests of the synthetic audio-visual corpus generator (``avsr.data.synthetic``)."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsr.data.io import SAMPLES_PER_FRAME, load_audio, load_video, probe
from avsr.data.synthetic import (
    VISEMES,
    format_transcript,
    generate_corpus,
    phoneme_visemes,
    sample_speakers,
    synthesize_utterance,
    trajectory,
)
from avsr.data.synthetic.engine import get_engine
from avsr.data.synthetic.espeak import PAUSE_PHONEMES, PhonemeTiming, _Event
from avsr.data.synthetic.render import render_frames, still_motion
from avsr.data.synthetic.speakers import VARIANTS
from avsr.data.synthetic.text import GRID_GRAMMAR, grid_sentence, open_sentence, spoken_form
from avsr.data.synthetic.visemes import PARAMS, PHONEME_TO_VISEMES
from avsr.data.synthetic.words import vocabulary

SEED = 7
COUNTS = {"num_train": 4, "num_val": 2, "num_test": 2, "num_babble": 2}
SPEAKERS = {"num_train_speakers": 2, "num_val_speakers": 1, "num_test_speakers": 1,
            "num_babble_speakers": 1}
AAC_SLACK = 2048  # AAC pads the last frame (1024 samples) and may add a little more


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate_corpus(root, seed=SEED, domain="mixed", workers=2, **COUNTS, **SPEAKERS)
    return root, summary


def _parse_txt(path: Path) -> tuple[str, list[tuple[str, float, float]]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("Text:  ") and lines[1].startswith("Conf:")
    assert lines[2] == "" and lines[3] == "WORD START END ASDSCORE"
    words = []
    for line in lines[4:]:
        word, start, end, score = line.split()
        assert float(score) == 1.0
        words.append((word, float(start), float(end)))
    return lines[0].removeprefix("Text:").strip(), words


def _ids(root: Path, split_dir: str) -> list[str]:
    mp4s = (root / split_dir).rglob("*.mp4")
    return sorted(str(p.relative_to(root).with_suffix("")) for p in mp4s)


# ------------------------------------------------------------------------------ the corpus


def test_layout_and_summary(corpus):
    root, summary = corpus
    trainval, test = _ids(root, "trainval"), _ids(root, "test")
    assert len(trainval) == COUNTS["num_train"] + COUNTS["num_val"]
    assert len(test) == COUNTS["num_test"]
    for uid in trainval + test:
        assert (root / f"{uid}.txt").is_file()
        assert uid.split("/")[2].isdigit() and len(uid.split("/")[2]) == 5
    val_ids = (root / "val_ids.txt").read_text().split()
    assert len(val_ids) == COUNTS["num_val"] and set(val_ids) <= set(trainval)
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["complete"] and meta["counts"] == {"train": 4, "val": 2, "test": 2}
    assert meta["config"]["seed"] == SEED and summary["generated"] == 10
    assert not list(root.rglob("*.part")) and not (root / "corpus.pending.json").exists()


def test_media_decodes_at_25fps_96px_with_matching_audio(corpus):
    root, _ = corpus
    for mp4 in sorted(root.rglob("*.mp4")):
        video, audio = load_video(mp4), load_audio(mp4)
        T = video.shape[0]
        assert tuple(video.shape[1:]) == (96, 96)
        assert probe(mp4)["fps"] == pytest.approx(25.0)
        assert 0 <= len(audio) - T * SAMPLES_PER_FRAME <= AAC_SLACK
        assert float(audio.abs().max()) > 0.1  # speech, not silence


def test_transcripts_parse_with_monotone_timings_inside_the_clip(corpus):
    root, _ = corpus
    for txt in sorted(root.rglob("*.txt")):
        if txt.name == "val_ids.txt":
            continue
        text, words = _parse_txt(txt)
        assert text == text.upper() and text.split() == [w for w, _, _ in words]
        if txt.parent.parent.name == "babble":  # audio only: the clip is the wav
            duration = len(load_audio(txt.with_suffix(".wav"))) / 16000.0
        else:
            duration = load_video(txt.with_suffix(".mp4")).shape[0] / 25.0
        assert words[0][1] >= 0.09  # at least ~0.1 s leading silence
        prev_end = 0.0
        for _, start, end in words:
            assert prev_end - 0.011 <= start < end <= duration  # 2-decimal rounding
            prev_end = end
        assert words[-1][2] <= duration - 0.09


def test_speakers_are_disjoint_across_splits(corpus):
    root, _ = corpus
    meta = json.loads((root / "corpus.json").read_text())
    val_ids = set((root / "val_ids.txt").read_text().split())
    train_spk = {i.split("/")[1] for i in _ids(root, "trainval") if i not in val_ids}
    val_spk = {i.split("/")[1] for i in val_ids}
    test_spk = {i.split("/")[1] for i in _ids(root, "test")}
    assert train_spk and val_spk and test_spk
    assert not (train_spk & val_spk) and not (train_spk & test_spk) and not (val_spk & test_spk)
    listed = {s: {x["id"] for x in meta["speakers"][s]} for s in ("train", "val", "test")}
    assert listed == {"train": train_spk, "val": val_spk, "test": test_spk}
    voices = [(x["voice"]["name"], x["voice"]["pitch"], x["voice"]["rate"])
              for s in listed for x in meta["speakers"][s]]
    assert len(set(voices)) == len(voices)


def test_rerun_skips_complete_utterances_and_rejects_other_configs(corpus):
    root, _ = corpus
    again = generate_corpus(root, seed=SEED, domain="mixed", workers=1, **COUNTS, **SPEAKERS)
    assert again["generated"] == 0 and again["skipped_existing"] == 10
    with pytest.raises(ValueError, match="holds a corpus"):
        generate_corpus(root, seed=SEED + 1, domain="mixed", workers=1, **COUNTS, **SPEAKERS)


def test_interrupted_generation_resumes_and_marks_completion_last(corpus, tmp_path):
    root, _ = corpus
    # Simulate an interruption: a copy of the corpus without corpus.json, one utterance missing
    # its .txt (never written) and another missing entirely.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "corpus.json").unlink()
    first, second = sorted((copy / "trainval").rglob("*.txt"))[:2]
    first.unlink()
    second.unlink()
    second.with_suffix(".mp4").unlink()
    summary = generate_corpus(copy, seed=SEED, domain="mixed", workers=1, **COUNTS, **SPEAKERS)
    assert summary["generated"] == 2 and summary["skipped_existing"] == 8
    assert (copy / "corpus.json").is_file() and not (copy / "corpus.pending.json").exists()
    assert first.read_text() == (root / first.relative_to(copy)).read_text()


def test_same_seed_same_utterance_and_matches_the_pool_output(corpus):
    root, _ = corpus
    spk = sample_speakers(SEED, 2, 1, 1)["test"][0]
    a = synthesize_utterance(spk, seed=SEED, split="test", index=1, domain="mixed")
    b = synthesize_utterance(spk, seed=SEED, split="test", index=1, domain="mixed")
    assert a.sentence == b.sentence and a.words == b.words
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.video, b.video)
    assert len(a.audio) == a.num_frames * SAMPLES_PER_FRAME
    # The worker pool wrote the same utterance (scheduling does not change the corpus).
    written = (root / "test" / spk.id / "00001.txt").read_text()
    assert written == format_transcript(a.words)
    assert _parse_txt(root / "test" / spk.id / "00001.txt")[0] == a.sentence.text
    other = synthesize_utterance(spk, seed=SEED + 1, split="test", index=1, domain="mixed")
    assert other.audio.shape != a.audio.shape or not np.array_equal(other.audio, a.audio)


# -------------------------------------------------------------------- engine, text, visemes


def test_espeak_event_struct_and_events():
    assert ctypes.sizeof(_Event) == (40 if ctypes.sizeof(ctypes.c_void_p) == 8 else 36)
    syn = get_engine().synthesize("place blue at F two now", voice="en-us+m3")
    assert syn.sample_rate == 22050
    assert len(syn.words) == 6
    assert [p.symbol for p in syn.phonemes if p.word == 0] == ["p", "l", "eI", "s"]
    starts = [w.start for w in syn.words]
    assert starts == sorted(starts) and syn.words[-1].end <= len(syn.audio) / 22050 + 1e-6
    assert 0.5 < len(syn.audio) / 22050 < 3.0


def test_engine_is_deterministic_whatever_was_synthesised_before():
    engine = get_engine()
    kwargs = {"voice": "en+f3", "rate": 160, "pitch": 60, "pitch_range": 50, "seed": 5}
    first = engine.synthesize("set red by G four soon", **kwargs)
    engine.synthesize("something else in between", voice="en-us+m2", seed=9)
    second = engine.synthesize("set red by G four soon", **kwargs)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert first.phonemes == second.phonemes and first.words == second.words


def test_grid_letters_are_spoken_as_letter_names():
    engine = get_engine()
    letters = GRID_GRAMMAR["letter"]
    assert len(letters) == 25 and "W" not in letters
    syn = engine.synthesize(" ".join(spoken_form(x) for x in letters), voice="en")
    assert len(syn.words) == 25
    first = [p.symbol for p in syn.phonemes if p.word == 0]
    assert first == ["eI"]  # "A" as the letter, not the article
    sentence = grid_sentence(np.random.default_rng(0))
    assert len(sentence.words) == 6 and sentence.text == sentence.text.upper()


def test_open_vocabulary_words_are_single_espeak_words():
    words = sorted(vocabulary())
    assert len(words) >= 2000
    sample = [words[i] for i in np.random.default_rng(0).choice(len(words), 240, replace=False)]
    engine = get_engine()
    for k in range(0, len(sample), 24):
        chunk = sample[k:k + 24]
        assert len(engine.synthesize(" ".join(chunk)).words) == len(chunk), chunk
    rng = np.random.default_rng(1)
    for _ in range(50):
        s = open_sentence(rng)
        assert 3 <= len(s.words) <= 14 and all(w.isalpha() and w.isupper() for w in s.words)


def test_viseme_table_covers_espeak_english_phonemes():
    engine = get_engine()
    text = ("the quick brown fox jumps over the lazy dog while she measures azure treasure "
            "thin those things youth beige choir oil boy cow hair near pure tour fire hour")
    for voice in ("en-us", "en"):
        for p in engine.synthesize(text, voice=voice).phonemes:
            assert p.symbol in PHONEME_TO_VISEMES or p.symbol in PAUSE_PHONEMES, p.symbol
    assert 12 <= len(VISEMES) <= 14


def _timed(symbols: list[tuple[str, float]]) -> list[PhonemeTiming]:
    out, t = [], 0.0
    for sym, dur in symbols:
        out.append(PhonemeTiming(sym, t, t + dur, 0))
        t += dur
    return out


def test_p_b_m_share_a_viseme_and_render_identically():
    assert phoneme_visemes("p") == phoneme_visemes("b") == phoneme_visemes("m")
    assert phoneme_visemes("f") == phoneme_visemes("v")
    assert phoneme_visemes("p") != phoneme_visemes("f")
    spk = sample_speakers(0, 1, 0, 0)["train"][0]
    frames = []
    for c in ("p", "b", "m"):
        params = trajectory(_timed([("a", 0.2), (c, 0.12), ("a", 0.2)]), 16, offset=0.1)
        frames.append(render_frames(params, spk.appearance, still_motion(16)))
    np.testing.assert_array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0], frames[2])
    other = trajectory(_timed([("a", 0.2), ("f", 0.12), ("a", 0.2)]), 16, offset=0.1)
    assert not np.array_equal(render_frames(other, spk.appearance, still_motion(16)), frames[0])


def test_mouth_opens_on_open_vowels_and_closes_on_bilabials():
    spk = sample_speakers(0, 1, 0, 0)["train"][0]
    params = trajectory(_timed([("m", 0.3), ("aa", 0.3), ("m", 0.3), ("aa", 0.3)]), 30)
    open_i = PARAMS.index("open")
    t = (np.arange(30) + 0.5) * 0.04
    in_m = ((t > 0.08) & (t < 0.25)) | ((t > 0.68) & (t < 0.82))
    in_aa = ((t > 0.38) & (t < 0.55)) | ((t > 0.98) & (t < 1.15))
    assert params[in_m, open_i].max() < 0.1 < 0.6 < params[in_aa, open_i].min()
    # ... and the rendered mouth shows a dark cavity only when open.
    gray = render_frames(params, spk.appearance, still_motion(30)).mean(-1)
    dark = (gray < 0.5 * np.median(gray, axis=(1, 2), keepdims=True)).sum((1, 2))
    assert dark[in_aa].min() > 10 * max(dark[in_m].max(), 1)
    # In real speech the opening follows the vowels too.
    u = synthesize_utterance(spk, seed=1, split="train", index=0, domain="grid")
    centers = (np.arange(u.num_frames) + 0.5) * 0.04
    kind = np.full(u.num_frames, "", object)
    for sym, s, e in u.phonemes:
        kind[(centers >= s) & (centers < e)] = sym
    vowel = np.isin(kind, ["a", "aa", "A:", "E", "eI", "aI", "aU", "oU", "O:", "0", "V", "I"])
    bilabial = np.isin(kind, ["p", "b", "m"])
    assert u.params[vowel, open_i].mean() > u.params[~vowel, open_i].mean()
    if bilabial.any():
        assert u.params[bilabial, open_i].mean() < u.params[vowel, open_i].mean()


def test_speakers_use_only_ordinary_variants_shared_across_splits():
    speakers = sample_speakers(3, 30, 5, 8)
    assert not {"whisper", "klatt", "croak"} & set(VARIANTS)
    variant = lambda s: s.voice.name.partition("+")[2]  # noqa: E731
    train_variants = {variant(s) for s in speakers["train"]}
    assert train_variants == set(VARIANTS)
    for split in ("val", "test"):
        assert {variant(s) for s in speakers[split]} <= train_variants
    assert sample_speakers(3, 30, 5, 8) == speakers  # deterministic


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "avsr.data.synthetic", "--help"],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0
    for flag in ("--out", "--seed", "--train", "--val", "--test", "--domain", "--train-speakers",
                 "--val-speakers", "--test-speakers", "--workers"):
        assert flag in out.stdout
