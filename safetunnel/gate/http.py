"""HTTP/1.x through the gate: h11 parses each request; the service's responses are only delimited.

Each request is framed by h11, so every request on a keep-alive or pipelined connection is
authenticated, against the recipients live at that moment. Heads are validated raw (headers.py)
first; a fresh h11 connection per request (reader.py) keeps a pipelined backlog in the gate's own
buffer. The response is relayed as the service wrote it; framing.py only finds where it ends."""

from __future__ import annotations

import math
from collections import deque

import h11

from safetunnel.gate import auth
from safetunnel.gate.admission import Link, Refuse, admit, link_reply
from safetunnel.gate.buffer import RemoteBuffer
from safetunnel.gate.cycle import request_state, response_framer
from safetunnel.gate.events import Connect, End, Event, RequestDone, ToRemote, ToService
from safetunnel.gate.forward import body_pieces, request_head
from safetunnel.gate.framing import FramingError, ResponseFramer
from safetunnel.gate.headers import BadRequest, HeadScanner, check_head
from safetunnel.gate.policy import GatePolicy, session_secret
from safetunnel.gate.reader import Framing, RequestReader
from safetunnel.gate.report import RequestMeter
from safetunnel.gate.responses import (
    BAD_GATEWAY,
    BAD_REQUEST,
    ENDED,
    SHARE_ENDED,
    coalesce,
)


