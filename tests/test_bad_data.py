"""Bad input that used to give silently wrong results (issue 20, items 4-6), on real files.

4. an mp4 cut at the tail with its index at the front decodes only its first part;
5. characters the tokenizer does not know become ``<unk>``;
6. one unusable ``.txt`` stopped the whole corpus scan.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import SENTENCES, make_lrs3_tree, write_clip, write_lrs3_txt

from avsr.data.corpora import LRS2, LRS3, TranscriptError, read_transcript
from avsr.data.datamodule import AVDataModule
from avsr.data.dataset import AVDataset
from avsr.data.io import SAMPLES_PER_FRAME, MediaError, load_audio, load_video
from avsr.data.tokenizer import Tokenizer, train_tokenizer
from avsr.utils.runtime import skip_totals

FRAMES = 50


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer(train_tokenizer(SENTENCES, tmp_path_factory.mktemp("tok") / "spm", 40))


def _faststart_clip(path: Path, num_frames: int = FRAMES, size: int = 32) -> Path:
    """An mp4 (H.264 + AAC) whose index (moov) precedes the media data, as web copies are."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (num_frames, size, size), dtype=np.uint8)
    t = np.arange(num_frames * SAMPLES_PER_FRAME) / 16000.0
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32).reshape(1, -1)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as c:
        video = c.add_stream("libx264", rate=25)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 25)
        audio = c.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="gray")
            frame.pts = i
            for packet in video.encode(frame):
                c.mux(packet)
        for packet in video.encode():
            c.mux(packet)
        frame = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in audio.encode(frame):
            c.mux(packet)
        for packet in audio.encode():
            c.mux(packet)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index really is at the front
    return path


def _cut_after_video_packet(src: Path, dst: Path, keep: int) -> Path:
    """Copy ``src`` cut right after its ``keep``-th video packet (in file order).

    Cutting on a packet boundary makes FFmpeg decode the first part without any error: the
    silent case. (A cut inside a packet usually raises on decoding; tested separately.)
    """
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size, p.stream.type) for p in c.demux() if p.size]
    seen = 0
    for pos, size, kind in sorted(packets):
        seen += kind == "video"
        if seen == keep:
            dst.write_bytes(src.read_bytes()[:pos + size])
            return dst
    raise AssertionError(f"{src} has fewer than {keep} video packets")


@pytest.fixture(scope="module")
def cut_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cut")
    full = _faststart_clip(root / "full.mp4")
    half = root / "half.mp4"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return {"full": full, "boundary": _cut_after_video_packet(full, root / "cut.mp4", 24),
            "half": half}


# ------------------------------------------------------------------ 4. tail-truncated media


def test_complete_faststart_clip_loads(cut_clips: dict[str, Path]) -> None:
    assert load_video(cut_clips["full"]).shape[0] == FRAMES
    assert load_audio(cut_clips["full"]).numel() >= FRAMES * SAMPLES_PER_FRAME


def test_tail_cut_on_packet_boundary_is_truncated(cut_clips: dict[str, Path]) -> None:
    path = cut_clips["boundary"]
    with av.open(str(path)) as c:  # the front index still declares every frame
        assert c.streams.video[0].frames == FRAMES
    with pytest.raises(MediaError, match=rf"truncated video \(decoded 2[2-4] of {FRAMES} frames"):
        load_video(path)
    with pytest.raises(MediaError, match=r"truncated audio \(decoded 0\.\d\d s of 2\.00 s"):
        load_audio(path)
    # a caller that wants whatever is there can still have it
    assert 22 <= load_video(path, max_missing_frames=None).shape[0] <= 24


def test_tail_cut_mid_packet_is_an_error(cut_clips: dict[str, Path]) -> None:
    # PyAV either raises while decoding (a partial packet) or returns the first part: both
    # must end as a MediaError, never as a short tensor
    with pytest.raises(MediaError, match="truncated"):
        load_video(cut_clips["half"])


