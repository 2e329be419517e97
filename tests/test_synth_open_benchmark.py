"""benchmarks/synth_open.py end to end at tiny sizes: train, LM, the LM weight chosen on the
validation split, the test matrix with and without the LM, the table; reuse on a second call."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import load_benchmark, tiny_overrides


def _module():
    return load_benchmark("synth_open")


def _args(run: Path, out: Path, root: Path, **kw) -> argparse.Namespace:
    overrides = [o for o in tiny_overrides(root, run) if not o.startswith("paths.output_dir")]
    base = dict(run=str(run), out=str(out), stage=1, stop_stage=5, lm_weights=[0.0, 0.5],
                floor=None, override=overrides + [
                    "trainer.max_steps=2", "trainer.max_epochs=2",
                    "trainer.check_val_every_n_epoch=1", "eval.limit=2",
                    "decode.beam.beam_size=2"],
                lm_override=["max_steps=2", "eval_every=1", "batch_size=4", "lm.d_model=16",
                             "lm.num_layers=1", "lm.num_heads=2", "lm.ffn_dim=32"])
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.slow
def test_synth_open_pipeline_and_reuse(tiny_synth_root, tmp_path, capsys):
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"floor_wer": 8.96}))
    args = _args(tmp_path / "run", tmp_path / "out", tiny_synth_root, floor=str(floor))
    results = _module().run(args)
    assert results["train"]["global_step"] == 2
    assert Path(results["lm"]["path"]).is_file()
    # the weight is chosen per modality among those tried, from validation decodes only
    chosen = results["lm_weight"]["chosen"]
    assert set(chosen) == {"audio", "video", "audiovisual"}
    assert set(chosen.values()) <= {0.0, 0.5}
    assert set(results["lm_weight"]["val_wer_by_weight"]["video"]) == {"0", "0.5"}
    val_rows = json.loads((tmp_path / "run" / "val_lm" / "w0.5" / "wer.json").read_text())
    assert {r["noise"] for r in val_rows["rows"]} == {"clean"}
    # the test matrix: clean and both noises, with and without the LM, every modality
    for setting in ("no_lm", "lm"):
        got = {(r["modality"], r["condition"]) for r in results["test"][setting]}
        assert ("video", "clean") in got and ("audiovisual", "babble +0 dB") in got
        assert ("audio", "white +0 dB") in got
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.startswith("| modality | LM | clean |")
    assert "| video | yes |" in table and "| 9.0 |" in table  # the floor beside VSR
    # every clean test reference word lands in one training-count bucket
    test_words = sum(int(line.split("\t")[2]) for line in (
        tmp_path / "run" / "test_no_lm" / "hyps" / "video_clean_beam.tsv").read_text(
        ).splitlines()[1:])
    freq = results["word_frequency"]["video/no_lm"]
    assert sum(b["words"] for b in freq["buckets"].values()) == test_words
    assert "| video | no |" in table.split("by their count in the training transcripts")[1]
    # a second call reuses the trained model and the LM instead of training them again
    capsys.readouterr()
    again = _module().run(args)
    assert again["test"] == results["test"]
    out = capsys.readouterr().out
    assert "[train] reused" in out and "[lm] reused" in out


def test_a_run_cut_before_its_budget_is_an_error(tmp_path, monkeypatch):
    """trainer.max_time (a safety stop) ending a run early must not give a table."""
    import avsr.train

    module = _module()
    cfg = module.compose_config("train", ["+experiment=synth_open", "trainer.max_steps=3000"])
    (tmp_path / "model").mkdir()
    monkeypatch.setattr(avsr.train, "train", lambda cfg: {"global_step": 1200})
    with pytest.raises(RuntimeError, match="stopped at step 1200 of 3000"):
        module.stage_train(cfg, tmp_path)
    # its summary is kept, so that the next call resumes instead of reusing it
    assert json.loads((tmp_path / "model" / "summary.json").read_text())["global_step"] == 1200
