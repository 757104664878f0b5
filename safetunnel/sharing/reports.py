"""Delivering a tunnel's events to its observers, in the order they happened.

Every connection of a busy share makes two or three events, and each became a line on stdout
and in the audit log the moment it happened: a write (and the audit file's open and close) per
event on the relay loop's thread, between the connections it relays. Measured at 50 concurrent
clients, reporting cost about a quarter of the share's connection rate. Events raised on the
loop thread now wait in a queue for at most ``DELAY`` seconds (or ``BATCH`` events); they are
then delivered together, and each observer writes them at once when flushed. An event raised on
any other thread is delivered at once, after whatever the loop queued before it, so the order of
events is the order they were raised in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from safetunnel.sharing.events import TunnelEvent

# How long an event raised on the relay loop may wait, in real time: nobody reading the events
# can tell 10 ms, and a share with one client after another then writes once per ~10
# connections instead of twice per connection.
DELAY = 0.01
BATCH = 256  # or this many events, whichever comes first


class EventSink(Protocol):
    """What reports are delivered to (the tunnel's observers, as one)."""

    def event(self, event: TunnelEvent) -> None: ...
    def flush(self) -> None: ...


class Reports:
    """The tunnel's one way to its observers; ``deferring()`` says whether the current thread
    queues (the relay loop's, which calls :meth:`run_due` after every wake-up and :meth:`flush`
    when it stops)."""

    def __init__(self, observers: EventSink) -> None:
        self._observers = observers
        self._queue: deque[TunnelEvent] = deque()
        self._due = 0.0  # when the oldest queued event must go out (time.monotonic)
        self._delivery = threading.Lock()  # one delivery at a time, in order
        self._deferring: Callable[[], bool] = lambda: False

    def defer_on(self, deferring: Callable[[], bool]) -> None:
        """Queue the events raised where ``deferring()`` is true, until they are due."""
        self._deferring = deferring

    def emit(self, event: TunnelEvent) -> None:
        if self._deferring():
            if not self._queue:
                self._due = time.monotonic() + DELAY
            self._queue.append(event)
            return
        with self._delivery:
            self._deliver_queued()
            self._observers.event(event)
            self._observers.flush()

    def run_due(self) -> float | None:
        """Deliver the queue if it is due; else the seconds until it is (None: it is empty)."""
        if not self._queue:
            return None
        left = self._due - time.monotonic()
        if left > 0 and len(self._queue) < BATCH:
            return left
        self.flush()
        return None

    def flush(self) -> None:
        """Deliver what was queued, then let the observers write it."""
        if not self._queue:
            return
        with self._delivery:
            self._deliver_queued()
            self._observers.flush()

    def _deliver_queued(self) -> None:
        queue = self._queue
        while queue:
            self._observers.event(queue.popleft())
