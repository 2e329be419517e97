"""SentencePiece unigram tokenizer with fixed special ids, and the command that trains it.

Ids are fixed at training time so every model, loss and decoder agrees without magic numbers:
``0 = <blank>`` (CTC blank and padding), ``1 = <unk>``, ``2 = <eos>`` (also the sos symbol);
no bos. Train from a corpus's training transcripts::

    python -m avsr.data.tokenizer --corpus lrs3 --root data/lrs3 --vocab-size 1000

which writes ``<root>/spm_unigram1000.model`` (beside the data) unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from avsr.data.corpora import LRS2, LRS3, normalize_text

__all__ = [
    "Tokenizer", "train_tokenizer", "default_tokenizer_path", "vocabulary", "check_vocabulary",
    "unknown_text", "BLANK_ID", "UNK_ID", "EOS_ID", "ensure_tokenizer_model",
]

log = logging.getLogger(__name__)

BLANK_ID = 0
UNK_ID = 1
EOS_ID = 2


def default_tokenizer_path(root: str | Path, vocab_size: int) -> Path:
    """Where the command saves a model by default: ``<root>/spm_unigram<N>.model``."""
    return Path(root) / f"spm_unigram{vocab_size}.model"


def train_tokenizer(
    texts: Iterable[str],
    model_prefix: str | Path,
    vocab_size: int,
    *,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    hard_vocab_limit: bool = False,
    num_threads: int = 1,
) -> Path:
    """Train a SentencePiece model on normalised ``texts``.

    Args:
        texts: transcripts (normalised here with :func:`~avsr.data.corpora.normalize_text`).
        model_prefix: output prefix; writes ``<prefix>.model`` and ``<prefix>.vocab``.
        vocab_size: target size including the 3 special pieces. With ``hard_vocab_limit=False``
            (default) a small corpus gives a smaller vocabulary instead of failing.
        model_type: ``unigram`` (default), ``bpe``, ``char`` or ``word``.
        character_coverage: 1.0 keeps every character (English).
        num_threads: 1 keeps training deterministic.

    Returns:
        Path of the ``.model`` file.
    """
    sentences = [t for t in (normalize_text(x) for x in texts) if t]
    if not sentences:
        raise ValueError("train_tokenizer: no non-empty transcript")
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        hard_vocab_limit=hard_vocab_limit,
        pad_id=BLANK_ID,
        pad_piece="<blank>",
        unk_id=UNK_ID,
        unk_piece="<unk>",
        eos_id=EOS_ID,
        eos_piece="<eos>",
        bos_id=-1,
        num_threads=num_threads,
        minloglevel=2,
    )
    return Path(f"{prefix}.model")


class Tokenizer:
    """A trained SentencePiece model with avsr's special ids.

    Args:
        model_path: ``.model`` file made by :func:`train_tokenizer`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the model's special pieces are not ``<blank>``/``<unk>``/``<eos>`` at 0/1/2.
    """

    blank_id = BLANK_ID
    unk_id = UNK_ID
    eos_id = EOS_ID
    sos_id = EOS_ID  # one symbol starts and ends sequences, as ESPnet and auto_avsr do

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {self.model_path}")
        self._load(self.model_path.read_bytes())

    def _load(self, proto: bytes) -> None:
        self._proto = proto
        self._sp = spm.SentencePieceProcessor(model_proto=proto)
        expected = {BLANK_ID: "<blank>", UNK_ID: "<unk>", EOS_ID: "<eos>"}
        found = {i: self._sp.id_to_piece(i) for i in expected if i < self._sp.get_piece_size()}
        if found != expected:
            raise ValueError(f"{self.model_path}: special pieces {found} != {expected}; train the "
                             "model with avsr.data.tokenizer.train_tokenizer")

    # SentencePieceProcessor is not picklable everywhere; DataLoader workers may pickle us.
    def __getstate__(self) -> dict:
        return {"model_path": str(self.model_path), "proto": self._proto}

    def __setstate__(self, state: dict) -> None:
        self.model_path = Path(state["model_path"])
        self._load(state["proto"])

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.model_path)!r}, vocab_size={self.vocab_size})"

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def vocab_size(self) -> int:
        """Number of ids (V), special ids included."""
        return self._sp.get_piece_size()

    @staticmethod
    def normalize(text: str) -> str:
        """The shared transcript normalisation (also used for WER references)."""
        return normalize_text(text)

    def encode(self, text: str) -> list[int]:
        """Normalise and encode ``text`` to ids (no sos/eos added).

        Characters the model never saw (another script, emoji) become :data:`UNK_ID`; a run
        of them is one ``<unk>``. Encoding does not complain: datasets count such transcripts
        with :func:`unknown_text` and report them in the run summary.
        """
        return self._sp.encode(normalize_text(text), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text, ignoring blank/padding and eos (and negative ignore ids)."""
        keep = [int(i) for i in ids if int(i) not in (BLANK_ID, EOS_ID) and int(i) >= 0]
        return self._sp.decode(keep)

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)


def vocabulary(tokenizer: Any) -> list[str]:
    """Every piece by id (``vocab_size`` of them): what a checkpoint stores of its tokenizer,
    so a later run can tell whether another tokenizer maps ids to the same pieces."""
    return [str(tokenizer.id_to_piece(i)) for i in range(int(tokenizer.vocab_size))]


