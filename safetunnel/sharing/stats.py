"""Live counters of one tunnel: open/total/denied connections, bytes each way, recent connections
and HTTP requests.

Each connection counts its own bytes (one writer per direction, so no lock on the hot path); the
tunnel-wide view adds the finished totals to the live connections' counters when asked.

Every time here comes from the tunnel's one clock, so that "idle since" can be compared with the
tunnel's own ``now`` (and scripted in tests). Only connections that showed the token count as
activity: otherwise anyone who can reach the port could keep an idle share alive with refused
requests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]

RECENT = 20
RECENT_REQUESTS = 10  # the HTTP requests `safetunnel status` shows


@dataclass(eq=False)  # identity semantics: kept in a set of live connections
class ConnCounters:
    """Per-connection counters, written only by that connection's two pump threads."""

    origin: str
    clock: Clock = field(default=time.monotonic, repr=False)
    bytes_in: int = 0  # remote -> service
    bytes_out: int = 0  # service -> remote
    protocol: str | None = None
    authorized: bool = False  # showed the token: from then on its traffic is activity
    recipient: str = ""  # whose token it showed (a name)
    opened: float = field(init=False)
    last_activity: float = field(init=False)

    def __post_init__(self) -> None:
        self.opened = self.last_activity = self.clock()

    def add_in(self, count: int) -> None:
        if count:  # an EOF is no activity
            self.bytes_in += count
            self.last_activity = self.clock()

    def add_out(self, count: int) -> None:
        if count:
            self.bytes_out += count
            self.last_activity = self.clock()


class TunnelStats:
    """Thread-safe aggregate for status lines, records and `safetunnel status`."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._live: set[ConnCounters] = set()
        self.total = 0
        self.denied = 0
        self._closed_in = 0
        self._closed_out = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.requests: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)
        self.last_activity = clock()

    def counters(self, origin: str) -> ConnCounters:
        """Fresh counters for a connection from ``origin``, on this tunnel's clock."""
        return ConnCounters(origin, self._clock)

    def opened(self, conn: ConnCounters) -> None:
        """A connection got a pump; it is no activity until it is authorized."""
        with self._lock:
            self._live.add(conn)
            self.total += 1

    def authorized(self, conn: ConnCounters) -> None:
        """The connection showed the token: it is activity from now on."""
        with self._lock:
            conn.authorized = True
            conn.last_activity = self._clock()

    def finished(self, conn: ConnCounters, allowed: bool, reason: str) -> dict[str, Any]:
        """Move a connection to the totals; returns its summary (for the audit log)."""
        now = self._clock()
        summary = {
            "origin": conn.origin,
            "protocol": conn.protocol or "unknown",
            "allowed": allowed,
            "reason": reason,
            "bytes_in": conn.bytes_in,
            "bytes_out": conn.bytes_out,
            "duration": round(now - conn.opened, 3),
            "recipient": conn.recipient,
        }
        with self._lock:
            self._live.discard(conn)
            self._closed_in += conn.bytes_in
            self._closed_out += conn.bytes_out
            if not allowed:
                self.denied += 1
            self.recent.append(summary)
            if conn.authorized:  # its last byte, not its close, was the activity
                self.last_activity = max(self.last_activity, conn.last_activity)
        return summary

    def refused_at_door(self, origin: str, reason: str) -> dict[str, Any]:
        """A connection turned away before it got a pump (shutting down, the failure budget
        spent); returns its summary, as :meth:`finished` does."""
        summary: dict[str, Any] = {
            "origin": origin,
            "protocol": "unknown",
            "allowed": False,
            "reason": reason,
            "bytes_in": 0,
            "bytes_out": 0,
            "duration": 0.0,
        }
        with self._lock:
            self.total += 1
            self.denied += 1
            self.recent.append(summary)
        return summary

    def request(self, summary: dict[str, Any]) -> None:
        """An HTTP request got its answer (method, path, status, duration, bytes)."""
        with self._lock:
            self.requests.append(summary)

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._live)

    def idle_since(self) -> float:
        """When (on the tunnel's clock) the last authorized byte or connection was seen."""
        with self._lock:
            latest = self.last_activity
            for conn in self._live:
                if conn.authorized:
                    latest = max(latest, conn.last_activity)
            return latest

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            live = list(self._live)
            return {
                "connections": len(live),
                "total_connections": self.total,
                "denied": self.denied,
                "bytes_in": self._closed_in + sum(c.bytes_in for c in live),
                "bytes_out": self._closed_out + sum(c.bytes_out for c in live),
                "recent": list(self.recent),
                "requests": list(self.requests),
            }
