"""The failure budget of one tunnel: what refusals cost, across all of its connections.

Each gate only reports that it refused a client; the tunnel keeps this count, turns it into a
delay before the refusal is answered (guessing gets slow), and stops once ``max_failures`` is
reached. It is global rather than per origin because behind ``GatewayPorts no`` every remote
connection arrives from the SSH server's loopback, so origin addresses tell attackers apart
from nobody.
"""

from __future__ import annotations

import threading
from collections import deque

WINDOW_SECONDS = 60.0
# Past this many doublings the delay is pinned at max_delay anyway; capping the exponent keeps
# the float arithmetic from overflowing under a flood.
_MAX_DOUBLINGS = 60
# Remembering more recent failures than this changes nothing: the delay is already saturated.
_EXTRA_REMEMBERED = 64


class FailureBudget:
    """Counts refusals; past ``per_minute`` in the last minute each one earns a growing delay.

    Thread-safe: every connection's pump records into the same budget."""

    def __init__(
        self,
        per_minute: int = 10,
        max_failures: int | None = None,
        base_delay: float = 0.25,
        max_delay: float = 5.0,
    ) -> None:
        if per_minute < 0 or base_delay < 0 or max_delay < 0:
            raise ValueError("per_minute, base_delay and max_delay must not be negative")
        if max_failures is not None and max_failures < 1:
            raise ValueError("max_failures must be at least 1 (or None for no limit)")
        self.per_minute = per_minute
        self.max_failures = max_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=per_minute + _EXTRA_REMEMBERED)
        self._total = 0

    def record_failure(self, now: float) -> float:
        """Record one refusal at ``now``; return the delay (s) to wait before answering it."""
        with self._lock:
            self._total += 1
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - WINDOW_SECONDS:
                self._recent.popleft()
            over = len(self._recent) - self.per_minute
        if over <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(over - 1, _MAX_DOUBLINGS))

    @property
    def total_failures(self) -> int:
        """Refusals recorded since the tunnel started."""
        with self._lock:
            return self._total

    @property
    def exhausted(self) -> bool:
        """True once ``max_failures`` refusals happened: the tunnel should tear down."""
        with self._lock:
            return self.max_failures is not None and self._total >= self.max_failures
