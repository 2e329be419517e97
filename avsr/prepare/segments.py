"""LRS2/LRS3 transcripts with word timings, and the splitting of long pretrain utterances.

AV-HuBERT's rule (Shi et al., ICLR 2022; ``lrs3_prepare.py``): a ``pretrain`` utterance whose
last word ends at or after 15 s is cut between every two words separated by more than 0.4 s;
a cut lies halfway through the gap; the first piece starts at 0 and the last runs to the end.
Pieces are numbered ``<utt>_0``, ``<utt>_1``, ... Shorter utterances stay whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Word", "Transcript", "Segment", "read_timed_transcript", "split_long",
           "format_transcript", "MAX_DURATION", "MIN_GAP"]

MAX_DURATION = 15.0  # seconds
MIN_GAP = 0.4  # seconds


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    score: str = "1.0"


@dataclass(frozen=True)
class Transcript:
    """An LRS ``.txt``: the ``Text:`` line, the ``Conf:`` value and the word table (maybe
    empty: LRS2 ``main`` has none)."""

    text: str
    conf: str = ""
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Segment:
    """A piece of an utterance: ``suffix`` ("" when whole, else ``_<i>``), times in seconds
    (``end`` None = to the end of the clip), and its words re-timed from the piece start."""

    suffix: str
    start: float
    end: float | None
    text: str
    words: tuple[Word, ...] = field(default=())


def read_timed_transcript(path: str | Path) -> Transcript:
    """Read an LRS2/LRS3 ``.txt`` (``Text:``, ``Conf:``, then ``WORD START END ASDSCORE``)."""
    path = Path(path)
    text, conf, words, in_table = None, "", [], False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if in_table:
            fields = line.split()
            if len(fields) >= 3:
                words.append(Word(fields[0], float(fields[1]), float(fields[2]),
                                  fields[3] if len(fields) > 3 else "1.0"))
        elif line.startswith("Text:"):
            text = line[len("Text:"):].strip()
        elif line.startswith("Conf:"):
            conf = line[len("Conf:"):].strip()
        elif line.split()[:3] == ["WORD", "START", "END"]:
            in_table = True
    if text is None:
        raise ValueError(f"{path}: no 'Text:' line")
    return Transcript(text, conf, tuple(words))


def split_long(transcript: Transcript, max_duration: float = MAX_DURATION,
               min_gap: float = MIN_GAP) -> list[Segment]:
    """Cut an utterance at word gaps longer than ``min_gap`` if it lasts ``max_duration`` or
    more (by its last word's end); otherwise one whole segment."""
    words = transcript.words
    if not words or words[-1].end < max_duration:
        return [Segment("", 0.0, None, transcript.text, words)]
    groups: list[list[Word]] = [[words[0]]]
    for w in words[1:]:
        if w.start - groups[-1][-1].end > min_gap:
            groups.append([w])
        else:
            groups[-1].append(w)
    if len(groups) == 1:
        return [Segment("", 0.0, None, transcript.text, words)]
    segments = []
    for i, g in enumerate(groups):
        start = 0.0 if i == 0 else (g[0].start + groups[i - 1][-1].end) / 2
        end = None if i == len(groups) - 1 else (g[-1].end + groups[i + 1][0].start) / 2
        timed = tuple(Word(w.word, round(w.start - start, 3), round(w.end - start, 3), w.score)
                      for w in g)
        segments.append(Segment(f"_{i}", start, end, " ".join(w.word for w in g), timed))
    return segments


def format_transcript(text: str, conf: str = "", words: tuple[Word, ...] = ()) -> str:
    """An LRS-style ``.txt`` (what :func:`avsr.data.corpora.read_transcript` reads)."""
    lines = [f"Text:  {text}", f"Conf:  {conf}"]
    if words:
        lines += ["", "WORD START END ASDSCORE"]
        lines += [f"{w.word} {w.start:.2f} {w.end:.2f} {w.score}" for w in words]
    return "\n".join(lines) + "\n"
