"""Stop signals for a command that runs until it is told to end (``share``, ``connect``)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignalScope:
    """SIGINT, SIGTERM and SIGHUP go to :meth:`stop` while the ``with`` block runs; the previous
    handlers come back after it. ``caught`` says a signal came, ``interrupted`` that one was
    SIGINT (exit 130, as a shell expects after Ctrl-C)."""

    def __init__(self) -> None:
        self.caught = False
        self.interrupted = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignalScope:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.caught = True
        self.interrupted = self.interrupted or signum == signal.SIGINT
        self.stop()

    def stop(self) -> None:
        """What a signal does; runs in the signal handler, on the main thread."""
        raise NotImplementedError
