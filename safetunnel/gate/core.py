"""The Gate: one per remote connection, fed bytes, asked for decisions. No socket, clock or thread.

Usage, h11-style::

    gate = Gate(policy, now)
    gate.receive_remote(data)            # b"" = EOF
    while not isinstance(event := gate.next_event(now, expires_at), (NeedData, Pipe, Close)):
        ...                              # Connect / ToService / ToRemote (in order), RequestDone

At ``Connect`` the driver opens the local service before asking for the next event, and calls
``service_unavailable()`` if it cannot. A refusal is only reported (``Close.refused``): how much
refusals cost, across the connections of a tunnel, is the driver's business.

The driver reads the remote only while ``wants_remote_data`` is True: a gate holding a pipelined
backlog behind a slow response says so, and the SSH window then pushes back on the client instead
of the share's memory growing.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from safetunnel.gate.buffer import RemoteBuffer
from safetunnel.gate.events import (
    Close,
    Connect,
    End,
    Event,
    GateError,
    NeedData,
    Pipe,
    ToRemote,
    ToService,
)
from safetunnel.gate.http import HttpSession
from safetunnel.gate.policy import GatePolicy
from safetunnel.gate.recipients import refusal
from safetunnel.gate.responses import BAD_GATEWAY
from safetunnel.gate.sniff import sniff
from safetunnel.gate.tcp import PreambleTooLong, parse_preamble

_Stage = Literal["sniff", "tcp", "http", "over"]


class Gate:
    """Decides, for one remote connection, what reaches the local service."""

    def __init__(self, policy: GatePolicy, now: float) -> None:
        self._policy = policy
        self._deadline = now + policy.header_timeout
        self._buf = RemoteBuffer()
        self._expires_at = math.inf
        self._queue: deque[Event] = deque()
        self._stage: _Stage = "sniff"
        self._http: HttpSession | None = None
        self._final: Pipe | Close | None = None
        self._over = False  # the final event was handed out
        self._remote_eof = False
        self._service_eof = False
        self._connected = False
        self._tcp_recipient = ""
        # (now, expires_at) of the last HTTP advance while no input arrived since: advancing
        # again with both unchanged would decide nothing (it stops only once nothing moves).
        self._settled: tuple[float, float] | None = None
        self.protocol: str | None = None

    @property
    def deadline(self) -> float:
        """When the header phase times out (monotonic), as set at construction."""
        return self._deadline

    @property
    def current_deadline(self) -> float | None:
        """The deadline NeedData would carry now (None: no deadline while waiting)."""
        if self._final is not None:
            return None
        return self._current_deadline()

    @property
    def buffered_remote(self) -> int:
        """Bytes received from the remote that the gate holds and has not passed on yet."""
        return len(self._buf)

    @property
    def wants_remote_data(self) -> bool:
        """False while the gate holds more than ``policy.max_buffered_remote`` unread remote
        bytes: the driver stops reading the remote until a ``next_event`` makes this True again
        (the service's answers let the gate consume what it holds)."""
        return len(self._buf) <= self._policy.max_buffered_remote

    @property
    def requests(self) -> int:
        """Requests that passed authentication (HTTP); 1 after a good TCP preamble."""
        if self._http is not None:
            return self._http.requests
        return 1 if self._connected else 0

    @property
    def recipients(self) -> frozenset[str]:
        """The names whose tokens this connection presented (revoking one closes it)."""
        if self._http is not None:
            return self._http.recipients
        return frozenset([self._tcp_recipient]) if self._tcp_recipient else frozenset()

    def receive_remote(self, data: bytes) -> None:
        """Feed bytes from the remote client; ``b""`` means the remote closed its side."""
        self._settled = None
        if self._check_open("remote", data, self._remote_eof):
            return
        self._remote_eof = not data
        if self._http is not None:
            self._http.receive_remote(data)
        else:
            self._buf.append(data)

    def receive_service(self, data: bytes) -> None:
        """Feed bytes from the local service; ``b""`` means the service closed its side."""
        if not self._connected and self._final is None:
            raise GateError("receive_service before Connect: the service is not open yet")
        self._settled = None
        if self._check_open("service", data, self._service_eof):
            return
        self._service_eof = not data
        if self._http is not None:
            self._http.receive_service(data)

    def _check_open(self, side: str, data: bytes, eof: bool) -> bool:
        """True when the input is to be ignored; GateError when it cannot be honoured."""
        if isinstance(self._final, Pipe):
            raise GateError("the gate is out of the data path after Pipe")
        if self._final is not None:
            return True  # closing anyway; a late read racing the close is harmless
        if eof:
            if data:
                raise GateError(f"data from the {side} after its EOF")
            return True
        return False

    def service_unavailable(self) -> None:
        """The local service could not be opened after Connect: answer 502 (HTTP) or just close
        (TCP). What was meant for the service is dropped. The connection stays "allowed": the
        client had the token, so this is no refusal. The HTTP request is reported (502)."""
        if not self._connected:
            raise GateError("service_unavailable before Connect")
        if self._over:
            if isinstance(self._final, Pipe):
                raise GateError("service_unavailable after Pipe: the service was in use")
            return  # already closed for another reason; nothing is left to answer
        self._queue.clear()
        if self._http is not None:
            self._queue.append(ToRemote(BAD_GATEWAY))
            self._queue.extend(self._http.unreachable())
        self._final = None
        self._close(End("service-unavailable", refused=False))

    def next_event(self, now: float, expires_at: float = math.inf) -> Event:
        """The next decision; call until NeedData, Pipe or Close.

        ``expires_at`` (same clock as ``now``) is when the tunnel ends: from then on no request
        head or preamble is let through (Close "expired"), and a link's cookie lives no longer
        than that. It is an argument, not policy, because extending a tunnel moves it.
        """
        self._expires_at = expires_at
        if not self._queue and self._final is None:
            self._advance(now, expires_at)
        if self._queue:
            event = self._queue.popleft()
        elif self._final is not None:
            event = self._final
        else:
            return NeedData(self._current_deadline())
        self._over = self._over or event is self._final
        return event

    def _current_deadline(self) -> float | None:
        # While waiting for a head, the expiry is a deadline too: the connection closes then.
        deadline = self._http.deadline if self._http is not None else self._deadline
        return None if deadline is None else min(deadline, self._expires_at)

    def _advance(self, now: float, expires_at: float) -> None:
        if self._stage == "sniff":
            self._sniff(now, expires_at)
        if self._stage == "tcp":
            self._advance_tcp(now, expires_at)
        if self._stage == "http" and self._http is not None:
            self._advance_http(now, expires_at)

    def _sniff(self, now: float, expires_at: float) -> None:
        kind = sniff(self._buf.peek(32))
        if now >= expires_at and kind != "http":
            # Nothing is let through once the share is over; HTTP still gets its 503 below.
            self._close(End("expired", refused=False))
        elif now >= self._deadline:
            self._close(End("timeout", refused=True))
        elif kind is None:
            if self._remote_eof:
                self._close(End("remote-closed", refused=bool(self._buf)))
        elif kind == "unknown" or not _offered(self._policy.protocol, kind):
            # Nothing is written back: the client's protocol is unknown or not on offer.
            self._close(End("protocol", refused=True))
        elif kind == "tcp":
            self._stage, self.protocol = "tcp", "tcp"
        else:
            self._stage, self.protocol = "http", "http"
            self._http = HttpSession(self._policy, self._buf, self._deadline, self._remote_eof)

    def _advance_tcp(self, now: float, expires_at: float) -> None:
        if now >= expires_at:
            self._close(End("expired", refused=False))  # a raw stream has no way to say why
            return
        if now >= self._deadline:
            self._close(End("timeout", refused=True))
            return
        try:
            preamble = parse_preamble(
                self._buf.peek(self._policy.max_preamble_bytes),
                self._policy.recipients.current(),
                self._policy.max_preamble_bytes,
                self._policy.recipients.revoked(),
            )
        except PreambleTooLong:
            self._close(End("bad-preamble", refused=True))
            return
        if preamble is None:
            if self._remote_eof:
                self._close(End("incomplete", refused=True))
        elif not preamble.valid:
            self._close(End(*refusal(preamble.revoked)))
        elif self._policy.protocol == "http":
            self._buf.take(preamble.rest_offset)
            self._bind_http(preamble.recipient or "", now)
        else:
            self._connected = True
            self._tcp_recipient = preamble.recipient or ""
            self._queue.append(Connect("tcp", self._tcp_recipient))
            self._buf.take(preamble.rest_offset)
            if self._buf:
                self._queue.append(ToService(self._buf.take_all()))
            self._pipe()

    def _bind_http(self, recipient: str, now: float) -> None:
        """An HTTP-only share opened with a good preamble: what follows is HTTP, each request
        framed and checked as the recipient's. The preamble was the connection's head, so the
        first request gets a head deadline of its own, as after a kept-alive response."""
        self._stage, self.protocol = "http", "http"
        deadline = now + self._policy.header_timeout
        self._http = HttpSession(self._policy, self._buf, deadline, self._remote_eof, recipient)

    def _advance_http(self, now: float, expires_at: float) -> None:
        session = self._http
        if session is None or self._settled == (now, expires_at):
            return  # the driver draining up to NeedData: the session already said all it could
        session.advance(now, expires_at)
        self._settled = (now, expires_at)
        self._connected = session.connected
        self._queue.extend(session.out)
        session.out.clear()
        if session.end is not None:
            self._close(session.end)
        elif session.piped:
            self._pipe()

    def _pipe(self) -> None:
        self._stage = "over"
        self._final = Pipe()
        self._queue.append(self._final)

    def _close(self, end: End) -> None:
        authenticated = self._http.authenticated if self._http is not None else self._connected
        self._buf.clear()  # nothing more will be read from it
        self._stage = "over"
        self._final = Close(end.reason, authenticated and not end.refused, end.refused)
        self._queue.append(self._final)


def _offered(protocol: str, kind: str) -> bool:
    """Whether a share of ``protocol`` takes a connection that starts as ``kind``.

    An HTTP-only share also takes the preamble, because HTTP follows it and is still framed and
    checked request by request (what ``connect`` sends); a raw-TCP share never takes HTTP.
    """
    return protocol in ("auto", kind) or (protocol, kind) == ("http", "tcp")
