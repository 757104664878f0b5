"""Events the gate hands to whoever drives it (the pump), and the gate's only exception type.

The gate is sans-IO: it never touches a socket, so every decision it makes is one of these values.
``ToRemote`` and ``ToService`` hide their payload from ``repr`` because a link's Set-Cookie reply
carries the share's session secret, and events end up in debug logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class GateError(Exception):
    """The only exception the gate raises, and only for API misuse (never for remote input)."""


@dataclass(frozen=True)
class NeedData:
    """Wait for more bytes; if ``deadline`` is set, call ``next_event(now)`` again at that time."""

    deadline: float | None = None


@dataclass(frozen=True)
class Connect:
    """The token checked out: open the local service now. Emitted once, before any ToService.

    The driver opens the service before it asks for the next event; if that fails, it calls
    ``Gate.service_unavailable()`` instead, and the events that follow say how to answer.
    ``recipient`` names whose token let it in (never the token itself).
    """

    protocol: Literal["http", "tcp"]
    recipient: str = ""


@dataclass(frozen=True)
class ToService:
    """Write these bytes to the local service, in the order emitted.

    ``data`` is bytes-like (h11 hands out bytearrays; they are passed on without a copy).
    """

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"ToService(<{len(self.data)} bytes>)"


@dataclass(frozen=True)
class ToRemote:
    """Write these bytes to the remote client, in the order emitted (bytes-like, see ToService)."""

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"ToRemote(<{len(self.data)} bytes>)"


@dataclass(frozen=True)
class Pipe:
    """From now on copy raw bytes both ways; the gate is out of the data path."""


@dataclass(frozen=True)
class Close:
    """Flush earlier writes, then close both sides.

    ``allowed`` is True when the connection was authenticated and ended without a refusal.
    ``refused`` is True when the gate turned the client away (wrong or missing token, malformed
    request, header timeout): the driver counts it as a failure, which may cost the client a
    delay. The gate itself keeps no count across connections, so it stays per-connection.
    """

    reason: str
    allowed: bool
    refused: bool = False


@dataclass(frozen=True)
class RequestDone:
    """Report only (the driver has nothing to do): one HTTP request got its whole answer.

    Emitted after the last byte of the response was handed out (or, for an upgrade, the 101
    head): what the sharer is shown about the request. ``method`` and ``path`` are safe to print
    (see :mod:`safetunnel.gate.report`): the path has no query, so neither a link's token nor an
    application's secrets in a query reach a terminal or a log. ``started``/``ended`` are on the
    driver's clock (the head was complete / the response was); ``bytes_in`` is what reached the
    service, ``bytes_out`` what reached the client. ``reached_service`` is False when the gate
    answered itself (a link's 303, or 502 when the service could not be reached).

    Requests the gate refused (401, 400) are not reported: they are not the sharer's traffic,
    their method and path come from whoever lacks the token, and the connection's refusal is
    reported and audited already.
    """

    method: str
    path: str
    status: int
    started: float
    ended: float
    bytes_in: int
    bytes_out: int
    reached_service: bool = True

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


Event = NeedData | Connect | ToService | ToRemote | Pipe | Close | RequestDone


@dataclass(frozen=True)
class End:
    """Internal: a protocol handler is finished; the Gate turns this into a Close."""

    reason: str
    refused: bool
