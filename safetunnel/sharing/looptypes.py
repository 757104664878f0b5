"""What the relay loop and the connections it drives know of each other."""

from __future__ import annotations

import select
from typing import Protocol

READ = select.POLLIN
WRITE = select.POLLOUT
# The fd a client is told of for a stream with no descriptor of its own (see RelayLoop.poke).
STREAM = -2


class LoopClient(Protocol):
    """A connection the loop drives; every method runs on the loop thread."""

    def begin(self) -> None:
        """The loop took the connection over: do the first step and watch what it needs."""

    def on_ready(self, fd: int, events: int) -> None:
        """``fd`` (one of the client's) is ready for ``events`` (READ and/or WRITE)."""

    def on_timer(self) -> None:
        """The deadline given to :meth:`RelayLoop.at` has come, or the client was forgotten."""


class Deferred(Protocol):
    """Work that steps on the loop leave for later (a tunnel's reports, written in batches)."""

    def run_due(self) -> float | None:
        """Do what is due; the seconds (real time) until the rest is, or None if nothing is
        left."""

    def flush(self) -> None:
        """Do all of it now: the loop is stopping."""
