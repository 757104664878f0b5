"""HTTP/1.x through the gate: h11 as a server toward the remote and as a client toward the service.

Each request is framed by h11 in both directions, so the gate always knows where one request ends
and the next begins and can authenticate every request on a keep-alive or pipelined connection.
Request heads are validated raw (headers.py) before h11 parses them. A fresh server-role h11
connection is used per request, because once h11 owns the bytes of a pipelined head it would parse
them without our raw checks; its unparsed trailing bytes come back to our buffer instead.
"""

from __future__ import annotations

import math
from collections import deque

import h11

from safetunnel.gate import auth
from safetunnel.gate.events import Connect, End, Event, ToRemote, ToService
from safetunnel.gate.headers import BadRequest, HeadScanner, check_head
from safetunnel.gate.policy import GatePolicy
from safetunnel.gate.responses import (
    BAD_GATEWAY,
    BAD_REQUEST,
    ENDED,
    UNAUTHORIZED,
    closing,
    coalesce,
    service_keeps_alive,
)


class HttpSession:
    """One remote HTTP connection; ``out`` collects events, ``end``/``piped`` say it is over."""

    def __init__(self, policy: GatePolicy, buf: bytearray, deadline: float, eof: bool) -> None:
        self._policy = policy
        self._cookie = b"safetunnel_" + policy.tunnel_id.encode()
        self._buf = buf
        self._scanner = HeadScanner()
        self._deadline: float | None = deadline
        self._server: h11.Connection | None = None
        self._client = h11.Connection(h11.CLIENT)
        self._remote_eof = eof
        self._service_eof = False
        self._forwarding = False
        self._answered = False
        self._method = b""
        self._now = 0.0
        self._expires_at = math.inf
        self.out: deque[Event] = deque()
        self.end: End | None = None
        self.piped = False
        self.connected = False
        self.authenticated = False
        self.requests = 0

    @property
    def deadline(self) -> float | None:
        """The head deadline while waiting for a request head, else None."""
        return self._deadline if self._server is None else None

    def receive_remote(self, data: bytes) -> None:
        """Bytes (or b"" for EOF) from the remote client."""
        if not data:
            self._remote_eof = True
        if self._server is None:
            self._buf += data
        else:
            self._server.receive_data(data)

    def receive_service(self, data: bytes) -> None:
        """Bytes (or b"" for EOF) from the local service."""
        self._service_eof = self._service_eof or not data
        self._client.receive_data(data)

    def advance(self, now: float, expires_at: float) -> None:
        """Make every decision the buffered bytes allow; ``expires_at`` bounds a link's cookie."""
        self._now, self._expires_at = now, expires_at
        progressed = True
        while progressed and self.end is None and not self.piped:
            server = self._server
            if server is None:
                progressed = self._advance_head(now)
            else:
                progressed = self._advance_remote(server) | self._advance_service(server)
                progressed = self._finish_cycle(server, now) or progressed

    def _stop(self, reason: str, refused: bool, reply: bytes = b"") -> None:
        if reply:
            self.out.append(ToRemote(reply))
        self.end = End(reason, refused)

    def _unless_answered(self, reply: bytes) -> bytes:
        # Once response bytes went out, an error reply would be spliced into them: just close.
        return b"" if self._answered else reply

    # -- request heads -------------------------------------------------------------------------

    def _advance_head(self, now: float) -> bool:
        if self._service_eof:
            # One service connection per gate: with it gone no further request can be served.
            self._stop("service-closed", refused=False)
            return False
        if self._deadline is not None and now >= self._deadline:
            # Nothing of a next request yet is a plain keep-alive expiry, not an attack.
            idle = not self._buf
            self._stop("idle" if idle else "timeout", refused=not idle)
            return False
        if not self._buf:
            if self._remote_eof:
                self._stop("remote-closed", refused=False)
            return False
        try:
            end = self._scanner.find_end(self._buf)
            if end is None:
                self._check_incomplete()
                return False
            check_head(bytes(self._buf[:end]), self._policy.max_header_bytes)
        except BadRequest:
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return False
        self._start_request()
        return True

    def _check_incomplete(self) -> None:
        if len(self._buf) > self._policy.max_header_bytes:
            raise BadRequest("header block too large")
        if self._remote_eof:
            self._stop("incomplete", refused=True)

    def _start_request(self) -> None:
        # h11's own cap must never be the one that bites: ours already counted the head.
        server = self._server = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 30)
        server.receive_data(bytes(self._buf))
        del self._buf[:]
        if self._remote_eof:
            server.receive_data(b"")
        try:
            request = server.next_event()
        except h11.ProtocolError:
            request = None
        if not isinstance(request, h11.Request):
            # The head is complete and already checked, so this is h11 finding it malformed.
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return
        self._authenticate(server, request)

    def _authenticate(self, server: h11.Connection, request: h11.Request) -> None:
        carried = auth.extract(request.headers.raw_items(), request.target, self._cookie)
        token_hash = self._policy.token_hash
        if carried.link_tokens:
            token = auth.valid_link_token(carried, token_hash)
            if token is None:
                self._stop("unauthorized", refused=True, reply=UNAUTHORIZED)
            else:
                self._answer_link(server, carried.location, token)
        elif carried.header_ok(token_hash):
            self._forward(request, carried.headers)
        else:
            self._stop("unauthorized", refused=True, reply=UNAUTHORIZED)

    def _answer_link(self, server: h11.Connection, location: bytes, token: bytes) -> None:
        max_age = self._expires_at - self._now
        headers = auth.link_reply_headers(location, self._cookie, token, max_age)
        reply = server.send(h11.Response(status_code=303, reason=b"See Other", headers=headers))
        reply += server.send(h11.EndOfMessage())
        self.out.append(ToRemote(reply))
        self.authenticated = True
        self.requests += 1
        self._answered = True

    def _forward(self, request: h11.Request, headers: auth.HeaderList) -> None:
        outgoing = h11.Request(method=request.method, target=request.target, headers=headers)
        try:
            data = self._client.send(outgoing)
        except h11.ProtocolError:
            # e.g. an HTTP/1.0 request without Host cannot be re-sent as HTTP/1.1.
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return
        if not self.connected:
            self.connected = True
            self.out.append(Connect("http"))
        self.out.append(ToService(data))
        self.authenticated = True
        self.requests += 1
        self._forwarding = True
        self._method = bytes(request.method)

    # -- bodies and responses ------------------------------------------------------------------

    def _advance_remote(self, server: h11.Connection) -> bool:
        if server.their_state is not h11.SEND_BODY:
            return False
        try:
            event = server.next_event()
        except h11.ProtocolError:
            if self._remote_eof:
                self._stop("remote-closed", refused=False)
            else:
                self._stop("bad-request", refused=True, reply=self._unless_answered(BAD_REQUEST))
            return False
        if not isinstance(event, h11.Event):
            return False  # h11 needs more data
        if self._forwarding:
            # Trailers are dropped: they could carry anything, including the token header.
            outgoing = h11.EndOfMessage() if type(event) is h11.EndOfMessage else event
            try:
                pieces = self._client.send_with_data_passthrough(outgoing)
            except h11.ProtocolError:
                self._stop("service-closed", refused=False)
                return False
            self.out.extend(ToService(piece) for piece in coalesce(pieces))
        return True

    def _advance_service(self, server: h11.Connection) -> bool:
        if not self._forwarding or self._client.their_state is h11.DONE:
            return False
        try:
            event = self._client.next_event()
            if not isinstance(event, h11.Event):
                return False  # NEED_DATA or PAUSED
            if type(event) is h11.ConnectionClosed:
                raise h11.RemoteProtocolError("service closed before answering")
            self._relay_response(server, event)
        except h11.ProtocolError:
            self._stop("service-closed", refused=False, reply=self._unless_answered(BAD_GATEWAY))
            return False
        return True

    def _relay_response(self, server: h11.Connection, event: h11.Event) -> None:
        if type(event) is h11.Response:
            self._answered = True
            if not service_keeps_alive(self._method, event):
                # This cycle is the last one the service will take, so the remote must not
                # send another request: there is only one service connection per gate.
                event = closing(event)
        elif type(event) is h11.EndOfMessage:
            event = h11.EndOfMessage()
        pieces = server.send_with_data_passthrough(event)
        self.out.extend(ToRemote(piece) for piece in coalesce(pieces))
        if server.our_state is h11.SWITCHED_PROTOCOL:
            self._switch(server)

    def _switch(self, server: h11.Connection) -> None:
        # After 101 (or a CONNECT 2xx) both h11 connections stop parsing; whatever each already
        # buffered belongs to the new protocol and must reach the other side before piping.
        from_service, _ = self._client.trailing_data
        from_remote, _ = server.trailing_data
        if from_service:
            self.out.append(ToRemote(from_service))
        if from_remote:
            self.out.append(ToService(from_remote))
        self.piped = True

    def _finish_cycle(self, server: h11.Connection, now: float) -> bool:
        if server.our_state not in ENDED or server.their_state not in ENDED:
            return False
        if server.our_state is not h11.DONE or server.their_state is not h11.DONE:
            self._stop("done", refused=False)
            return False
        trailing, closed = server.trailing_data
        try:
            if self._forwarding:
                self._client.start_next_cycle()
        except h11.ProtocolError:
            self._stop("service-closed", refused=False)
            return False
        self._buf += trailing
        self._remote_eof = self._remote_eof or closed
        self._server = None
        self._scanner.reset()
        self._deadline = now + self._policy.header_timeout
        self._forwarding = self._answered = False
        return True
