"""ctypes binding to the espeak-ng speech engine shipped by the ``espeakng-loader`` wheel.

The engine is a process-global C library: :class:`Espeak` initialises it once per process
(synchronous output mode, phoneme events on); parallel generation therefore uses a pool of
*processes*, each with its own engine.

Facts about the events, checked against espeak-ng 1.5x as shipped in the wheel:

- the synthesis callback receives ``(short* wav, int numsamples, espeak_EVENT* events)``; the
  event list ends with an event of type 0 (``espeakEVENT_LIST_TERMINATED``);
- a word event (type 1) comes *before* the phoneme events of its word; its ``audio_position``
  may precede the first phoneme (leading silence), so word times are taken from phonemes;
- phoneme events (type 7) carry the espeak mnemonic in ``id.string`` (up to 8 bytes, not
  terminated when all 8 are used) with stress marks prefixed (``'eI``, ``,a``); pauses are
  ``_``, ``_:``, ``_!``;
- ``audio_position`` is in milliseconds from the start of the message's audio.

espeak-ng is *not* stateless between calls: its wave generator keeps function-static state
(the pitch-flutter table index, a glottal cycle counter) and draws breath noise from libc's
``rand()``, so the same text synthesised twice in one process gives different samples and
event times that differ by a millisecond. For a reproducible corpus, synthesis goes through
``engine.ForkingEspeak``: a small helper process (this file run as a script, :func:`serve`)
initialises the library once and never synthesises itself; every request is served by a
``fork()`` of it, which starts from the same pristine state, seeds the random generators and
exits. Forking the small helper costs a few milliseconds; forking a worker that has imported
torch would cost ~20.

This module imports only the standard library and numpy, so that the helper starts quickly.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import struct
import sys
import threading
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EspeakError",
    "PhonemeTiming",
    "WordTiming",
    "Synthesis",
    "Espeak",
    "serve",
    "read_frame",
    "write_frame",
    "make_synthesis",
    "strip_stress",
    "PAUSE_PHONEMES",
]

# espeak_AUDIO_OUTPUT: synchronous retrieval (callback gets the audio, Synth returns when done).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options, bit 0: deliver espeakEVENT_PHONEME events (espeak mnemonics).
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
# Text inside [[ ]] is read as espeak phoneme codes; used to force a letter's name ("A").
_PHONEMES = 0x100
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4

PAUSE_PHONEMES = frozenset({"_", "_:", "_!", "_^_", "_#", "_;_"})
"""Mnemonics espeak uses for pauses; they belong to no word."""

_STRESS_MARKS = "'%,=!"


def strip_stress(symbol: str) -> str:
    """Remove espeak's stress prefixes (``'``, ``,``, ``%``, ``=``) from a phoneme mnemonic."""
    return symbol.lstrip(_STRESS_MARKS) or symbol


class EspeakError(RuntimeError):
    """The espeak-ng library failed (initialisation, unknown voice, synthesis error)."""


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    # Layout of espeak_EVENT from speak_lib.h (API revision 12). The union is pointer-aligned,
    # so the struct is 40 bytes on 64-bit Linux; ctypes reproduces the C padding.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme as espeak spoke it.

    Attributes:
        symbol: espeak mnemonic without stress marks (``eI``, ``p``, ``_:``).
        start: onset in seconds from the start of the synthesised audio.
        end: offset in seconds (onset of the next event, or the end of the audio).
        word: index of the word it belongs to, -1 for pauses.
        stressed: the mnemonic carried a primary stress mark.
    """

    symbol: str
    start: float
    end: float
    word: int
    stressed: bool = False


@dataclass(frozen=True)
class WordTiming:
    """One word: its index in the text and its span in seconds (from its phonemes)."""

    index: int
    start: float
    end: float


@dataclass(frozen=True)
class Synthesis:
    """Result of one synthesis.

    Attributes:
        audio: (S,) float32 in [-1, 1] at ``sample_rate``.
        sample_rate: the engine's rate (22050 Hz).
        words: one timing per word event espeak reported, in order.
        phonemes: every phoneme event, in order, pauses included.
    """

    audio: np.ndarray
    sample_rate: int
    words: list[WordTiming]
    phonemes: list[PhonemeTiming]


