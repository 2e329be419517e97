"""Phoneme → viseme table and coarticulated articulation trajectories.

espeak's English mnemonics (``en`` and ``en-us``) map to 14 viseme classes. Classes are as
ambiguous as real lip shapes: p/b/m share one, f/v one, t/d/n/l one, k/g/ng/h one, and so on.
Each class has a target for five articulation parameters (all in [0, 1]):

- ``open``: lip aperture (jaw + lips); 0 = lips touching;
- ``width``: horizontal stretch (0.5 neutral, 1 spread smile, 0 narrow);
- ``round``: rounding / protrusion;
- ``teeth``: how much of the teeth shows inside the aperture;
- ``tongue``: how much of the tongue shows.

Coarticulation follows the Cohen–Massaro dominance model: every segment exerts a dominance
over each parameter that is flat inside the segment and decays outside it, reaching further
ahead (anticipation) than behind (carry-over); the parameter at time t is the
dominance-weighted mean of the targets. Classes whose articulation is obligatory (the closure
of p/b/m, the rounding of w/oo, the teeth of f/v) have high dominance on that parameter; weak
ones (h, k/g, t/d) take on the shape of their neighbours, which is what makes lip reading hard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .espeak import PAUSE_PHONEMES, PhonemeTiming, strip_stress

__all__ = [
    "PARAMS",
    "VISEMES",
    "VISEME_TARGETS",
    "PHONEME_TO_VISEMES",
    "phoneme_visemes",
    "trajectory",
]

PARAMS = ("open", "width", "round", "teeth", "tongue")

VISEMES = ("SIL", "BMP", "FV", "TH", "TDNL", "SZ", "CH", "KG", "R", "WOO", "AA", "EH", "EE", "OH")

# Targets per class: open, width, round, teeth, tongue.
VISEME_TARGETS = np.array([
    [0.00, 0.50, 0.10, 0.00, 0.00],  # SIL  rest, lips lightly closed
    [0.00, 0.52, 0.15, 0.00, 0.00],  # BMP  lips pressed together
    [0.12, 0.55, 0.00, 0.95, 0.00],  # FV   lower lip under the upper teeth
    [0.25, 0.55, 0.00, 0.70, 0.95],  # TH   tongue tip between the teeth
    [0.30, 0.55, 0.05, 0.50, 0.45],  # TDNL tongue tip on the ridge
    [0.10, 0.72, 0.00, 1.00, 0.00],  # SZ   teeth close together, spread
    [0.22, 0.30, 0.75, 0.80, 0.00],  # CH   sh/zh/ch/j: protruded, teeth showing
    [0.40, 0.50, 0.10, 0.30, 0.20],  # KG   k/g/ng/h: open, tongue back
    [0.25, 0.35, 0.60, 0.30, 0.00],  # R    r and r-coloured vowels
    [0.16, 0.08, 1.00, 0.00, 0.00],  # WOO  w, oo: tight rounding
    [1.00, 0.60, 0.10, 0.30, 0.30],  # AA   open vowels
    [0.55, 0.65, 0.05, 0.50, 0.20],  # EH   mid vowels, schwa
    [0.30, 1.00, 0.00, 0.80, 0.10],  # EE   close front vowels, y
    [0.70, 0.35, 0.75, 0.10, 0.10],  # OH   rounded back vowels
], dtype=np.float32)

# Dominance of each class over each parameter (open, width, round, teeth, tongue).
_DOMINANCE = np.array([
    [1.5, 1.0, 1.0, 1.5, 1.5],  # SIL
    [20., 1.0, 0.5, 4.0, 4.0],  # BMP: closure must be reached
    [6.0, 1.0, 0.8, 8.0, 3.0],  # FV
    [2.0, 1.0, 0.8, 2.0, 5.0],  # TH
    [1.0, 0.4, 0.2, 0.8, 1.5],  # TDNL: weak, borrows rounding/width from the vowel
    [3.0, 1.5, 0.6, 3.0, 2.0],  # SZ
    [2.0, 2.0, 3.0, 2.0, 1.0],  # CH
    [0.5, 0.3, 0.2, 0.4, 0.5],  # KG: very weak (h, k, g look like the next vowel)
    [1.0, 1.5, 2.0, 0.8, 0.8],  # R
    [2.0, 3.0, 5.0, 1.5, 1.0],  # WOO
    [2.5, 1.0, 1.0, 1.0, 1.0],  # AA
    [1.5, 1.0, 1.0, 1.0, 1.0],  # EH
    [1.5, 2.5, 2.0, 1.0, 1.0],  # EE
    [2.0, 2.0, 3.0, 1.0, 1.0],  # OH
], dtype=np.float32)

# Reach of each class's dominance outside its segment (multiplies the decay constants). The
# obligatory lip contacts are strong but brief: they must win inside their segment without
# flattening the neighbouring vowels.
_REACH = np.array([1.0, 0.5, 0.6, 0.8, 1.0, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                  dtype=np.float32)

_V = {name: i for i, name in enumerate(VISEMES)}

# espeak mnemonics (stress marks removed) of en / en-us → viseme sequence (diphthongs have
# two or three: the mouth glides between them within the phoneme).
PHONEME_TO_VISEMES: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("BMP",), "b": ("BMP",), "m": ("BMP",), "m-": ("BMP",),
    "f": ("FV",), "v": ("FV",),
    "T": ("TH",), "D": ("TH",),
    "t": ("TDNL",), "d": ("TDNL",), "n": ("TDNL",), "l": ("TDNL",), "t#": ("TDNL",),
    "d#": ("TDNL",), "t2": ("TDNL",), "d2": ("TDNL",), "n-": ("TDNL",), "l/": ("TDNL",),
    "@L": ("EH", "TDNL"), "L": ("TDNL",), "l-": ("TDNL",),
    "s": ("SZ",), "z": ("SZ",),
    "S": ("CH",), "Z": ("CH",), "tS": ("CH",), "dZ": ("CH",),
    "k": ("KG",), "g": ("KG",), "N": ("KG",), "h": ("KG",), "x": ("KG",), "?": ("KG",),
    "r": ("R",), "r-": ("R",), "*": ("TDNL",), "3": ("R",), "3:": ("R",), "@r": ("R",),
    "w": ("WOO",), "W": ("WOO",), "j": ("EE",), "C": ("EE",),
    # monophthongs
    "a": ("AA",), "aa": ("AA",), "a#": ("EH",), "A:": ("AA",), "A": ("AA",), "V": ("AA",),
    "E": ("EH",), "e": ("EH",), "E2": ("EH",), "E3": ("EH",), "@": ("EH",), "@-": ("EH",),
    "@2": ("EH",), "@5": ("WOO",), "a2": ("EH",),
    "i": ("EE",), "i:": ("EE",), "I": ("EE",), "I2": ("EE",), "I#": ("EE",), "y": ("EE",),
    "0": ("OH",), "O": ("OH",), "O:": ("OH",), "O2": ("OH",), "o": ("OH",),
    "u:": ("WOO",), "u": ("WOO",), "U": ("WOO",), "U:": ("WOO",),
    # diphthongs and r-coloured vowels
    "eI": ("EH", "EE"), "aI": ("AA", "EE"), "aU": ("AA", "WOO"), "oU": ("OH", "WOO"),
    "OI": ("OH", "EE"), "e@": ("EH", "EH"), "i@": ("EE", "EH"), "i@3": ("EE", "R"),
    "U@": ("WOO", "EH"), "aI@": ("AA", "EE", "EH"), "aI3": ("AA", "EE", "R"),
    "aU@": ("AA", "WOO", "EH"), "A@": ("AA", "R"), "O@": ("OH", "R"), "o@": ("OH", "R"),
    "oU#": ("OH", "WOO"),
    # within-sentence markers that are not pauses: no articulation of their own
    ";": (), "#": (), "_^_": ("SIL",),
}


def phoneme_visemes(symbol: str) -> tuple[int, ...]:
    """Viseme class indices for an espeak mnemonic (stress marks allowed).

    Unknown mnemonics fall back on their longest known prefix (``oU#`` → ``oU``), and
    failing that on the mid vowel class, so a new espeak version degrades gracefully.
    """
    s = strip_stress(symbol)
    if s in PAUSE_PHONEMES:
        return (_V["SIL"],)
    for end in range(len(s), 0, -1):
        names = PHONEME_TO_VISEMES.get(s[:end])
        if names is not None:
            return tuple(_V[n] for n in names)
    return (_V["EH"],)


def _segments(phonemes: Sequence[PhonemeTiming], offset: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split phonemes into viseme segments: (starts, ends, class ids, stressed flags)."""
    starts, ends, classes, stressed = [], [], [], []
    for p in phonemes:
        ids = phoneme_visemes(p.symbol)
        if not ids:
            continue
        dur = max(p.end - p.start, 1e-3)
        for k, c in enumerate(ids):  # equal sub-spans for the parts of a diphthong
            starts.append(offset + p.start + dur * k / len(ids))
            ends.append(offset + p.start + dur * (k + 1) / len(ids))
            classes.append(c)
            stressed.append(p.stressed)
    return (np.asarray(starts, np.float32), np.asarray(ends, np.float32),
            np.asarray(classes, np.int64), np.asarray(stressed, bool))


def trajectory(
    phonemes: Sequence[PhonemeTiming],
    num_frames: int,
    *,
    fps: float = 25.0,
    offset: float = 0.0,
    anticipation: float = 0.07,
    carryover: float = 0.045,
    exposure: int = 3,
    gains: np.ndarray | None = None,
) -> np.ndarray:
    """Articulation parameters per video frame from timed phonemes.

    Args:
        phonemes: espeak phoneme timings (seconds from the speech start).
        num_frames: T, frames of the clip.
        fps: video frame rate.
        offset: seconds of leading silence before the speech in the clip.
        anticipation: decay constant (s) of dominance before a segment (look-ahead).
        carryover: decay constant (s) of dominance after a segment.
        exposure: samples averaged over each frame's exposure (a camera integrates light).
        gains: optional (5,) per-speaker multipliers on open/width-deviation/round/teeth/tongue.

    Returns:
        (T, 5) float32 parameters in [0, 1], columns as :data:`PARAMS`. Frames outside the
        speech are the rest mouth.
    """
    starts, ends, classes, stressed = _segments(phonemes, offset)
    # Explicit rest segments before and after the speech: the mouth returns to rest instead
    # of holding the last shape (strong segments would otherwise dominate the decay).
    clip_end = num_frames / fps
    head = min(offset, float(starts.min())) if len(starts) else clip_end
    tail = float(ends.max()) if len(ends) else 0.0
    starts = np.concatenate([starts, np.float32([-1.0, tail])])
    ends = np.concatenate([ends, np.float32([head, max(clip_end, tail) + 1.0])])
    classes = np.concatenate([classes, [_V["SIL"], _V["SIL"]]])
    stressed = np.concatenate([stressed, [False, False]])
    # Frame exposure samples: 'exposure' instants spread over the middle of each frame.
    sub = (np.arange(exposure, dtype=np.float32) + 0.5) / exposure * 0.8 + 0.1
    t = ((np.arange(num_frames, dtype=np.float32)[:, None] + sub[None]) / fps).reshape(-1)
    rest = VISEME_TARGETS[_V["SIL"]]
    # Dominance (S, N, P): flat inside the segment, exp(-(d/tau)^2) outside.
    reach = _REACH[classes][None]
    before = np.maximum(starts[None] - t[:, None], 0.0) / (anticipation * reach)
    after = np.maximum(t[:, None] - ends[None], 0.0) / (carryover * reach)
    shape = np.exp(-(before + after) ** 2)
    targets = VISEME_TARGETS[classes].copy()
    vowel = np.isin(classes, [_V[n] for n in ("AA", "EH", "EE", "OH")])
    targets[vowel & stressed, 0] = np.minimum(targets[vowel & stressed, 0] * 1.15, 1.0)
    dom = shape[:, :, None] * _DOMINANCE[classes][None]
    # A weak rest prior keeps the mouth at rest far from any segment (and avoids 0/0).
    num = (dom * targets[None]).sum(1) + 1e-3 * rest
    params = num / (dom.sum(1) + 1e-3)
    params = params.reshape(num_frames, exposure, len(PARAMS)).mean(1)
    if gains is not None:
        params = _apply_gains(params, np.asarray(gains, np.float32))
    return np.clip(params, 0.0, 1.0).astype(np.float32)


def _apply_gains(params: np.ndarray, gains: np.ndarray) -> np.ndarray:
    out = params.copy()
    out[:, 0] *= gains[0]
    out[:, 1] = 0.5 + (out[:, 1] - 0.5) * gains[1]  # width scales around neutral
    out[:, 2:] *= gains[2:]
    return out
