"""What a tunnel tells about its traffic beyond connections: each HTTP request, and whether the
local service answers.

The service's state is told when it changes, not per request: a browser retrying a page against
a stopped service would otherwise fill the sharer's terminal with one warning per 502. It is
learnt from the connections themselves: one the service could not be opened for says "down"; a
request the service answered, or a raw TCP connection that reached it, says "up" again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from safetunnel.gate.events import RequestDone
from safetunnel.sharing import events
from safetunnel.sharing.stats import ConnCounters, TunnelStats

SERVICE_DOWN = "service-down"
SERVICE_UP = "service-up"
# The pump's reason for a connection whose service could not be opened (the gate's Close).
UNAVAILABLE = "service-unavailable"


class TrafficReports:
    """Turns the gate's request reports and the connections' ends into events; thread-safe."""

    def __init__(
        self,
        tunnel_id: str,
        local: str,
        stats: TunnelStats,
        emit: Callable[[events.TunnelEvent], None],
    ) -> None:
        self._id = tunnel_id
        self._local = local
        self._stats = stats
        self._emit = emit
        self._lock = threading.Lock()
        self._down = False
        self._down_since = float("-inf")  # when the connection that found it down opened

    def request(self, _counters: ConnCounters, done: RequestDone) -> None:
        """A request got its whole answer (a pump hook: runs on the pump's thread)."""
        event = events.Request(
            id=self._id,
            method=done.method,
            path=done.path,
            status=done.status,
            duration=round(done.duration, 3),
            bytes_in=done.bytes_in,
            bytes_out=done.bytes_out,
        )
        if done.reached_service:
            self._service(up=True)
        self._stats.request({k: v for k, v in event.to_json().items() if k not in ("event", "id")})
        self._emit(event)

    def finished(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        """A connection ended: one the service could not be opened for means it is down; a raw
        stream (it has no requests) that reached the service and opened after that, up."""
        if reason == UNAVAILABLE:
            self._service(up=False, protocol=counters.protocol, opened=counters.opened)
        elif allowed and counters.protocol == "tcp":
            self._service(up=True, opened=counters.opened)

    def _service(
        self, *, up: bool, protocol: str | None = None, opened: float | None = None
    ) -> None:
        with self._lock:
            if self._down != up:
                return  # no change
            # A stream opened before the service went down reached it back then: it says
            # nothing about now, however late it ends.
            if up and opened is not None and opened <= self._down_since:
                return
            self._down = not up
            if not up and opened is not None:
                self._down_since = opened
        if up:
            message = f"reaches its local service {self._local} again"
        else:
            http = protocol == "http"
            answer = "HTTP clients get 502 Bad Gateway" if http else "its clients are disconnected"
            message = f"cannot reach its local service {self._local}: {answer}"
        self._emit(events.Warning(self._id, message, SERVICE_UP if up else SERVICE_DOWN))