def _corpus_with(tmp_path: Path, clips: dict[str, Path]) -> list:
    spk = tmp_path / "test" / "spk1"
    spk.mkdir(parents=True)
    for name, src in clips.items():
        (spk / f"{name}.mp4").write_bytes(src.read_bytes())
        write_lrs3_txt(spk / f"{name}.txt", SENTENCES[0], FRAMES)
    return LRS3(tmp_path).utterances("test")


def test_dataset_skips_and_counts_truncated_media(tmp_path: Path, tokenizer: Tokenizer,
                                                  cut_clips: dict[str, Path]) -> None:
    utts = _corpus_with(tmp_path, cut_clips)
    ds = AVDataset(utts, tokenizer, max_bad_fraction=1.0)
    items = {u.id.rsplit("/", 1)[1]: ds[i] for i, u in enumerate(utts)}
    assert items["full"] is not None and items["full"]["video"].shape[0] == FRAMES
    assert items["boundary"] is None and items["half"] is None
    summary = ds.skipped
    assert summary["skipped_unique"] == 2
    assert summary["by_problem"].get("truncated video") >= 1  # one category, no counts in it
    assert any(f.endswith("boundary.mp4") for f in summary["files"])
    # audio only: the audio stream is checked the same way
    audio_only = AVDataset(utts, tokenizer, modalities=("audio",), max_bad_fraction=1.0)
    boundary = next(i for i, u in enumerate(utts) if u.id.endswith("boundary"))
    assert audio_only[boundary] is None
    assert "truncated audio" in audio_only.skipped["by_problem"]
    # transcribe builds its dataset like this and raises on any None item
    unlabelled = AVDataset(utts, None, max_bad_fraction=1.0)
    assert unlabelled[boundary] is None


def test_media_shorter_than_transcript_is_skipped(tmp_path: Path,
                                                  tokenizer: Tokenizer) -> None:
    # a cut that was re-indexed: the container agrees with itself, only the transcript knows
    spk = tmp_path / "test" / "spk1"
    write_clip(spk / "short.mp4", 24)
    write_lrs3_txt(spk / "short.txt", SENTENCES[0], FRAMES)
    write_clip(spk / "close.mp4", 24, seed=1)  # one frame short of its timings: rounding
    write_lrs3_txt(spk / "close.txt", SENTENCES[1], 25)
    utts = LRS3(tmp_path).utterances("test")
    ds = AVDataset(utts, tokenizer, max_bad_fraction=1.0)
    items = {u.id.rsplit("/", 1)[1]: ds[i] for i, u in enumerate(utts)}
    assert items["short"] is None and items["close"] is not None
    assert ds.skipped["by_problem"] == {"media shorter than transcript": 1}
    audio_only = AVDataset(utts, tokenizer, modalities=("audio",), max_bad_fraction=1.0)
    assert [audio_only[i] is None for i in range(2)] == [False, True]
    # without labels the timings do not matter (unlabelled pre-training, transcribe)
    assert AVDataset(utts, None)[1] is not None


# ------------------------------------------------------------------ 5. unknown characters


