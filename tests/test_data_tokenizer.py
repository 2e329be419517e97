"""SentencePiece tokenizer: fixed special ids, round trip, training command."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import sentencepiece as spm
from conftest import SENTENCES

from avsr.data.tokenizer import Tokenizer, _main, default_tokenizer_path, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    prefix = tmp_path_factory.mktemp("tok") / "spm"
    # far more pieces than the corpus supports: hard_vocab_limit=False must not fail
    return Tokenizer(train_tokenizer(SENTENCES * 3, prefix, vocab_size=5000))


def test_special_ids(tokenizer: Tokenizer) -> None:
    ids = (tokenizer.blank_id, tokenizer.unk_id, tokenizer.eos_id, tokenizer.sos_id)
    assert ids == (0, 1, 2, 2)
    assert [tokenizer.id_to_piece(i) for i in range(3)] == ["<blank>", "<unk>", "<eos>"]
    assert 3 < tokenizer.vocab_size < 5000 and len(tokenizer) == tokenizer.vocab_size


def test_round_trip(tokenizer: Tokenizer) -> None:
    for text in SENTENCES + ["  place   {LG} blue now "]:
        ids = tokenizer.encode(text)
        assert ids and not {0, 2} & set(ids)
        assert all(0 < i < tokenizer.vocab_size for i in ids)
        assert tokenizer.decode(ids) == tokenizer.normalize(text)
        assert tokenizer.decode([0, *ids, 2, 0]) == tokenizer.normalize(text)
    assert tokenizer.normalize(" a  b ") == "A B"
    assert tokenizer.unk_id in tokenizer.encode("QZXJ")  # letters never seen in training
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.encode(SENTENCES[0]) == tokenizer.encode(SENTENCES[0])


def test_rejects_foreign_model(tmp_path: Path) -> None:
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 3),
                                   model_prefix=str(tmp_path / "x"), vocab_size=30,
                                   hard_vocab_limit=False, minloglevel=2)
    with pytest.raises(ValueError, match="special pieces"):
        Tokenizer(tmp_path / "x.model")
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "missing.model")


def test_command(lrs3_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _main(["--help"])
    assert e.value.code == 0 and "--vocab-size" in capsys.readouterr().out
    out = tmp_path / "tok.model"
    _main(["--corpus", "lrs3", "--root", str(lrs3_root), "--vocab-size", "40", "--out", str(out)])
    tok = Tokenizer(out)
    assert tok.decode(tok.encode(SENTENCES[3])) == SENTENCES[3]
    assert default_tokenizer_path("data/lrs3", 1000) == Path("data/lrs3/spm_unigram1000.model")
