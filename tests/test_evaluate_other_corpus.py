"""``python -m avsr.evaluate ckpt=CKPT data.corpus.root=OTHER``: the checkpoint's own data
settings and tokenizer on another corpus; never a tokenizer trained on the evaluation corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides
from hydra import compose, initialize_config_dir

from avsr.data.tokenizer import train_tokenizer
from avsr.evaluate import _data_overrides_layer_on_checkpoint, evaluate_checkpoint
from avsr.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def other_root(tmp_path_factory) -> Path:
    """A second synthetic corpus (another seed: other speakers and sentences)."""
    from avsr.data.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("other") / "grid"
    generate_corpus(root, seed=8, num_train=4, num_val=2, num_test=3, domain="grid",
                    num_train_speakers=2, num_val_speakers=1, num_test_speakers=1, workers=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tiny_synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "debug=fdr",
                                          *tiny_overrides(tiny_synth_root, out),
                                          "evaluate=false"])
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def _eval_cfg():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=["ckpt=x", "eval.noise.types=[]", "eval.limit=2",
                                              "eval.modalities=[audio]", "decode=greedy",
                                              "decode.decoders=[ctc_greedy]",
                                              "decode.primary_decoder=ctc_greedy",
                                              "eval.progress=false"])


def test_one_override_evaluates_on_another_corpus(checkpoint, other_root, tmp_path):
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "avsr.evaluate", f"ckpt={checkpoint}",
         f"data.corpus.root={other_root}", "eval.noise.types=[babble]", "eval.noise.snrs=[0]",
         "eval.limit=2", "decode=greedy", "decode.decoders=[ctc_greedy]",
         "decode.primary_decoder=ctc_greedy", "num_threads=1", f"hydra.run.dir={out}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(other_root.glob("spm_*")), "a tokenizer was trained on the evaluation corpus"
    result = json.loads((out / "wer.json").read_text())
    # decoded the other corpus's test split: its ids and its transcripts
    test = {str(p.relative_to(other_root).with_suffix("")):
            p.read_text().splitlines()[0].split(":", 1)[1].strip().upper()
            for p in (other_root / "test").rglob("*.txt")}
    rows = [line.split("\t") for f in (out / "hyps").glob("*.tsv")
            for line in f.read_text().splitlines()[1:]]
    assert rows and all(test[r[0]] == r[3] for r in rows)
    assert {r["condition"] for r in result["rows"]} == {"clean", "babble +0 dB"}
    # the progress bar counts utterances over every condition: 2 conditions x 2 utterances
    assert "4/4" in proc.stderr and "utt" in proc.stderr


def test_a_different_tokenizer_is_an_error_naming_both(checkpoint, other_root, tmp_path):
    texts = [line for p in (other_root / "trainval").rglob("*.txt")
             for line in p.read_text().splitlines()[:1]]
    other_tok = train_tokenizer([t.split(":", 1)[-1] for t in texts] * 8, tmp_path / "spm", 40,
                                hard_vocab_limit=False)
    with pytest.raises(ValueError) as err:
        evaluate_checkpoint(checkpoint, _eval_cfg().eval, _eval_cfg().decode, tmp_path / "e",
                            {"corpus": {"root": str(other_root)},
                             "tokenizer_path": str(other_tok)})
    assert str(other_tok) in str(err.value) and str(checkpoint) in str(err.value)


def test_a_missing_tokenizer_is_never_trained(checkpoint, other_root, tmp_path):
    missing = tmp_path / "none" / "spm.model"
    with pytest.raises(FileNotFoundError, match="never trains"):
        evaluate_checkpoint(checkpoint, _eval_cfg().eval, _eval_cfg().decode, tmp_path / "e",
                            {"corpus": {"root": str(other_root)}, "tokenizer_path": str(missing)})
    assert not missing.exists() and not missing.parent.exists()


def test_one_data_key_changes_and_the_rest_stays_the_checkpoints(checkpoint, tmp_path):
    """``+data.max_bad_fraction=0.5`` once crashed with ``Missing key load_tokenizer``: the
    lone key replaced the whole data config."""
    result = evaluate_checkpoint(checkpoint, _eval_cfg().eval, _eval_cfg().decode,
                                 tmp_path / "e", {"max_bad_fraction": 0.5})
    assert result["rows"] and result["rows"][0]["utterances"] == 2


def test_data_overrides_are_layered_onto_the_checkpoint():
    argv = ["ckpt=a", "data.corpus.root=b", "+data.x=1", "eval.limit=3"]
    assert _data_overrides_layer_on_checkpoint(argv) == [
        "ckpt=a", "++data.corpus.root=b", "+data.x=1", "eval.limit=3"]
