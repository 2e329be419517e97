"""The token units of released models (auto_avsr, USR): an ESPnet units list (+ SentencePiece).

auto_avsr and USR do not use avsr's id layout (``0 <blank>, 1 <unk>, 2 <eos>``). Their output
layers follow an ESPnet ``units.txt`` — one ``<piece> <id>`` per line, ids 1..N, ``<unk> 1``
first — wrapped as ``<blank>`` = 0 and ``<eos>`` = sos = N + 1 (Ma et al., ICASSP 2023,
mpc001/auto_avsr ``TextTransform``: ``token_list = ["<blank>"] + units + ["<eos>"]``):

- auto_avsr: ``unigram5000_units.txt`` (5047 units) + ``unigram5000.model`` -> V = 5049;
- USR: ``unigram1000_units.txt`` (1047 units) -> V = 1049; no SentencePiece model is shipped.

A converted checkpoint therefore decodes to words only through these units.
:class:`UnitsTokenizer` is a drop-in for :class:`~avsr.data.tokenizer.Tokenizer` (same
attributes and methods), picked by the data config::

    data:
      tokenizer:
        _target_: avsr.data.units_tokenizer.UnitsTokenizer
        units_file: ${paths.data_dir}/tokenizers/unigram5000_units.txt
        spm_model: ${paths.data_dir}/tokenizers/unigram5000.model

Encoding uses the SentencePiece model when given (pieces -> unit ids, unknown pieces -> the
``<unk>`` unit, as auto_avsr does). Without one (USR) each word is segmented into the fewest
units that spell ``▁WORD`` — deterministic and lossless, but not SentencePiece's unigram
segmentation, so token ids can differ from USR's pre-tokenised CSVs (decoding is unaffected).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from avsr.data.corpora import normalize_text

__all__ = ["UnitsTokenizer", "read_units"]

_SPACE = "\u2581"  # SentencePiece's word-boundary mark


def read_units(path: str | Path) -> list[str]:
    """Read an ESPnet units list (``<piece> <id>`` per line, ids 1..N) into pieces by id.

    Returns:
        ``pieces`` with ``pieces[i - 1]`` the piece of id ``i``.

    Raises:
        ValueError: a malformed line, a repeated piece, or ids that are not exactly 1..N.
    """
    path = Path(path)
    by_id: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected '<piece> <id>', got {line!r}")
        piece, i = fields[0], int(fields[1])
        if i in by_id:
            raise ValueError(f"{path}:{n}: id {i} repeated")
        by_id[i] = piece
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise ValueError(f"{path}: unit ids must be 1..{len(by_id)} (blank is 0, eos N+1)")
    pieces = [by_id[i] for i in range(1, len(by_id) + 1)]
    if len(set(pieces)) != len(pieces):
        raise ValueError(f"{path}: a piece is listed twice")
    return pieces


class UnitsTokenizer:
    """Tokenizer over a released model's units list, with ``<blank>`` 0 and ``<eos>`` N + 1.

    Args:
        units_file: ESPnet units list (``<piece> <id>``, ids 1..N).
        spm_model: SentencePiece model whose pieces the units list names (auto_avsr's
            ``unigram5000.model``); None segments words into the fewest units (USR).
        blank_id: CTC blank id (0 in ESPnet layouts).
        eos_id: end-of-sentence id; None = N + 1 (the last id).
        sos_id: start symbol; None = ``eos_id`` (ESPnet's shared ``<sos/eos>``).
        unk_piece: the units list's unknown piece.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a malformed units list, or ``unk_piece`` not in it.
    """

    def __init__(
        self,
        units_file: str | Path,
        spm_model: str | Path | None = None,
        *,
        blank_id: int = 0,
        eos_id: int | None = None,
        sos_id: int | None = None,
        unk_piece: str = "<unk>",
    ) -> None:
        self.units_file = Path(units_file)
        if not self.units_file.is_file():
            raise FileNotFoundError(f"units file not found: {self.units_file}")
        self.spm_model = None if spm_model is None else Path(spm_model)
        if self.spm_model is not None and not self.spm_model.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {self.spm_model}")
        self._pieces = read_units(self.units_file)
        self._ids = {p: i for i, p in enumerate(self._pieces, 1)}
        if unk_piece not in self._ids:
            raise ValueError(f"{self.units_file}: no {unk_piece!r} unit")
        self.blank_id = blank_id
        self.eos_id = len(self._pieces) + 1 if eos_id is None else eos_id
        self.sos_id = self.eos_id if sos_id is None else sos_id
        self.unk_id = self._ids[unk_piece]
        self._unk_piece = unk_piece
        self._max_piece = max(len(p) for p in self._pieces)
        self._proto = None if self.spm_model is None else self.spm_model.read_bytes()
        self._load_spm()

    def _load_spm(self) -> None:
        self._sp = (None if self._proto is None
                    else spm.SentencePieceProcessor(model_proto=self._proto))

    # DataLoader workers may pickle us; a SentencePieceProcessor is not picklable everywhere.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_sp"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load_spm()

    def __repr__(self) -> str:
        return (f"UnitsTokenizer({str(self.units_file)!r}, spm_model="
                f"{None if self.spm_model is None else str(self.spm_model)!r}, "
                f"vocab_size={self.vocab_size})")

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def vocab_size(self) -> int:
        """Number of output ids V: blank + units + eos (and sos when it is separate)."""
        return max(len(self._pieces), self.blank_id, self.eos_id, self.sos_id) + 1

    @staticmethod
    def normalize(text: str) -> str:
        """The shared transcript normalisation (also used for WER references)."""
        return normalize_text(text)

    def id_to_piece(self, i: int) -> str:
        if i == self.blank_id:
            return "<blank>"
        if i in (self.eos_id, self.sos_id):
            return "<eos>"
        return self._pieces[i - 1]

    def pieces(self, text: str) -> list[str]:
        """The unit pieces of normalised ``text``."""
        text = normalize_text(text)
        if self._sp is not None:
            return self._sp.encode(text, out_type=str)
        return [p for word in text.split() for p in self._segment(_SPACE + word)]

    def _segment(self, word: str) -> list[str]:
        # fewest units spelling `word`; a character no unit starts with becomes <unk>
        n = len(word)
        best: list[tuple[int, int] | None] = [None] * (n + 1)  # (count, start) per end index
        best[0] = (0, 0)
        for end in range(1, n + 1):
            for start in range(max(0, end - self._max_piece), end):
                prev = best[start]
                if prev is None or word[start:end] not in self._ids:
                    continue
                if best[end] is None or prev[0] + 1 < best[end][0]:
                    best[end] = (prev[0] + 1, start)
            if best[end] is None and best[end - 1] is not None:
                best[end] = (best[end - 1][0] + 1, -(end - 1) - 1)  # unknown char -> <unk>
        out: list[str] = []
        end = n
        while end > 0:
            start = best[end][1]
            if start < 0:
                start = -start - 1
                out.append(self._unk_piece)
            else:
                out.append(word[start:end])
            end = start
        return out[::-1]

    def encode(self, text: str) -> list[int]:
        """Normalise and encode ``text`` to unit ids (no sos/eos added)."""
        return [self._ids.get(p, self.unk_id) for p in self.pieces(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Join the pieces of ``ids`` (blank, sos/eos and negative ignore ids dropped)."""
        skip = {self.blank_id, self.eos_id, self.sos_id}
        pieces = [self._pieces[int(i) - 1] for i in ids
                  if int(i) not in skip and 1 <= int(i) <= len(self._pieces)]
        return normalize_text("".join(pieces).replace(_SPACE, " "))