def check_vocabulary(tokenizer: Any, expected: Sequence[str], expected_from: str) -> None:
    """Raise unless ``tokenizer`` has exactly the pieces ``expected``, id for id.

    Args:
        tokenizer: the tokenizer about to decode (``vocab_size``, ``id_to_piece``).
        expected: the pieces the model was trained with (:func:`vocabulary` of its tokenizer).
        expected_from: where ``expected`` came from, for the message (a checkpoint path).

    Raises:
        ValueError: naming both sides, the sizes and the first differing id.
    """
    found = vocabulary(tokenizer)
    if found == list(expected):
        return
    first = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b),
                 min(len(found), len(expected)))
    mine = found[first] if first < len(found) else "<none>"
    theirs = expected[first] if first < len(expected) else "<none>"
    raise ValueError(
        f"tokenizer {tokenizer!r} ({len(found)} pieces) differs from the one {expected_from} "
        f"was trained with ({len(expected)} pieces): id {first} is {mine!r} here and "
        f"{theirs!r} there. Decode with the training tokenizer (data.tokenizer_path=...)")


def unknown_text(items: Iterable[tuple[str, str]], tokenizer: Any, *, max_fraction: float = 0.1,
                 max_ids: int = 20) -> dict[str, Any]:
    """Count the transcripts whose encoding holds the tokenizer's ``<unk>`` id.

    Args:
        items: ``(utterance id, text)`` pairs; empty texts are passed over.
        tokenizer: object with ``encode`` and ``unk_id``.
        max_fraction: transcripts with a larger share of ``<unk>`` tokens are named apart:
            their targets are mostly noise, not a stray symbol.
        max_ids: at most this many ids in each list (the summary stays small on a corpus in
            another script).

    Returns:
        dict with ``utterances`` (transcripts with at least one ``<unk>``), ``unk_tokens``,
        ``first_ids`` (the first ``max_ids`` of them, in ``items`` order), ``mostly_unknown``
        (how many exceed ``max_fraction``), ``mostly_unknown_ids`` and ``max_fraction``.
    """
    unk = tokenizer.unk_id
    count = tokens = mostly = 0
    first: list[str] = []
    mostly_ids: list[str] = []
    for uid, text in items:
        if not text:
            continue
        ids = tokenizer.encode(text)
        n = sum(1 for i in ids if i == unk)
        if not n:
            continue
        count, tokens = count + 1, tokens + n
        if len(first) < max_ids:
            first.append(uid)
        if n > max_fraction * len(ids):
            mostly += 1
            if len(mostly_ids) < max_ids:
                mostly_ids.append(uid)
    return {"utterances": count, "unk_tokens": tokens, "first_ids": first,
            "mostly_unknown": mostly, "mostly_unknown_ids": mostly_ids,
            "max_fraction": max_fraction}


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m avsr.data.tokenizer",
        description="Train avsr's SentencePiece tokenizer on a corpus's training transcripts "
                    "(special ids: 0 <blank>, 1 <unk>, 2 <eos>).",
    )
    parser.add_argument("--corpus", choices=("lrs3", "lrs2"), required=True)
    parser.add_argument("--root", required=True, help="corpus root directory")
    parser.add_argument("--split", default="train", help="split(s) to read, comma-separated "
                        "(default: train; LRS3 'train' needs <root>/val_ids.txt)")
    parser.add_argument("--val-list", default=None, help="LRS3 validation id list")
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--model-type", default="unigram",
                        choices=("unigram", "bpe", "char", "word"))
    parser.add_argument("--out", default=None,
                        help="output .model path (default: <root>/spm_unigram<N>.model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    corpus = LRS3(args.root, val_list=args.val_list) if args.corpus == "lrs3" else LRS2(args.root)
    texts = [u.text for split in args.split.split(",") for u in corpus.utterances(split.strip())]
    out = Path(args.out) if args.out else default_tokenizer_path(args.root, args.vocab_size)
    prefix = out.with_suffix("") if out.suffix == ".model" else out
    path = train_tokenizer(texts, prefix, args.vocab_size, model_type=args.model_type)
    tok = Tokenizer(path)
    log.info("trained on %d transcripts: %s (vocab_size=%d)", len(texts), path, tok.vocab_size)
    print(path)


if __name__ == "__main__":
    _main()


def ensure_tokenizer_model(path: str | Path, vocab_size: int, texts: Callable[[], list[str]],
                           what: str = "transcripts") -> Path:
    """Train the SentencePiece model at ``path`` from ``texts()`` unless it exists.

    The model is trained under a private name and renamed into place, so ranks that start
    together never read a half-written file. ``texts`` is called only when training is needed
    (listing a large corpus is not free).
    """
    path = Path(path)
    if path.is_file():
        return path
    corpus = texts()
    log.info("training tokenizer on %d %s -> %s", len(corpus), what, path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}")
    trained = train_tokenizer(corpus, tmp, vocab_size)
    trained.replace(path)
    vocab = Path(f"{tmp}.vocab")
    if vocab.is_file():
        vocab.replace(path.with_suffix(".vocab"))
    return path
