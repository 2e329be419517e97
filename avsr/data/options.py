"""Checks of the data module's scalar options, run when it is built.

A value that reaches the sampler or the DataLoader unchecked fails much later (after the model
is built, or a while into the first epoch) with a bare ``TypeError``; these fail at once with
``ValueError: data.KEY must be ..., got VALUE``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = ["check_options", "integer", "fraction", "flag", "OPTIONS"]


def _bad(key: str, wanted: str, value: Any) -> ValueError:
    return ValueError(f"data.{key} must be {wanted}, got {value!r} ({type(value).__name__})")


def integer(key: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    """``value`` as an int of at least ``minimum``.

    Whole floats (``1e3`` from the command line) are accepted; booleans and strings are not.

    Args:
        key: the option's name under ``data.`` (for the message).
        value: what the config gave.
        minimum: the smallest allowed value.
        optional: None is allowed (and returned).

    Raises:
        ValueError: anything else; names the key and the value.
    """
    if value is None and optional:
        return None
    wanted = f"an integer >= {minimum}" + (" or null" if optional else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _bad(key, wanted, value)
    if not isinstance(value, Integral):
        if not math.isfinite(value) or not float(value).is_integer():
            raise _bad(key, wanted, value)
    if value < minimum:
        raise _bad(key, wanted, value)
    return int(value)


def fraction(key: str, value: Any, *, low_open: bool = False) -> float:
    """``value`` as a float in [0, 1] (``(0, 1]`` with ``low_open``).

    Raises:
        ValueError: not a number in that range; names the key and the value.
    """
    wanted = f"a number in {'(' if low_open else '['}0, 1]"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise _bad(key, wanted, value)
    if value > 1 or value < 0 or (low_open and value == 0):
        raise _bad(key, wanted, value)
    return float(value)


def flag(key: str, value: Any) -> bool:
    """``value`` if it is a bool (a string such as ``"false"`` would be true).

    Raises:
        ValueError: not a bool; names the key and the value.
    """
    if not isinstance(value, bool):
        raise _bad(key, "true or false", value)
    return value


# attribute of the data module -> (check, its arguments); the order is the report's: a bad
# max_frames is named before the max_frames_eval that defaulted to it
OPTIONS: dict[str, tuple[Any, dict[str, Any]]] = {
    "max_frames": (integer, {"minimum": 1}),
    "max_frames_eval": (integer, {"minimum": 1}),
    "unlabelled_max_frames": (integer, {"minimum": 1}),
    "max_batch_size": (integer, {"minimum": 1, "optional": True}),
    "num_buckets": (integer, {"minimum": 1}),
    "num_workers": (integer, {"minimum": 0}),
    # 0: no SentencePiece model (word classes: avsr.data.lrw.WordDataModule)
    "vocab_size": (integer, {"minimum": 0}),
    "babble_num_speakers": (integer, {"minimum": 1}),
    "seed": (integer, {"minimum": 0}),
    "labelled_seed": (integer, {"minimum": 0}),
    "max_bad_fraction": (fraction, {}),
    "labelled_fraction": (fraction, {"low_open": True}),
    "cache": (flag, {}),
    "pin_memory": (flag, {}),
}


def check_options(module: Any) -> None:
    """Check the :data:`OPTIONS` attributes of a data module and store them normalised (whole
    floats become ints).

    Raises:
        ValueError: the first bad one, naming ``data.KEY`` and the value.
    """
    for key, (check, kwargs) in OPTIONS.items():
        setattr(module, key, check(key, getattr(module, key), **kwargs))