class HttpSession:
    """One remote HTTP connection; ``out`` collects events, ``end``/``piped`` say it is over."""

    def __init__(
        self,
        policy: GatePolicy,
        buf: RemoteBuffer,
        deadline: float,
        eof: bool,
        bound: str | None = None,
    ) -> None:
        self._policy = policy
        # The recipient whose preamble opened the connection; its requests carry no token.
        self._bound = bound
        self._cookie = b"safetunnel_" + policy.tunnel_id.encode()
        self._buf = buf
        self._scanner = HeadScanner()
        self._deadline: float | None = deadline
        self._reader: RequestReader | None = None
        self._framer: ResponseFramer | None = None  # while a request is with the service
        self._meter = RequestMeter()  # the same request, as the sharer is told about it
        self._chunked = False  # the request in flight has a chunked body
        # Service bytes not fed to a framer yet, as they came (a list: appending stays cheap
        # whatever a service sends between requests, and a large piece is never copied).
        self._from_service: list[bytes] = []
        self._remote_eof = eof
        self._service_eof = False
        self._service_eof_fed = False
        self._answered = False
        self._now = 0.0
        self._expires_at = math.inf
        self.out: deque[Event] = deque()
        self.end: End | None = None
        self.piped = False
        self.connected = False
        self.authenticated = bound is not None
        self.requests = 0
        # Whose tokens it presented: revoking one of them closes the connection.
        self.recipients: frozenset[str] = frozenset([bound] if bound else [])

    @property
    def deadline(self) -> float | None:
        """The head deadline while waiting for a request head, else None."""
        return self._deadline if self._reader is None else None

    def receive_remote(self, data: bytes) -> None:
        """Bytes (or b"" for EOF) from the remote client."""
        if data:
            self._buf.append(data)
        else:
            self._remote_eof = True

    def receive_service(self, data: bytes) -> None:
        """Bytes (or b"" for EOF) from the local service."""
        self._service_eof = self._service_eof or not data
        if data:
            self._from_service.append(data)

    def advance(self, now: float, expires_at: float) -> None:
        """Make every decision the buffered bytes allow; from ``expires_at`` on, no new request
        head is forwarded (and a link's cookie never outlives it)."""
        self._now, self._expires_at = now, expires_at
        progressed = True
        try:
            while progressed and self.end is None and not self.piped:
                reader = self._reader
                if reader is None:
                    progressed = self._advance_head(now)
                else:
                    progressed = self._advance_remote(reader) | self._advance_service()
                    progressed = self._finish_cycle(reader, now) or progressed
        except h11.ProtocolError:
            # Each h11 call that remote input can fail is handled where it is made; this is the
            # backstop that keeps "the gate never raises on remote input" true for the others.
            self._stop("bad-request", refused=True, reply=self._unless_answered(BAD_REQUEST))

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
        elif now >= self._expires_at:
            # Not a refusal of the client: the share is over, so no guessing is being slowed.
            self._stop("expired", refused=False, reply=SHARE_ENDED if self._buf else b"")
        elif self._deadline is not None and now >= self._deadline:
            # Nothing of a next request yet is a plain keep-alive expiry, not an attack.
            idle = not self._buf
            self._stop("idle" if idle else "timeout", refused=not idle)
        elif not self._buf:
            if self._remote_eof:
                self._stop("remote-closed", refused=False)
        else:
            return self._take_head()
        return False

    def _take_head(self) -> bool:
        try:
            end = self._scanner.find_end(self._buf.data, self._buf.start)
            if end is None:
                self._check_incomplete()
                return False
            head = self._buf.take(end)
            check_head(head, self._policy.max_header_bytes)
        except BadRequest:
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return False
        self._start_request(head)
        return True

    def _check_incomplete(self) -> None:
        if len(self._buf) > self._policy.max_header_bytes:
            raise BadRequest("header block too large")
        if self._remote_eof:
            self._stop("incomplete", refused=True)

    def _start_request(self, head: bytes) -> None:
        reader = self._reader = RequestReader(self._buf, head, self._policy.max_header_bytes)
        request = reader.request()
        if request is None:
            # The head is complete and already checked, so this is h11 finding it malformed.
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return
        self._authenticate(reader, request)

    def _authenticate(self, reader: RequestReader, request: h11.Request) -> None:
        decision = admit(request, self._cookie, self._policy.recipients, self._bound)
        if isinstance(decision, Refuse):
            self._stop(decision.reason, decision.failure, decision.reply)
            return
        self.recipients |= {decision.name}
        if isinstance(decision, Link):
            self._answer_link(reader.conn, request.method, decision)
        else:
            self._forward(decision.request, decision.headers, decision.name, reader.framing)

    def _answer_link(self, server: h11.Connection, method: bytes, link: Link) -> None:
        secret = session_secret(link.token, self._policy.session_salt)
        reply = link_reply(
            server, link.location, self._cookie, secret, self._expires_at - self._now
        )
        self.out.append(ToRemote(reply))
        self.out.extend(self._meter.answered_by_gate(method, link.location, 303, self._now, reply))
        self.authenticated = True
        self.requests += 1
        self._answered = True

    def _forward(
        self, request: h11.Request, headers: auth.HeaderList, name: str, framing: Framing
    ) -> None:
        try:
            data = request_head(request, headers)
        except h11.LocalProtocolError:
            self._stop("bad-request", refused=True, reply=BAD_REQUEST)
            return
        if not self.connected:
            self.connected = True
            self.out.append(Connect("http", name))
        self.out.append(ToService(data))
        self.authenticated = True
        self.requests += 1
        self._chunked = framing.chunked
        self._framer = response_framer(request, framing)
        self._meter.start(request.method, request.target, self._now, len(data))

    # -- bodies and responses ------------------------------------------------------------------

    def _advance_remote(self, reader: RequestReader) -> bool:
        if reader.conn.their_state is not h11.SEND_BODY:
            return False
        try:
            event = reader.next_body_event(self._remote_eof)
        except h11.ProtocolError:
            if self._remote_eof:
                self._stop("remote-closed", refused=False)
            else:
                self._stop("bad-request", refused=True, reply=self._unless_answered(BAD_REQUEST))
            return False
        if event is None:
            return False
        if self._framer is not None:
            # Trailers are dropped (body_pieces): they could carry anything, the token included.
            pieces = coalesce(body_pieces(event, self._chunked))
            self.out.extend(ToService(piece) for piece in pieces)
            self._meter.sent(pieces)
        return True

    def _advance_service(self) -> bool:
        framer = self._framer
        if framer is None or framer.complete:
            return False
        received, self._from_service = self._from_service, []
        eof = self._service_eof and not self._service_eof_fed
        if not received and not eof:
            return False
        try:
            pieces = [piece for data in received for piece in framer.feed(data)]
            if eof:
                self._service_eof_fed = True
                pieces += framer.feed(b"")
        except FramingError:
            reply = self._unless_answered(BAD_GATEWAY)
            self._stop("service-closed", refused=False, reply=reply)
            status = framer.status if self._answered else 502
            self.out.extend(self._meter.done(status, self._now, extra_out=len(reply)))
            return False
        # Only once a final response began may an error no longer be answered with a 502.
        self._answered = self._answered or framer.answered
        pieces = coalesce(pieces)
        self.out.extend(ToRemote(piece) for piece in pieces)
        self._meter.relayed(pieces)
        if framer.complete or framer.switched:
            self.out.extend(self._meter.done(framer.status, self._now))
        if framer.switched and self._reader is not None:
            self._switch(self._reader.conn, framer.rest)
        return True

    def unreachable(self) -> list[RequestDone]:
        """What to report when the service could not be opened for the request in flight."""
        return self._meter.unreachable(self._now, BAD_GATEWAY)

    def _switch(self, server: h11.Connection, from_service: bytes) -> None:
        # After 101 (or a CONNECT 2xx) nothing is parsed any more; whatever each side already
        # sent past the switch, and what the gate buffered behind it, belongs to the new
        # protocol and must reach the other side before piping.
        from_remote, _ = server.trailing_data
        if from_service:
            self.out.append(ToRemote(from_service))
        for piece in (from_remote, self._buf.take_all()):
            if piece:
                self.out.append(ToService(piece))
        self.piped = True

    def _finish_cycle(self, reader: RequestReader, now: float) -> bool:
        server, framer = reader.conn, self._framer
        state = request_state(server)
        answered = framer.complete if framer is not None else server.our_state in ENDED
        if not answered or state not in ENDED:
            if answered and self._service_eof:  # answered early, service gone: our close ends it
                self._stop("done", refused=False)
            return False
        again = framer.keep_alive if framer is not None else server.our_state is h11.DONE
        if not again or state is not h11.DONE:
            self._stop("done", refused=False)
            return False
        if not reader.give_back():
            self._stop("bad-request", refused=True)  # never guess where a request starts
            return False
        if framer is not None:
            rest = framer.rest
            if rest:
                self._from_service.insert(0, rest)
        self._reader, self._framer = None, None
        self._scanner.reset()
        self._deadline = now + self._policy.header_timeout
        self._answered = False
        return True