class Espeak:
    """The process's espeak-ng library (create one per process; it is global C state).

    Results depend on what was synthesised before in the same process; the generator uses
    :class:`~avsr.data.synthetic.engine.ForkingEspeak`, which runs this in a helper process.
    """

    def __init__(self) -> None:
        import espeakng_loader  # local: only processes that synthesise need the wheel

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}), data {data_path!r}")
        self.sample_rate = int(rate)
        self._lib = lib
        self._libc = ctypes.CDLL(None)  # espeak's breath noise uses libc rand()
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
            self._set_rand_seed.restype = None
        self._lock = threading.Lock()  # the C library is global state: one synthesis at a time
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        # Keep a reference: the C side holds only the raw pointer.
        self._callback = _CALLBACK(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, num_samples, events) -> int:  # noqa: ANN001 - ctypes pointers
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        if events:
            i = 0
            while True:
                ev = events[i]
                if ev.type == _EVENT_LIST_TERMINATED:
                    break
                if ev.type == _EVENT_WORD:
                    self._events.append((_EVENT_WORD, ev.audio_position, ""))
                elif ev.type == _EVENT_PHONEME:
                    raw = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                    self._events.append((_EVENT_PHONEME, ev.audio_position, raw))
                i += 1
        return 0  # 0 = continue synthesis

    def synthesize_raw(
        self, text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50,
        pitch_range: int = 50, seed: int | None = None,
    ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """Speak ``text``; return int16 samples and raw ``(type, ms, mnemonic)`` events.

        ``seed`` (if given) seeds espeak's and libc's random generators first.
        """
        with self._lock:
            if seed is not None:
                self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
                if self._set_rand_seed is not None:
                    self._set_rand_seed(ctypes.c_long(seed & 0x7FFFFFFF))
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"unknown espeak voice {voice!r}")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                                 (_PARAM_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES, None, None
            )
            chunks, events = self._chunks, self._events
            self._chunks, self._events = [], []
        if err != 0:
            raise EspeakError(f"espeak_Synth failed ({err}) for {text!r}")
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), events

    def synthesize(
        self, text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50,
        pitch_range: int = 50, seed: int | None = None,
    ) -> Synthesis:
        """Speak ``text`` and return its audio with word and phoneme timings.

        Args:
            text: UTF-8 text; ``[[...]]`` spans are read as espeak phoneme codes.
            voice: espeak voice name, e.g. ``en-us``, ``en-us+f3``, ``en+m5``.
            rate: words per minute (espeak accepts 80..450).
            pitch: base pitch 0..100 (50 is the voice's own).
            pitch_range: intonation range 0..100.
            seed: seed for the engine's random generators (breath noise).

        Raises:
            EspeakError: unknown voice or synthesis failure.
        """
        pcm, events = self.synthesize_raw(text, voice=voice, rate=rate, pitch=pitch,
                                          pitch_range=pitch_range, seed=seed)
        return make_synthesis(pcm, events, self.sample_rate)


def make_synthesis(pcm: np.ndarray, events: list[tuple[int, int, str]], rate: int
                   ) -> Synthesis:
    """Build a :class:`Synthesis` from int16 samples and raw ``(type, ms, mnemonic)`` events."""
    audio = pcm.astype(np.float32) / 32768.0
    return Synthesis(audio, rate, *_timings(events, len(pcm) / rate))


def _timings(events: list[tuple[int, int, str]], duration: float
             ) -> tuple[list[WordTiming], list[PhonemeTiming]]:
    """Turn raw (type, ms, mnemonic) events into phoneme spans and word spans."""
    word = -1
    raw: list[tuple[str, float, int, bool]] = []
    for kind, ms, name in events:
        if kind == _EVENT_WORD:
            word += 1
        else:
            symbol = strip_stress(name)
            is_pause = symbol in PAUSE_PHONEMES
            raw.append((symbol, ms / 1000.0, -1 if is_pause else word, name.startswith("'")))
    phonemes = []
    for k, (symbol, start, w, stressed) in enumerate(raw):
        end = raw[k + 1][1] if k + 1 < len(raw) else duration
        phonemes.append(PhonemeTiming(symbol, start, max(end, start), w, stressed))
    spans: dict[int, list[float]] = {}
    for p in phonemes:
        if p.word >= 0:
            span = spans.setdefault(p.word, [p.start, p.end])
            span[1] = p.end
    words = [WordTiming(i, spans[i][0], spans[i][1]) if i in spans else WordTiming(i, 0.0, 0.0)
             for i in range(word + 1)]
    return words, phonemes


# ------------------------------------------------- helper process of the deterministic engine


def read_frame(stream) -> bytes | None:  # noqa: ANN001 - binary file object
    """Read one length-prefixed message (``None`` at end of file)."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def write_frame(fd: int, payload: bytes) -> None:
    """Write one length-prefixed message to a file descriptor."""
    view = memoryview(struct.pack("<Q", len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def serve() -> None:
    """Helper-process main loop: one fork per request, from a never-used engine."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the protocol
    engine = Espeak()
    # Load the English voice and dictionary once, so children do not re-read them. Always the
    # same preparation, so every child still starts from the same state.
    engine._lib.espeak_SetVoiceByName(b"en-us")
    write_frame(out_fd, pickle.dumps(("ready", engine.sample_rate)))
    stdin = sys.stdin.buffer
    while True:
        request = read_frame(stdin)
        if request is None:
            return  # the client closed the pipe (or died)
        pid = os.fork()
        if pid == 0:  # child: pristine engine state, one synthesis, exit
            try:
                kwargs = pickle.loads(request)
                pcm, events = engine.synthesize_raw(**kwargs)
                reply = ("ok", pcm.tobytes(), events)
            except BaseException as e:  # noqa: BLE001 - everything goes back to the client
                reply = ("error", f"{type(e).__name__}: {e}")
            write_frame(out_fd, pickle.dumps(reply))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            write_frame(out_fd, pickle.dumps(("error", f"synthesis process died ({status})")))


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    serve()
