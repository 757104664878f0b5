"""For tests that drive a real Tunnel: an observer that keeps its events, a scripted clock."""

from __future__ import annotations

import threading

from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.tunnel import Tunnel


class EventLog:
    """An observer that keeps every event in a list (scripts and tests read ``events``)."""

    def __init__(self) -> None:
        self.events: list[TunnelEvent] = []

    def started(self, tunnel: Tunnel) -> None:
        """Nothing to publish."""

    def event(self, event: TunnelEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        """Nothing to release."""


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, value: float) -> None:
        with self._lock:
            self.now = value
