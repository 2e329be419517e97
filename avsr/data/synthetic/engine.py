"""The deterministic espeak-ng engine used by the generator (one helper process per process).

:class:`ForkingEspeak` talks to a helper process running ``espeak.py --serve``: the helper
initialises the library once and forks a fresh child for every synthesis, so results depend
only on the arguments, never on what was synthesised before (see :mod:`.espeak` for why).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

import numpy as np

from . import espeak as _espeak
from .espeak import EspeakError, Synthesis, make_synthesis, read_frame, write_frame

__all__ = ["ForkingEspeak", "get_engine"]


class ForkingEspeak:
    """Deterministic espeak-ng: each synthesis runs in a fresh fork of a pristine engine.

    Same arguments (and seed) give the same samples and events, whatever was synthesised
    before in this process. The helper process ends when this object is closed or its owner
    exits (it sees end-of-file on its input).
    """

    def __init__(self) -> None:
        # -P: keep this package's directory off the helper's import path (Python >= 3.11).
        flags = ["-P"] if sys.version_info >= (3, 11) else []
        self._proc = subprocess.Popen(
            [sys.executable, *flags, os.path.abspath(_espeak.__file__), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        self._lock = threading.Lock()
        hello = read_frame(self._proc.stdout)
        if hello is None:
            raise EspeakError("the espeak helper process failed to start (see stderr)")
        tag, rate = pickle.loads(hello)
        if tag != "ready":
            raise EspeakError(f"unexpected espeak helper greeting {tag!r}")
        self.sample_rate = int(rate)

    def synthesize(
        self, text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50,
        pitch_range: int = 50, seed: int = 0,
    ) -> Synthesis:
        """Speak ``text`` deterministically; arguments as :meth:`Espeak.synthesize`."""
        request = pickle.dumps({"text": text, "voice": voice, "rate": int(rate),
                                "pitch": int(pitch), "pitch_range": int(pitch_range),
                                "seed": int(seed)})
        with self._lock:
            if self._proc.poll() is not None:
                raise EspeakError(f"espeak helper exited ({self._proc.returncode})")
            write_frame(self._proc.stdin.fileno(), request)
            reply = read_frame(self._proc.stdout)
        if reply is None:
            raise EspeakError("espeak helper closed its output")
        message = pickle.loads(reply)
        if message[0] != "ok":
            raise EspeakError(message[1])
        return make_synthesis(np.frombuffer(message[1], np.int16), message[2], self.sample_rate)

    def close(self) -> None:
        """Stop the helper process."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self._proc.kill()
        self._proc.stdout.close()


_ENGINE: ForkingEspeak | None = None
_ENGINE_PID: int | None = None


def get_engine() -> ForkingEspeak:
    """Return this process's deterministic engine, starting its helper on first use."""
    global _ENGINE, _ENGINE_PID
    if _ENGINE is None or _ENGINE_PID != os.getpid():  # a forked copy needs its own helper
        _ENGINE, _ENGINE_PID = ForkingEspeak(), os.getpid()
    return _ENGINE


