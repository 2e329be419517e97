"""Faults of long runs: non-finite losses, broken media and transcripts, processes killed while
writing a checkpoint or generating the corpus."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from conftest import SENTENCES, tiny_overrides, write_clip, write_lrs3_txt
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from avsr.data.corpora import LRS3
from avsr.data.dataset import AVDataset
from avsr.data.io import SAMPLES_PER_FRAME, write_mp4
from avsr.data.tokenizer import Tokenizer, train_tokenizer
from avsr.lightning.guards import NonFiniteLossError, NonFiniteLossGuard
from avsr.lightning.task import TrainTask
from avsr.objectives.hybrid import HybridCTCAttentionLoss
from avsr.objectives.supervised import SupervisedObjective

IDS = {"blank_id": 0, "sos_id": 2, "eos_id": 2}  # avsr SentencePiece ids; no tokenizer here

REPO = Path(__file__).resolve().parents[1]
VOCAB = 12


# ---------------------------------------------------------------------------- NaN / inf losses
def _task(max_nonfinite_steps: int) -> TrainTask:
    """A tiny model built from the real configs (audio-only stream)."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*tiny_overrides(REPO, REPO), f"vocab_size={VOCAB}",
                                          "model.encoder.dropout=0.0"])
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    objective = SupervisedObjective(loss=HybridCTCAttentionLoss(**IDS, ctc_weight=0.3),
                                    modalities=["audio"])
    return TrainTask(model=model, objective=objective,
                     optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
                     max_nonfinite_steps=max_nonfinite_steps)


def _batch(seed: int, bad: float | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(2, 20 * SAMPLES_PER_FRAME, generator=g)
    if bad is not None:
        audio[0, 100] = bad  # one corrupt sample poisons the loss
    return {"audio": audio, "audio_lengths": torch.tensor([audio.shape[1]] * 2),
            "video": None, "video_lengths": torch.zeros(2, dtype=torch.long),
            "tokens": torch.randint(3, VOCAB, (2, 4), generator=g),
            "token_lengths": torch.tensor([4, 3]), "ids": ["a", "b"], "texts": ["", ""]}


def _fit(task: TrainTask, batches: list[dict]) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=5.0)
    trainer.fit(task, DataLoader(batches, batch_size=None))
    return trainer


def test_nonfinite_loss_skips_the_update_and_is_counted():
    task = _task(max_nonfinite_steps=3)
    batches = [_batch(0), _batch(1, float("nan")), _batch(2, float("inf")), _batch(3)]
    trainer = _fit(task, batches)
    # two updates: the poisoned steps ran no backward and no optimiser step (Lightning still
    # counts them in global_step, so the LR schedule keeps its pace)
    state = next(iter(trainer.optimizers[0].state.values()))
    assert float(state["step"]) == 2 and trainer.global_step == 4
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert task.nonfinite_guard.total == 2 and task.nonfinite_guard.consecutive == 0
    assert float(trainer.callback_metrics["train/nonfinite_skipped"]) == 2


def test_k_nonfinite_losses_in_a_row_stop_the_run_with_a_clear_message():
    task = _task(max_nonfinite_steps=3)
    batches = [_batch(0)] + [_batch(k, float("nan")) for k in range(1, 6)]
    with pytest.raises(NonFiniteLossError, match="NaN or infinite for 3 consecutive steps"):
        _fit(task, batches)
    assert task.nonfinite_guard.total == 3


def test_guard_state_roundtrip():
    guard = NonFiniteLossGuard(5)
    guard.update(True, 0)
    other = NonFiniteLossGuard(5)
    other.load_state_dict(guard.state_dict())
    assert (other.consecutive, other.total) == (1, 1)
    assert not other.update(False, 1) and other.consecutive == 0


# ---------------------------------------------------------------------------- broken media
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer(train_tokenizer(SENTENCES, tmp_path_factory.mktemp("tok") / "spm", 40))


def _zero_length_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")


