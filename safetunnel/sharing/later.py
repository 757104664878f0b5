"""Calls to run a little later, on one thread the tunnel owns: the delayed answers to refusals.

A refused connection must give its slot (and its pool thread) back at once, yet its answer is
held back to slow down guessing. So the answer becomes a call here instead of a sleeping pump
thread. Only ``cap`` calls wait at a time: each waiting call keeps a channel open, and a channel
that is not read can still buffer up to its SSH window, so past the cap the call that is due
first runs at once (it was nearest its time anyway). Calls never run on the caller's thread
(until :meth:`close`): callers include the SSH transport thread, which must not close channels.

Waits are in real seconds (``time.monotonic``), not on the tunnel's clock: a delay is a real
pause for the client, and a scripted clock in a test must not freeze the answers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("safetunnel.sharing.later")

Call = Callable[[], None]


class Later:
    """Runs calls after a delay on one lazily started thread; :meth:`close` runs what is left."""

    def __init__(self, cap: int = 16, name: str = "later") -> None:
        self.cap = cap
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Call]] = []
        self._now: deque[Call] = deque()  # pushed out past the cap: run before anything else
        self._order = itertools.count()  # ties run in the order they were scheduled
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._now)

    def call_later(self, delay: float, call: Call) -> None:
        """Run ``call`` in ``delay`` seconds (sooner past the cap); after :meth:`close`, now."""
        with self._cond:
            if not self._closed:
                entry = (time.monotonic() + delay, next(self._order), call)
                heapq.heappush(self._heap, entry)
                while len(self._heap) > self.cap:
                    self._now.append(heapq.heappop(self._heap)[2])
                self._start()
                self._cond.notify()
                return
        _run_all([call])

    def defer(self, delay: float, call: Call) -> bool:
        """Run ``call`` in ``delay`` seconds if fewer than ``cap`` calls wait; False (and nothing
        scheduled) when they are full or closed: the caller then runs it on its own thread.

        For callers that may block (a pump thread, never the transport thread): unlike
        :meth:`call_later`, nothing queues past the cap for the one busy thread, so the open
        channels the waiting calls keep stay bounded however fast they come."""
        with self._cond:
            if self._closed or len(self._heap) + len(self._now) >= self.cap:
                return False
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), call))
            self._start()
            self._cond.notify()
            return True

    def close(self) -> None:
        """Run every waiting call now, stop the thread and join it. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            left = [*self._now, *(entry[2] for entry in sorted(self._heap))]
            self._now.clear()
            self._heap.clear()
        _run_all(left)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._now and not self._is_due():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                call = self._now.popleft() if self._now else heapq.heappop(self._heap)[2]
            _run_all([call])

    def _is_due(self) -> bool:
        return bool(self._heap) and self._heap[0][0] <= time.monotonic()


def _run_all(calls: list[Call]) -> None:
    for call in calls:
        try:
            call()
        except Exception:  # one failed answer must not stop the others
            log.exception("a delayed call failed")
