"""Real recorded speech: the Asterisk prompt reader, prompt normalisation, the split, a tiny
Lightning run and the pocketsphinx reference, on the prompts vendored in
tests/fixtures/asterisk (CC-BY-SA 3.0, see its README)."""

from __future__ import annotations

import gzip
import logging
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from scipy.signal import resample_poly

from avsr.data.asterisk import AsteriskPrompts, read_script, read_wav, write_wav
from avsr.data.corpora import normalize_text
from avsr.data.io import FPS, load_audio
from avsr.data.prompt_text import digit_words, normalize_prompt, number_words

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "asterisk"
SCRIPT = FIXTURES / "core-sounds-en.txt"
SPEECH = {"agent-pass", "auth-thankyou", "conf-locked", "digits/7", "dir-multi9", "vm-goodbye",
          "vm-leavemsg"}
sys.path.insert(0, str(REPO / "benchmarks"))


def _corpus(tmp_path: Path, root: Path = FIXTURES, script: Path = SCRIPT,
            **kwargs) -> AsteriskPrompts:
    options = {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 0, **kwargs}
    return AsteriskPrompts(root=root, script=script, cache_dir=tmp_path / "cache", **options)


def _copy_fixtures(tmp_path: Path) -> Path:
    root = tmp_path / "sounds"
    shutil.copytree(FIXTURES, root)
    return root


# ------------------------------------------------------------------------ normalisation

def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 42, 100, 162, 999)] == [
        "ZERO", "SEVEN", "THIRTEEN", "TWENTY", "FORTY TWO", "ONE HUNDRED",
        "ONE HUNDRED SIXTY TWO", "NINE HUNDRED NINETY NINE"]
    assert number_words(1_000_001) == "ONE MILLION ONE"
    assert number_words(25_300) == "TWENTY FIVE THOUSAND THREE HUNDRED"
    assert digit_words("4242") == "FOUR TWO FOUR TWO"
    with pytest.raises(ValueError, match="out of range"):
        number_words(-1)


@pytest.mark.parametrize(("written", "spoken"), [
    ("Press 5 to leave a message", "PRESS FIVE TO LEAVE A MESSAGE"),
    ("press * to pause, press # to enter", "PRESS STAR TO PAUSE PRESS POUND TO ENTER"),
    ("I'm sorry, but your party's line is busy.", "I'M SORRY BUT YOUR PARTY'S LINE IS BUSY"),
    ("A.M.", "AM"),
    ("3D audio enabled", "THREE D AUDIO ENABLED"),
    ("a 28.8 kilobit modem", "A TWENTY EIGHT POINT EIGHT KILOBIT MODEM"),
    ("extension 1234", "EXTENSION ONE TWO THREE FOUR"),
    ("Call-Forward on No Answer.", "CALL FORWARD ON NO ANSWER"),
    ("at [@]", "AT"),
    ("IAX (note: does not say \"2\")", "IAX"),
    ("Please leave your message (simple tone sound plays)", "PLEASE LEAVE YOUR MESSAGE"),
    ("\u2018quoted\u2019 'words'", "QUOTED WORDS"),
])
def test_normalize_prompt(written, spoken):
    words, _ = normalize_prompt(written)
    assert words == spoken
    # the tokenizer's own normalisation leaves it alone: one alphabet for training and scoring
    assert normalize_text(words) == words
    assert set(words) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")


def test_normalize_prompt_counts_what_it_drops():
    words, dropped = normalize_prompt("[ascending tones]")
    assert words == "" and dropped == {"note": 1}
    words, dropped = normalize_prompt("Hello, world! (a note) Bye; now.")
    assert words == "HELLO WORLD BYE NOW"
    assert dropped == {"note": 1, ",": 1, "!": 1, ";": 1, ".": 1}


# ------------------------------------------------------------------------------- reader

def test_read_script_plain_and_gz(tmp_path):
    texts, bad = read_script(SCRIPT)
    assert len(texts) == 8 and not bad
    assert texts["vm-leavemsg"] == "Press 5 to leave a message"
    gz = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(gz, "wt") as f:
        f.write(SCRIPT.read_text() + "no colon on this line\n")
    texts_gz, bad = read_script(gz)
    assert texts_gz == texts
    assert list(bad.values()) == ["script line without 'name: text'"]
    assert next(iter(bad)).startswith(f"{gz}:")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_script(tmp_path / "nope.txt")