def test_each_broken_item_is_a_counted_named_skip(tmp_path, tokenizer):
    spk = tmp_path / "test" / "spk1"
    write_clip(spk / "good.mp4", 12)
    write_lrs3_txt(spk / "good.txt", SENTENCES[0], 12)
    full = write_clip(spk / "truncated.mp4", 12).read_bytes()
    (spk / "truncated.mp4").write_bytes(full[: len(full) * 2 // 3])
    write_clip(spk / "silent.mp4", 12, audio=False)
    _zero_length_wav(spk / "silent.wav")  # the reader prefers the wav sibling for audio
    frames = torch.randint(0, 255, (15, 96, 96), dtype=torch.uint8)
    write_mp4(spk / "fps30.mp4", frames, torch.zeros(15 * 16000 // 30), fps=30)
    write_mp4(spk / "mismatch.mp4", frames[:10], 0.1 * torch.randn(60 * SAMPLES_PER_FRAME))
    write_clip(spk / "notext.mp4", 12)  # no .txt at all
    write_clip(spk / "emptytext.mp4", 12)
    (spk / "emptytext.txt").write_text("Text:  \nConf:  5\n")
    for name in ("truncated", "silent", "fps30", "mismatch"):
        write_lrs3_txt(spk / f"{name}.txt", SENTENCES[1], 12)

    utts = LRS3(tmp_path).utterances("test")
    ds = AVDataset(utts, tokenizer, max_bad_fraction=1.0)
    items = {u.id.split("/")[-1]: ds[i] for i, u in enumerate(utts)}
    assert [k for k, v in items.items() if v is not None] == ["good"]
    summary = ds.skipped
    assert summary["seen"] == 7 and summary["skipped"] == 6
    assert summary["by_problem"] == {
        "corrupt or truncated file": 1,
        "zero-length audio": 1,
        "video is 30.00 fps, expected 25": 1,
        "audio/video length mismatch": 1,
        "missing transcript": 1,
        "empty transcript": 1,
    }
    assert any(f.endswith("notext.txt") for f in summary["files"])
    # within the tolerance (codec padding of a frame or two) the item is kept
    write_mp4(spk / "mismatch.mp4", frames[:10], 0.1 * torch.randn(12 * SAMPLES_PER_FRAME))
    utt = next(u for u in utts if u.id.endswith("mismatch"))
    assert AVDataset([utt], tokenizer)[0] is not None


# ---------------------------------------------------------------------------- killed writers
_WRITER = textwrap.dedent("""
    import sys, torch
    from avsr.utils.checkpoint import atomic_torch_save
    v = 0
    while True:
        atomic_torch_save({"v": v, "x": torch.full((4_000_000,), float(v))}, sys.argv[1])
        v += 1
""")


@pytest.mark.slow
def test_checkpoint_killed_mid_write_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO)
        deadline = time.time() + 60
        # kill while a temporary file is being written, after at least one complete save
        while time.time() < deadline and not (
                path.is_file() and list(tmp_path.glob(".last.ckpt.*.tmp"))):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = torch.load(path, weights_only=True)
        assert torch.equal(ckpt["x"], torch.full((4_000_000,), float(ckpt["v"])))
    # a later save clears the temporary files that killed writers left behind
    from avsr.utils.checkpoint import atomic_torch_save

    atomic_torch_save({"v": -1}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.slow
def test_corpus_generation_killed_then_rerun_equals_an_uninterrupted_one(tmp_path):
    args = ["--seed", "3", "--train", "10", "--val", "2", "--test", "2", "--domain", "grid",
            "--train-speakers", "2", "--val-speakers", "1", "--test-speakers", "1",
            "--workers", "1", "--quiet"]
    cmd = [sys.executable, "-m", "avsr.data.synthetic"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run([*cmd, "--out", str(ref), *args], check=True, cwd=REPO,
                   capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(cut), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cut.rglob("0*.txt"))) < 4:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "corpus.json").exists()  # killed before the end
    done = len(list(cut.rglob("0*.txt")))
    out = subprocess.run([*cmd, "--out", str(cut), *args], check=True, cwd=REPO,
                         capture_output=True, text=True)
    assert f'"skipped_existing": {done}' in out.stdout

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix in (".txt", ".mp4")}
    a, b = files(ref), files(cut)
    # 14 utterances (.txt + .mp4), val_ids.txt, and the 32 transcripts of the babble split
    # (audio-only .wav, the CLI's default size)
    assert a.keys() == b.keys() and len(a) == 2 * 14 + 1 + 32
    assert all(a[k] == b[k] for k in a if k.endswith(".txt"))
    assert not list(cut.rglob("*.part"))
