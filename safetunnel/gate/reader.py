"""The request side of one HTTP cycle: h11 as a server, given one request and nothing more.

The gate's buffer may hold a long pipelined backlog. h11 gets the request's head once it has been
validated, then its body piece by piece as it asks; what it was given past the request's end goes
back to the buffer when the cycle ends. So each cycle copies what its request weighs, and h11
never holds more than one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from safetunnel.gate.buffer import RemoteBuffer

# Body pieces handed to h11 at most this large.
FEED = 16 * 1024
# A chunked body's end is only known once parsed: its pieces start small and double, so what h11
# is given past the end of a request (and gives back) never outweighs the request itself.
_FIRST_CHUNKED_PIECE = 256


@dataclass(frozen=True)
class Framing:
    """What a request's headers say about its cycle, read in one pass over them (h11's header
    view is a Sequence ABC, so every pass costs a Python call per header)."""

    length: int | None = None  # Content-Length (h11 merged duplicates, so one at most)
    chunked: bool = False  # Transfer-Encoding present (h11 accepts only chunked)
    upgrade: bool = False  # a protocol switch was proposed
    connection: tuple[bytes, ...] = ()  # the Connection header values, in order


def framing_of(request: h11.Request) -> Framing:
    """The framing facts of ``request``, its headers iterated once."""
    length: int | None = None
    chunked = upgrade = False
    connection: list[bytes] = []
    for name, value in request.headers.raw_items():
        name = name.lower()
        if name == b"content-length":
            length = int(value) if length is None else length
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"upgrade":
            upgrade = True
        elif name == b"connection":
            connection.append(value)
    return Framing(length, chunked, upgrade, tuple(connection))


class RequestReader:
    """The server-role h11 connection of one request cycle; ``conn`` also sends the response."""

    def __init__(self, buf: RemoteBuffer, head: bytes, max_header_bytes: int) -> None:
        # h11's own cap must never be the one that bites on a head the gate already checked.
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes + FEED)
        self.conn.receive_data(head)
        self._buf = buf
        self._eof_fed = False
        self._fed = 0
        self._body_left: int | None = 0  # Content-Length not yet given to h11; None: chunked
        self.framing = Framing()  # of the request, once ``request`` returned it

    def request(self) -> h11.Request | None:
        """The request of this cycle, or None when h11 finds the (checked) head malformed."""
        try:
            event = self.conn.next_event()
        except h11.ProtocolError:
            return None
        if not isinstance(event, h11.Request):
            return None
        framing = self.framing = framing_of(event)
        length = framing.length
        self._body_left = length if length is not None else None if framing.chunked else 0
        return event

    def next_body_event(self, remote_eof: bool) -> h11.Event | None:
        """The next event of the request body, feeding h11 as it asks; None until the remote
        sends more. Raises h11.ProtocolError on a malformed body."""
        event = self.conn.next_event()
        while event is h11.NEED_DATA and self._feed(remote_eof):
            event = self.conn.next_event()
        if not isinstance(event, h11.Event):
            return None
        if type(event) is h11.Data and self._body_left is not None:
            self._body_left -= len(event.data)
        return event

    def _feed(self, remote_eof: bool) -> bool:
        if self._buf:
            if self._body_left is not None:
                size = max(1, min(self._body_left, FEED))
            else:
                size = min(FEED, max(_FIRST_CHUNKED_PIECE, self._fed))
            piece = self._buf.take(size)
            self._fed += len(piece)
            self.conn.receive_data(piece)
            return True
        if remote_eof and not self._eof_fed:
            self._eof_fed = True
            self.conn.receive_data(b"")
            return True
        return False

    def give_back(self) -> bool:
        """At the cycle's end: unread what h11 was given past the request (the next request's
        start). False if that cannot be done exactly; never expected."""
        trailing, _ = self.conn.trailing_data
        return self._buf.give_back(len(trailing))
