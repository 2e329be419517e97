"""Written prompt text -> the spoken-word alphabet of the tokenizer (A-Z, apostrophe, space).

Telephone prompt scripts (the Asterisk core sounds) are written for people, not for ASR: they
hold digits ("press 1"), key symbols ("press * ", "#"), abbreviations ("A.M."), and notes on
what is heard rather than said ("[ascending tones]", "(10 seconds of silence)",
"<beep ascending>"). :func:`normalize_prompt` rewrites one such line into upper-case words
that :func:`avsr.data.corpora.normalize_text` leaves unchanged, and reports everything it
dropped so the corpus reader can count and log it.

Rules, in order:

1. Notes in ``[...]``, ``(...)`` and ``<...>`` are removed (counted as ``"note"``).
2. ``*`` and ``#`` become ``STAR`` and ``POUND`` (their names on a US telephone keypad);
   ``&`` becomes ``AND``, ``%`` ``PERCENT``, ``@`` ``AT``, ``+`` ``PLUS``, ``=`` ``EQUALS``.
3. A decimal point between digits is read ``POINT``; a digit run of up to three digits is a
   cardinal number ("162" -> ``ONE HUNDRED SIXTY TWO``); four or more digits are read digit by
   digit, as extensions and PINs are on the telephone ("1234" -> ``ONE TWO THREE FOUR``).
   Letters and digits written together are separate words ("3D" -> ``THREE D``).
4. Hyphens and slashes separate words; periods join abbreviations ("A.M." -> ``AM``); an
   apostrophe inside a word stays ("party's"); any other character is dropped and counted.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["normalize_prompt", "number_words", "digit_words"]

_ONES = ("ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN "
         "FOURTEEN FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN").split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SYMBOLS = {"*": " STAR ", "#": " POUND ", "&": " AND ", "%": " PERCENT ", "@": " AT ",
            "+": " PLUS ", "=": " EQUALS "}
_NOTE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_NUMBER = re.compile(r"\d+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def number_words(n: int) -> str:
    """Cardinal number in upper-case words, 0 <= n < 10**12 ("ONE HUNDRED SIXTY TWO").

    Raises:
        ValueError: ``n`` out of range.
    """
    if not 0 <= n < 10**12:
        raise ValueError(f"number_words: {n} out of range [0, 10**12)")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " HUNDRED" + ("" if rest == 0 else " " + number_words(rest))
    for size, name in ((10**9, "BILLION"), (10**6, "MILLION"), (10**3, "THOUSAND")):
        if n >= size:
            high, rest = divmod(n, size)
            return (number_words(high) + " " + name
                    + ("" if rest == 0 else " " + number_words(rest)))
    raise AssertionError("unreachable")  # pragma: no cover


def digit_words(digits: str) -> str:
    """A digit string read digit by digit ("1234" -> "ONE TWO THREE FOUR")."""
    return " ".join(_ONES[int(d)] for d in digits)


def _spoken_number(match: re.Match[str]) -> str:
    digits = match.group(0)
    return " " + (number_words(int(digits)) if len(digits) <= 3 else digit_words(digits)) + " "


def normalize_prompt(text: str) -> tuple[str, Counter[str]]:
    """Rewrite a written prompt into spoken upper-case words (see the module docstring).

    Args:
        text: one prompt as written, e.g. ``"Press 1 for the A.M. menu, or # to exit."``.

    Returns:
        ``(words, dropped)``: the normalised text (may be empty: a prompt that is only a note,
        such as ``"[beep]"``) and a count of what was removed: ``"note"`` per bracketed note,
        and each dropped character (``"."``, ``","``, ...) per occurrence.

    Example:
        >>> normalize_prompt("Press 1 for A.M., or # to exit [tone].")[0]
        'PRESS ONE FOR AM OR POUND TO EXIT'
    """
    dropped: Counter[str] = Counter()
    text = text.translate(_QUOTES)
    notes = _NOTE.findall(text)
    if notes:
        dropped["note"] += len(notes)
        text = _NOTE.sub(" ", text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = _DECIMAL.sub(" POINT ", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _NUMBER.sub(_spoken_number, text)
    text = re.sub(r"[-/_]", " ", text)
    out = []
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isalpha() or ch.isspace()):
            out.append(ch.upper())
        elif ch == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and (
                text[i + 1].isalpha()):
            out.append(ch)  # inside a word: "PARTY'S", "I'M"
        elif ch == ".":
            dropped[ch] += 1  # sentence ends, and abbreviations "A.M." -> "AM"
        else:
            dropped[ch] += 1
            out.append(" ")
    return " ".join("".join(out).split()), dropped
