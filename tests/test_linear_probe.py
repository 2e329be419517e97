"""benchmarks/linear_probe.py: a linear CTC layer on a run's frozen encoder states, per
stream, against a fresh model of the same config; at tiny sizes with a tiny run made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, tiny_overrides
from hydra import compose, initialize_config_dir

from avsr.train import train

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("linear_probe")


def test_rows_are_named_and_need_a_checkpoint(probe):
    rows = probe.parse_rows(["logs/braven/checkpoints/last.ckpt", "random",
                             "teacher=a=b/x.ckpt", "m/lr=0.1/checkpoints/last.ckpt"])
    assert rows == [probe.Row("braven", Path("logs/braven/checkpoints/last.ckpt")),
                    probe.Row("random", None), probe.Row("teacher", Path("a=b/x.ckpt")),
                    probe.Row("lr=0.1", Path("m/lr=0.1/checkpoints/last.ckpt"))]
    with pytest.raises(ValueError, match="at least one checkpoint"):
        probe.parse_rows(["random"])
    with pytest.raises(ValueError, match="must differ"):
        probe.parse_rows(["a=x.ckpt", "a=y.ckpt"])


def test_the_probe_learns_from_states_that_hold_the_tokens(probe):
    """States that one-hot encode the tokens (each token spread over 3 frames, blanks between)
    are read by a trained linear probe; the CTC loss falls."""
    g = torch.Generator().manual_seed(0)
    states, tokens, texts = [], [], []
    for _ in range(6):
        toks = torch.randint(3, 7, (4,), generator=g)
        frames = [t for tok in toks.tolist() for t in (tok, tok, tok, 0)]
        states.append(torch.nn.functional.one_hot(torch.tensor(frames), 8).float())
        tokens.append(toks)
        texts.append(" ".join(f"w{t}" for t in toks.tolist()))
    data = probe.Features(states, tokens, texts)

    class Words:
        blank_id = 0

        def decode(self, ids):
            return " ".join(f"w{i}" for i in ids)

    _, first = probe.train_head(data, 8, 0, steps=1, batch_size=3, lr=0.1, seed=0)
    head, last = probe.train_head(data, 8, 0, steps=150, batch_size=3, lr=0.1, seed=0)
    assert last < 0.2 * first
    assert probe.score(head, data, Words()) == 0.0
    # the split's loss is PyTorch's "mean" reduction (per target token, over utterances)
    x, x_lengths = probe._pad(states)
    want = torch.nn.functional.ctc_loss(
        head(x).log_softmax(-1).transpose(0, 1), torch.cat(tokens), x_lengths,
        torch.tensor([4] * 6), blank=0, reduction="mean")
    assert probe.mean_ctc(head, data, 0, batch_size=4) == pytest.approx(float(want), rel=1e-5)


def test_standardising_uses_the_training_frames_only(probe):
    train = probe.Features([torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([[2.0, 20.0]])],
                           [torch.tensor([3])] * 2, ["a", "b"])
    val = probe.Features([torch.tensor([[5.0, 0.0]])], [torch.tensor([3])], ["c"])
    t, v = probe.standardise(train, val)
    frames = torch.cat(t.states)
    assert torch.allclose(frames.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(frames.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    # validation by the training statistics (mean 2 / 20, std sqrt(2/3) / 10 sqrt(2/3))
    want = torch.tensor([[3.0 / (2 / 3) ** 0.5, -2.0 / (2 / 3) ** 0.5]])
    assert torch.allclose(v.states[0], want, atol=1e-4)
    assert v.tokens == val.tokens and v.texts == ["c"]
    with pytest.raises(ValueError, match="no training frames"):
        probe.standardise(probe.Features([], [], []))


def test_probe_of_a_tiny_pretraining_run(probe, tiny_synth_root, tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_low_braven", "trainer.max_steps=1", "trainer.max_time=null",
            # one validation batch at the step: it writes last.ckpt
            "trainer.num_sanity_val_steps=0", "trainer.val_check_interval=1",
            "trainer.check_val_every_n_epoch=null", "++trainer.limit_val_batches=1",
            *tiny_overrides(tiny_synth_root, tmp_path / "run"),
            "model.encoder.num_layers=2"])  # two blocks: block 1 is not the encoder output
    ckpt = train(cfg)["last_checkpoint"]
    assert ckpt is not None
    out = tmp_path / "probe"
    results = probe.main(["--ckpt", f"braven={ckpt}", "--ckpt", "random",
                          "--source", "objective.teacher.model", "--steps", "2",
                          "--batch-size", "4", "--val-limit", "4",
                          "--data", "labelled_fraction=0.5", "--out", str(out)])
    rows = results["rows"]
    assert list(rows) == ["braven", "random"]
    for row in rows.values():
        assert set(row["wer"]) == {"audio", "video", "audiovisual"}
        assert all(w >= 0 for w in row["wer"].values())
        # half of the 24 training utterances are labelled; the validation limit holds
        assert row["utterances"] == {"train": 12, "val": 4}
    assert json.loads((out / "probe.json").read_text())["rows"] == rows
    lines = (out / "probe.md").read_text().splitlines()
    assert lines[0].startswith("| encoder | audio | video | audiovisual |")
    assert lines[2].startswith("| braven |") and lines[3].startswith("| random |")
    assert all(v >= 0 for row in rows.values() for v in row["val_loss"].values())
    # the states' effective rank: between 1 and the encoder width
    assert all(1.0 <= v <= 256 for row in rows.values() for v in row["rank"].values())
    # a block's output instead of the encoder's: other states, so another probe
    small = ["--ckpt", f"braven={ckpt}", "--steps", "2", "--batch-size", "4", "--val-limit", "4",
             "--train-limit", "4", "--modalities", "audio"]
    final = probe.main([*small, "--out", str(tmp_path / "final")])["rows"]["braven"]
    block = probe.main([*small, "--layer", "1", "--out", str(tmp_path / "block")])
    assert block["rows"]["braven"]["val_loss"]["audio"] != pytest.approx(
        final["val_loss"]["audio"])
    assert "block 1 states" in (tmp_path / "block" / "probe.md").read_text()
    with pytest.raises(ValueError, match="--layer 9"):
        probe.main(["--ckpt", f"braven={ckpt}", "--layer", "9", "--steps", "1",
                    "--val-limit", "2", "--train-limit", "2", "--out", str(tmp_path / "bad")])
