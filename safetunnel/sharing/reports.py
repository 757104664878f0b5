"""Delivering a tunnel's events to its observers, in the order they happened.

Every connection of a busy share makes two or three events, and each became a line on stdout
and in the audit log the moment it happened: a write (and the audit file's open and close) per
event, on the thread that moves the connection's bytes. Measured at 50 concurrent clients on
the OpenSSH engine, reporting cost about a quarter of the share's connection rate; with one
client on the paramiko engine, about a fifth. So connections and requests are reported in
batches: their events wait at most ``DELAY`` (or until ``BATCH`` wait), then are delivered
together, and each observer writes them at once when flushed. The relay loop delivers its own
batches between wake-ups; a small thread delivers those raised elsewhere. Any other event is
delivered at once, after whatever waited before it, so the order of events is the order they
were raised in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from safetunnel.sharing.events import TunnelEvent

# How long an event may wait, in real time: nobody reading the events can tell 10 ms, and a
# share with one client after another then writes once per ~10 connections instead of twice per
# connection.
DELAY = 0.01
BATCH = 256  # or this many events, whichever comes first
# What is reported in batches: the traffic. The rest (started, warnings, stopped...) is rare.
BATCHED = frozenset({"connection", "connection-closed", "request"})


class EventSink(Protocol):
    """What reports are delivered to (the tunnel's observers, as one)."""

    def event(self, event: TunnelEvent) -> None: ...
    def flush(self) -> None: ...


class Reports:
    """The tunnel's one way to its observers. On the relay loop's thread (``on_loop()``) every
    event waits, and the loop calls :meth:`run_due` after each wake-up and :meth:`flush` when it
    stops; elsewhere traffic events wait for the flusher thread. :meth:`close` ends it."""

    def __init__(self, observers: EventSink) -> None:
        self._observers = observers
        self._queue: deque[TunnelEvent] = deque()
        self._due = 0.0  # when the oldest queued event must go out (time.monotonic)
        self._delivery = threading.Lock()  # one delivery at a time, in order
        self._on_loop: Callable[[], bool] = lambda: False
        self._waiting = threading.Condition()  # the flusher waits on it for a first event
        self._flusher: threading.Thread | None = None
        self._closed = False

    def defer_on(self, on_loop: Callable[[], bool]) -> None:
        """Where ``on_loop()`` is true, every event waits until :meth:`run_due` delivers it."""
        self._on_loop = on_loop

    def emit(self, event: TunnelEvent) -> None:
        if self._on_loop():
            self._enqueue(event)
        elif event.kind not in BATCHED or not self._queue_for_flusher(event):
            with self._delivery:
                self._deliver_queued()
                self._observers.event(event)
                self._observers.flush()

    def _queue_for_flusher(self, event: TunnelEvent) -> bool:
        """Queue traffic raised off the loop for the flusher thread; False once closed (then
        it goes out at once). Decided under the lock close() takes: an event queued just after
        close() had delivered the rest would wait for a flusher that never comes."""
        with self._waiting:
            if self._closed:
                return False
            if not self._queue:
                self._waiting.notify()
            self._enqueue(event)
            self._start_flusher()
            return True

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

    def close(self) -> None:
        """Deliver what waits and stop the flusher thread. Idempotent."""
        with self._waiting:
            self._closed = True
            self._waiting.notify()
            flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        self.flush()

    def _enqueue(self, event: TunnelEvent) -> None:
        if not self._queue:
            self._due = time.monotonic() + DELAY
        self._queue.append(event)

    def _start_flusher(self) -> None:
        """Called with ``_waiting`` held."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_when_due, name="safetunnel-reports")
            self._flusher.daemon = True
            self._flusher.start()

    def _flush_when_due(self) -> None:
        while True:
            with self._waiting:
                while not self._queue and not self._closed:
                    self._waiting.wait()
                if self._closed:
                    return  # close() delivers the rest
            left = self.run_due()
            if left is not None:
                with self._waiting:
                    if not self._closed:
                        self._waiting.wait(left)

    def _deliver_queued(self) -> None:
        queue = self._queue
        while queue:
            self._observers.event(queue.popleft())