def test_unknown_characters_are_counted_and_named(tmp_path: Path, tokenizer: Tokenizer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    texts = [SENTENCES[0], "PLACE BLUE AT 字 TWO NOW", "字字 😀 你好 NOW", SENTENCES[1]]
    ids = make_lrs3_tree(tmp_path, {"test/spk1": texts}, frames=8)
    utts = LRS3(tmp_path).utterances("test")
    with caplog.at_level(logging.WARNING, logger="avsr.data.dataset"):
        ds = AVDataset(utts, tokenizer)
        AVDataset(utts, tokenizer)  # a second copy (a noisy test set) does not warn again
    warnings = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 1 and ids[1] in warnings[0].getMessage()
    found = ds.skipped["unknown_text"]
    assert found["utterances"] == 2 and found["first_ids"] == [ids[1], ids[2]]
    assert found["mostly_unknown"] == 1 and found["mostly_unknown_ids"] == [ids[2]]
    assert found["unk_tokens"] >= 3
    # counted, not skipped: the items still train, with <unk> targets
    item = ds[1]
    assert item is not None and tokenizer.unk_id in item["tokens"].tolist()
    assert ds.skipped["skipped"] == 0
    totals = skip_totals({"test": ds.skipped, "val": AVDataset(utts[:1], tokenizer).skipped})
    assert totals["unknown_text"]["utterances"] == 2
    assert totals["unknown_text"]["mostly_unknown_ids"] == [ids[2]]


# ------------------------------------------------------------------ 6. unusable transcripts


def _tree_with_bad_transcripts(root: Path) -> list[str]:
    ids = make_lrs3_tree(root, {"trainval/spk1": SENTENCES[:4], "trainval/spk2": SENTENCES[4:],
                                "test/spk9": SENTENCES[:2]}, frames=8)
    (root / f"{ids[1]}.txt").write_bytes(b"")  # 0 bytes
    (root / f"{ids[2]}.txt").write_text("Conf:  5\n\nWORD START END ASDSCORE\nA 0.0 0.1 1\n")
    return ids


def test_read_transcript_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(TranscriptError, match="empty.txt: empty transcript file"):
        read_transcript(tmp_path / "empty.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(TranscriptError, match="empty transcript file"):
        read_transcript(tmp_path / "blank.txt")
    (tmp_path / "notext.txt").write_text("Conf: 1\n")
    with pytest.raises(ValueError, match="notext.txt: no 'Text:' line"):  # still a ValueError
        read_transcript(tmp_path / "notext.txt")


def test_lrs3_scan_survives_bad_transcripts(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    ids = _tree_with_bad_transcripts(tmp_path)
    corpus = LRS3(tmp_path)
    with caplog.at_level(logging.WARNING, logger="avsr.data.corpora"):
        utts = {u.id: u for u in corpus.utterances("trainval")}
    assert set(utts) == set(ids[:6])  # every utterance, the bad ones with empty text
    assert utts[ids[1]].text == utts[ids[2]].text == "" and utts[ids[0]].text == SENTENCES[0]
    assert corpus.bad_transcripts == {
        str(tmp_path / f"{ids[1]}.txt"): "empty transcript file",
        str(tmp_path / f"{ids[2]}.txt"): "no 'Text:' line in transcript",
    }
    assert len([r for r in caplog.records if "2 unusable transcripts" in r.getMessage()]) == 1


def test_lrs2_scan_survives_bad_transcripts(tmp_path: Path) -> None:
    for i, uid in enumerate(["100/00001", "100/00002"]):
        write_clip(tmp_path / "main" / f"{uid}.mp4", 8, seed=i)
    (tmp_path / "main/100/00001.txt").write_text("Text:  HELLO THERE\nConf:  4\n")
    (tmp_path / "main/100/00002.txt").write_bytes(b"")
    (tmp_path / "train.txt").write_text("100/00001\n100/00002\n")
    corpus = LRS2(tmp_path)
    assert [u.text for u in corpus.utterances("train")] == ["HELLO THERE", ""]
    assert list(corpus.bad_transcripts.values()) == ["empty transcript file"]


def test_bad_transcripts_reach_the_run_summary(tmp_path: Path) -> None:
    root = tmp_path / "lrs3"
    ids = _tree_with_bad_transcripts(root)
    dm = AVDataModule(corpus=LRS3(root), tokenizer_path=tmp_path / "tok" / "spm.model",
                      vocab_size=40, train_split="trainval", val_split="test",
                      test_split="test", max_frames=40, max_bad_fraction=1.0)
    dm.setup("fit")
    seen = [uid for batch in dm.train_dataloader() for uid in batch["ids"]]
    assert sorted(seen) == sorted(set(ids[:6]) - {ids[1], ids[2]})
    totals = skip_totals(dm.skip_summary())
    assert totals["total"] == 2
    assert totals["by_problem"] == {"empty transcript file": 1,
                                    "no 'Text:' line in transcript": 1}
    assert str(root / f"{ids[1]}.txt") in totals["files"]
    # unlabelled use keeps their media: a transcript is not needed there
    unlabelled = AVDataset(dm.corpus.utterances("trainval"), None)
    assert all(unlabelled[i] is not None for i in range(len(unlabelled)))
