"""The failure budget of one tunnel: what refusals cost, across all of its connections.

Each gate only reports that it refused a client; the tunnel keeps this count, turns it into a
delay before the refusal is answered (guessing gets slow), and stops once ``max_failures`` is
reached. The delay is counted per source host: one noisy source does not slow down the
refusals of another. Behind ``GatewayPorts no`` every remote connection arrives from the SSH
server's loopback, so there all clients are one source; that costs nobody with the token
anything, because a delay only ever holds back the answer to a refusal. The ``max_failures``
total is counted across all sources.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

WINDOW_SECONDS = 60.0
# Past this many doublings the delay is pinned at max_delay anyway; capping the exponent keeps
# the float arithmetic from overflowing under a flood.
_MAX_DOUBLINGS = 60
# Remembering more recent failures than this changes nothing: the delay is already saturated.
_EXTRA_REMEMBERED = 64
# Sources remembered at once; past this the one heard from least recently is forgotten, so a
# flood of spoofed or many-homed sources cannot grow the budget without bound.
MAX_SOURCES = 1024


class FailureBudget:
    """Counts refusals; past ``per_minute`` from one source in the last minute each one earns
    a growing delay.

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
        self._sources: OrderedDict[str, deque[float]] = OrderedDict()
        self._total = 0

    def record_failure(self, now: float, source: str = "") -> float:
        """Record one refusal at ``now`` from ``source`` (a host; "" when unknown); return the
        delay (s) to hold back its answer."""
        with self._lock:
            self._total += 1
            recent = self._recent(source)
            recent.append(now)
            while recent and recent[0] <= now - WINDOW_SECONDS:
                recent.popleft()
            over = len(recent) - self.per_minute
        if over <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(over - 1, _MAX_DOUBLINGS))

    def _recent(self, source: str) -> deque[float]:
        """The source's recent refusals, now the most recently used; called under the lock."""
        recent = self._sources.pop(source, None)
        if recent is None:
            recent = deque(maxlen=self.per_minute + _EXTRA_REMEMBERED)
            if len(self._sources) >= MAX_SOURCES:
                self._sources.popitem(last=False)
        self._sources[source] = recent
        return recent

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
