"""Shared test helpers: tiny real media files and a tiny LRS3-layout corpus tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avsr.data.io import SAMPLES_PER_FRAME, write_mp4

SENTENCES = [
    "PLACE BLUE AT F TWO NOW", "BIN RED BY G NINE SOON", "SET WHITE WITH P ONE AGAIN",
    "LAY GREEN IN U FOUR PLEASE", "PLACE RED AT A SIX NOW", "BIN WHITE BY B EIGHT AGAIN",
]


def write_clip(path: str | Path, num_frames: int = 12, *, size: int = 96, audio: bool = True,
               video: bool = True, seed: int = 0) -> Path:
    """Write a small mp4 (random gray frames, a tone plus noise) and return its path."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, size, size), dtype=np.uint8) if video else None
    t = np.arange(num_frames * SAMPLES_PER_FRAME) / 16000.0
    wave = (0.3 * np.sin(2 * np.pi * (200 + 20 * seed) * t)
            + 0.01 * rng.standard_normal(t.size)).astype(np.float32) if audio else None
    write_mp4(path, frames, wave)
    return Path(path)


def write_lrs3_txt(path: str | Path, text: str, num_frames: int | None) -> None:
    """Write an LRS3-style transcript; word timings end at ``num_frames`` / 25 s."""
    lines = [f"Text:  {text}", "Conf:  5", ""]
    if num_frames is not None:
        words = text.split()
        end = num_frames / 25.0
        lines.append("WORD START END ASDSCORE")
        for i, w in enumerate(words):
            lines.append(f"{w} {end * i / len(words):.2f} {end * (i + 1) / len(words):.2f} 1.0")
    Path(path).write_text("\n".join(lines) + "\n")


def make_lrs3_tree(root: Path, speakers: dict[str, list[str]], *, frames: int = 10,
                   wav: bool = False) -> list[str]:
    """Build ``root/<split>/<speaker>/<nnnnn>.{mp4,txt}``; ``speakers`` maps "split/spk" to texts.

    Returns the utterance ids in creation order.
    """
    ids = []
    k = 0
    for spk, texts in speakers.items():
        for j, text in enumerate(texts):
            stem = root / spk / f"{j:05d}"
            n = frames + 2 * (k % 4)  # a few different lengths
            write_clip(stem.with_suffix(".mp4"), n, seed=k)
            write_lrs3_txt(stem.with_suffix(".txt"), text, n)
            if wav:
                import av  # wav sibling as auto_avsr/AV-HuBERT store it
                with av.open(str(stem.with_suffix(".wav")), "w", format="wav") as c:
                    s = c.add_stream("pcm_s16le", rate=16000)
                    s.layout = "mono"
                    samples = (np.zeros((1, n * SAMPLES_PER_FRAME)) + 0.1).astype(np.float32)
                    frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                    frame.sample_rate = 16000
                    for p in s.encode(frame):
                        c.mux(p)
                    for p in s.encode():
                        c.mux(p)
            ids.append(f"{spk}/{j:05d}")
            k += 1
    return ids


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (benchmarks are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lrs3_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny LRS3 tree: 3 trainval speakers, 1 test speaker, a val id list."""
    root = tmp_path_factory.mktemp("lrs3")
    make_lrs3_tree(root, {
        "trainval/spk001": SENTENCES[:3], "trainval/spk002": SENTENCES[3:6],
        "trainval/spk003": SENTENCES[:2], "test/spk009": SENTENCES[2:5],
    })
    (root / "val_ids.txt").write_text("trainval/spk003/00000\ntrainval/spk003/00001\n")
    return root


@pytest.fixture(scope="session")
def tiny_synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real synthetic corpus (espeak speech + rendered lips) in LRS3 layout."""
    from avsr.data.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("synth") / "grid"
    generate_corpus(root, seed=7, num_train=24, num_val=6, num_test=6, domain="grid",
                    num_train_speakers=4, num_val_speakers=2, num_test_speakers=2, workers=1)
    return root


def tiny_overrides(root: Path, out: Path) -> list[str]:
    """Hydra overrides that shrink any recipe to seconds on a CPU with the tiny corpus."""
    return [
        f"paths.output_dir={out}",
        f"paths.data_dir={root.parent}",
        f"data.corpus.root={root}",
        "data.vocab_size=40",
        "data.max_frames=400",
        "data.max_frames_eval=400",
        "data.cache=false",
        "data.num_workers=0",
        "data.babble_num_speakers=2",
        "synthetic=null",
        "model/audio_frontend=filterbank",
        "model.audio_frontend.output_dim=8",
        "model.fusion.audio_dim=8",
        "model.fusion.video_dim=8",
        "model.video_frontend.widths=[4,4,8,8]",
        "model.video_frontend.stem_channels=4",
        "model.encoder.d_model=16",
        "model.encoder.num_layers=1",
        "model.encoder.num_heads=2",
        "model.encoder.ffn_dim=32",
        "model.decoder.num_layers=1",
        "model.decoder.num_heads=2",
        "model.decoder.ffn_dim=32",
        "num_threads=2",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        "eval.noise.snrs=[0]",
        "eval.limit=4",
    ]