def test_reader_splits_resamples_and_counts_skips(tmp_path, caplog):
    corpus = _corpus(tmp_path)
    with caplog.at_level(logging.INFO, logger="avsr.data.asterisk"):
        train, val, test = (corpus.utterances(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 1, 1)
    ids = [u.id for u in train + val + test]
    assert set(ids) == SPEECH and len(set(ids)) == len(ids)
    assert [u.id for u in corpus.utterances("all")] == sorted(SPEECH)
    # the tone is counted and logged, never silently lost
    assert corpus.skipped == {"beep": "no spoken words in transcript"}
    assert "1 skipped {'no spoken words in transcript': 1}" in caplog.text
    assert corpus.dropped == {".": 3, "!": 1, "note": 1}
    assert "normalisation removed" in caplog.text
    utt = next(u for u in train + val + test if u.id == "vm-leavemsg")
    assert utt.text == "PRESS FIVE TO LEAVE A MESSAGE" and utt.video_path is None
    assert utt.audio_path == str(tmp_path / "cache" / "vm-leavemsg.wav")
    # 16 kHz copy, checked against scipy's polyphase resampler (not our code, not torchaudio)
    source, rate = read_wav(FIXTURES / "vm-leavemsg.wav")
    assert rate == 8000
    ours = load_audio(utt.audio_path).numpy()
    theirs = resample_poly(source.numpy(), 2, 1)
    assert ours.size == 2 * source.numel()
    assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    assert utt.num_frames == int(np.ceil(ours.size / 16000 * FPS))
    with pytest.raises(ValueError, match="unknown Asterisk split"):
        corpus.utterances("dev")


def test_split_is_fixed_by_seed_and_keeps_a_text_in_one_split(tmp_path):
    def split(seed: int) -> dict[str, str]:
        c = _corpus(tmp_path, seed=seed)
        return {u.id: s for s in ("train", "val", "test") for u in c.utterances(s)}

    assert split(0) == split(0)
    assert any(split(s) != split(0) for s in (1, 2, 3))
    corpus = _corpus(tmp_path)
    texts = ["A", "B", "A", "C", "D", "E", "F", "G", "H", "I", "J"]
    split_of = corpus.split_of_texts(texts)
    assert set(split_of) == set(texts)  # a repeated text gets one split, so never two
    assert sorted(split_of.values()).count("test") == 2
    with pytest.raises(ValueError, match="too few"):
        _corpus(tmp_path, val_fraction=0.45, test_fraction=0.5).split_of_texts(["A", "B"])


def test_bad_and_missing_files_are_counted_and_named(tmp_path, caplog):
    root = _copy_fixtures(tmp_path)
    (root / "vm-goodbye.wav").write_bytes(b"RIFF not really a wav")
    (root / "dir-multi9.wav").unlink()
    shutil.copy(root / "auth-thankyou.wav", root / "orphan.wav")
    with caplog.at_level(logging.WARNING, logger="avsr.data.asterisk"):
        corpus = _corpus(tmp_path, root=root, script=root / "core-sounds-en.txt")
        kept = {u.id for u in corpus.utterances("all")}
    assert kept == SPEECH - {"vm-goodbye", "dir-multi9"}
    assert corpus.skipped["vm-goodbye"].startswith(f"{root / 'vm-goodbye.wav'}: unreadable WAV")
    assert corpus.skipped["dir-multi9"] == f"missing WAV {root / 'dir-multi9'}.wav"
    assert corpus.skipped[str(root / "orphan.wav")] == "WAV without a transcript line"
    assert "4 skipped" in caplog.text and "'unreadable WAV': 1" in caplog.text


def test_too_long_prompts_are_skipped_and_counted(tmp_path):
    corpus = _corpus(tmp_path, max_seconds=1.5)
    kept = {u.id for u in corpus.utterances("all")}
    long = {k for k, v in corpus.skipped.items() if v.startswith("longer than max_seconds")}
    assert long and kept and not kept & long and kept | long == SPEECH
    for u in corpus.utterances("all"):
        assert u.num_frames / FPS <= 1.5 + 1 / FPS


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en-wav"):
        _corpus(tmp_path, root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nope.txt.gz"):
        _corpus(tmp_path, script=tmp_path / "nope.txt.gz")
    with pytest.raises(ValueError, match="val_fraction"):
        _corpus(tmp_path, val_fraction=0.6, test_fraction=0.6)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no usable Asterisk prompt"):
        _corpus(tmp_path, root=empty).utterances("train")


def test_cached_copy_is_reused_and_refreshed(tmp_path):
    root = _copy_fixtures(tmp_path)
    _corpus(tmp_path, root=root, script=root / "core-sounds-en.txt").utterances("all")
    cached = tmp_path / "cache" / "digits" / "7.wav"
    with wave.open(str(cached)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
    first, peak = cached.stat().st_mtime_ns, read_wav(cached)[0].abs().max().item()
    _corpus(tmp_path, root=root, script=root / "core-sounds-en.txt").utterances("all")
    assert cached.stat().st_mtime_ns == first  # converted once
    audio, _ = read_wav(root / "digits" / "7.wav")
    write_wav(root / "digits" / "7.wav", audio * 0.5, 8000)  # the source changed: convert again
    _corpus(tmp_path, root=root, script=root / "core-sounds-en.txt").utterances("all")
    assert read_wav(cached)[0].abs().max().item() == pytest.approx(0.5 * peak, rel=0.02)
    # a copy made for another rate is not reused
    corpus = _corpus(tmp_path, root=root, script=root / "core-sounds-en.txt", sample_rate=8000)
    corpus.utterances("all")
    assert read_wav(cached)[1] == 8000


# ------------------------------------------------------------- Hydra + Lightning, real speech

def _tiny(tmp_path: Path) -> list[str]:
    """Overrides that point the experiment at the vendored prompts and shrink it to seconds."""
    return [f"paths.data_dir={tmp_path / 'data'}", f"data.corpus.root={FIXTURES}",
            f"data.corpus.script={SCRIPT}", "data.corpus.val_fraction=0.15",
            "data.corpus.test_fraction=0.15", "data.vocab_size=30",
            "model.encoder.d_model=16", "model.encoder.num_layers=1", "model.encoder.ffn_dim=32",
            "model.encoder.num_heads=2", "model.decoder.num_heads=2", "model.decoder.ffn_dim=32",
            "model.audio_frontend.output_dim=16", "model.fusion.audio_dim=16",
            "trainer.val_check_interval=3", "trainer.check_val_every_n_epoch=null",
            "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "decode=greedy"]


def _cfg(tmp_path: Path, *extra: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=[
            "+experiment=real_asterisk_asr", f"paths.output_dir={tmp_path / 'run'}",
            "trainer.max_steps=3", *_tiny(tmp_path), *extra])


def test_experiment_defaults_point_at_the_debian_install():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=real_asterisk_asr",
                                          "paths.output_dir=/tmp/x"])
    assert cfg.data.corpus.root == "/usr/share/asterisk/sounds/en"
    assert cfg.data.corpus.script.endswith("asterisk-core-sounds-en/core-sounds-en.txt.gz")
    assert cfg.data.corpus.cache_dir.endswith("/asterisk16k")  # never the system directory
    assert list(cfg.stage.objective.modalities) == ["audio"] and cfg.model.video_frontend is None
    assert cfg.stage.scheduler.time_budget_s is None  # reported at a fixed step budget


def test_tiny_lightning_run_on_real_speech(tmp_path):
    from avsr.train import train

    summary = train(_cfg(tmp_path))
    assert summary["global_step"] == 3
    assert summary["skipped_media"]["total"] == 0
    assert "val/wer" in summary["metrics"]
    wer = summary["eval"]["audio/clean"]
    assert wer >= 0
    hyps = (tmp_path / "run" / "eval" / "hyps" / "audio_clean_attention_greedy.tsv")
    lines = hyps.read_text().splitlines()
    assert len(lines) == 2  # header + the one test prompt
    assert (tmp_path / "data" / "asterisk16k" / "spm_unigram30.model").is_file()
    # resumable: ckpt_path=last continues the same run
    summary = train(_cfg(tmp_path, "trainer.max_steps=5", "ckpt_path=last", "evaluate=false"))
    assert summary["global_step"] == 5


# ------------------------------------------------------------------ pocketsphinx reference

def test_pocketsphinx_reference_on_a_vendored_prompt(tmp_path):
    import real_speech

    corpus = _corpus(tmp_path)
    utt = next(u for u in corpus.utterances("all") if u.id == "auth-thankyou")
    decoder = real_speech.pocketsphinx_decoder()
    assert real_speech.pocketsphinx_transcribe(decoder, utt.audio_path) == "THANK YOU"
    assert real_speech.corpus_wer(["THANK YOU", "PRESS FIVE"], ["THANK YOU", "PRESS"]) == 0.25
    with pytest.raises(ValueError, match="8000 Hz"):
        real_speech.pocketsphinx_transcribe(decoder, FIXTURES / "auth-thankyou.wav")


def test_benchmark_gives_both_wers_on_the_same_prompts_and_resumes(tmp_path, capsys):
    import real_speech

    out = tmp_path / "bench"
    results = real_speech.main(["--steps", "2", "--out", str(out), *_tiny(tmp_path)])
    ours, theirs = results["systems"].values()
    assert ours["global_step"] == 2
    assert ours["utterances"] == theirs["utterances"] == 1  # the one vendored test prompt
    assert ours["words"] == theirs["words"]
    # the decoder is the one with the lowest validation WER; jiwer over its test hypotheses
    # agrees with the project's own WER
    assert set(ours["val_wer_by_decoder"]) == {"ctc_greedy", "attention_greedy"}
    assert ours["decoder"] == min(ours["val_wer_by_decoder"], key=ours["val_wer_by_decoder"].get)
    assert ours["wer"] == ours["test_wer_by_decoder"][ours["decoder"]]
    assert ours["wer"] == pytest.approx(ours["wer_avsr_metric"], abs=1e-6)
    assert (out / "ours" / "val_decode" / "wer.json").is_file()
    assert 0 <= theirs["wer"] <= 1.0
    hyps = real_speech.read_hyps(out / "pocketsphinx_hyps.tsv")
    assert len(hyps) == 1
    assert (out / "results.md").read_text().count("|") > 8
    # a second call with the same budget reuses the finished run and the decodes
    again = real_speech.main(["--steps", "2", "--out", str(out), *_tiny(tmp_path)])
    assert "reused finished run" in capsys.readouterr().out
    assert [s["wer"] for s in again["systems"].values()] == [ours["wer"], theirs["wer"]]
