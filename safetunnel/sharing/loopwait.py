"""How the relay loop waits for its sockets: ``poll``, awake for a moment first when an answer
is likely to come sooner than a sleep and a wake-up would take."""

from __future__ import annotations

import os
import select
import time

# Sleeping in poll and being woken costs a thread on a virtual machine about 100 µs (measured:
# a keep-alive request took ~190 µs less when the loop never slept between its two waits). So
# after a small exchange went out, and while the loop's waits keep ending this soon, it waits
# awake (polling without sleeping) for up to this long before it sleeps. A wait longer than
# this stops it until a wait is short again, so far-away or idle clients cost at most one spin
# after a lull, and a stream's turns never spin (their CPU is better left to the ssh that feeds
# them). With one CPU the spin would only keep the others from running, so there is none.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
SPIN_SECONDS = 0.0003 if (_CPUS or 1) > 1 else 0.0


class Waiter:
    """The loop's poll; only the loop thread calls it."""

    def __init__(self, poller: select.poll) -> None:
        self._poller = poller
        self._short = False  # the last wait ended within SPIN_SECONDS
        self._likely = False  # a step sent a small exchange: its answer is likely soon

    def answer_likely(self) -> None:
        """A step sent a request or an answer: the next wait may spin."""
        self._likely = True

    def poll(self, wait_ms: int) -> list[tuple[int, int]]:
        """What is ready, waiting up to ``wait_ms``: awake for ``SPIN_SECONDS`` first after a
        small exchange, while the waits have been that short."""
        likely, self._likely = self._likely, False
        if not wait_ms:
            return self._poller.poll(0)
        start = time.perf_counter()
        if likely and self._short and SPIN_SECONDS:
            until = start + SPIN_SECONDS
            while time.perf_counter() < until:
                ready = self._poller.poll(0)
                if ready:
                    return ready
        ready = self._poller.poll(wait_ms)
        self._short = time.perf_counter() - start < SPIN_SECONDS
        return ready
