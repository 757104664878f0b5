"""Where the service's response to one request ends, and nothing more.

The request side is fully parsed (authentication needs it); the response side only has to be
delimited, so that the gate knows when the next request may go through: Content-Length, chunked
(trailers included), until the service closes, no body at all (HEAD, 1xx, 204, 304, CONNECT
2xx), or a switch to another protocol (101, CONNECT 2xx). The service's bytes are relayed as they
came; the only change is a ``Connection: close`` added when the connection will not carry
another request, so the client does not send one that nobody would read. Sans-IO, no h11: this
runs for every response, and the full parse it replaced cost as much as the request side.
"""

from __future__ import annotations

import re
from enum import Enum

MAX_HEAD = 64 * 1024  # a response head (or trailer section) larger than this is refused
_MAX_CHUNK_LINE = 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")


class FramingError(ValueError):
    """The service's response cannot be delimited (malformed, or cut short)."""


class _State(Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until-close"
    DONE = "done"
    SWITCHED = "switched"


# The states under module names: reading an Enum member through its class goes through the
# metaclass, and the framer compares states several times per response.
_HEAD = _State.HEAD
_LENGTH = _State.LENGTH
_CHUNK_SIZE = _State.CHUNK_SIZE
_CHUNK_DATA = _State.CHUNK_DATA
_CHUNK_END = _State.CHUNK_END
_TRAILERS = _State.TRAILERS
_UNTIL_CLOSE = _State.UNTIL_CLOSE
_DONE = _State.DONE
_SWITCHED = _State.SWITCHED


class ResponseFramer:
    """The service's answer to one request: feed its bytes, relay what comes out.

    ``complete`` once the final response has fully arrived; ``switched`` once a 101 (or a
    CONNECT 2xx) hands the connection to another protocol; either way, ``rest`` holds the bytes
    received past that point. ``keep_alive`` says whether the service takes another request.
    """

    def __init__(self, method: bytes, *, upgrade: bool, close: bool) -> None:
        self._method = method
        self._upgrade = upgrade  # the request proposed a protocol switch (Upgrade header)
        self._close = close  # the request side ends the connection after this cycle
        self._state = _HEAD
        self._buf = bytearray()
        self._left = 0  # bytes of the current body or chunk still to come
        self._eof = False
        self.answered = False  # bytes of a response went out
        self.status = 0  # the final response's status code, once its head arrived
        self.keep_alive = False

    @property
    def complete(self) -> bool:
        return self._state is _DONE

    @property
    def switched(self) -> bool:
        return self._state is _SWITCHED

    @property
    def rest(self) -> bytes:
        """Bytes past the end of the response (or of the 101 head): not part of it."""
        return bytes(self._buf) if self._state in (_DONE, _SWITCHED) else b""

    def feed(self, data: bytes) -> list[bytes]:
        """The service's bytes (``b""``: it closed); returns the bytes for the remote client.
        Raises FramingError when the response is malformed or the service closed mid-way."""
        if not data:
            self._eof = True
        elif self._state is _LENGTH and not self._buf and len(data) <= self._left:
            self._left -= len(data)  # a large body passes without a copy
            if not self._left:
                self._state = _DONE
            return [data]
        else:
            self._buf += data
        out: list[bytes] = []
        while self._step(out):
            pass
        if self._eof and self._state not in (_DONE, _SWITCHED):
            if self._state is not _UNTIL_CLOSE:
                raise FramingError(f"the service closed during the response ({self._state.value})")
            self._state = _DONE
        return out

    def _step(self, out: list[bytes]) -> bool:
        state = self._state
        if state is _HEAD:
            return self._head(out)
        if state is _LENGTH or state is _CHUNK_DATA:
            return self._body(out)
        if state is _CHUNK_SIZE:
            return self._chunk_size(out)
        if state is _CHUNK_END:
            return self._chunk_end(out)
        if state is _TRAILERS:
            return self._trailers(out)
        if state is _UNTIL_CLOSE and self._buf:
            out.append(self._take(len(self._buf)))
        return False

    def _take(self, size: int) -> bytes:
        piece = bytes(self._buf[:size])
        del self._buf[:size]
        return piece

    # -- heads ---------------------------------------------------------------------------------

    def _head(self, out: list[bytes]) -> bool:
        match = _HEAD_END.search(self._buf, 0, MAX_HEAD + 4)
        if match is None:
            if len(self._buf) > MAX_HEAD:
                raise FramingError("response head too large")
            return False
        head = self._take(match.end())
        status, version, headers = _parse_head(head[: match.start()])
        if status < 200 and status != 101:
            out.append(head)  # informational: relayed, the final response is still to come
            return True
        self.answered, self.status = True, status
        if status == 101 or (self._method == b"CONNECT" and status < 300):
            if not (self._upgrade or self._method == b"CONNECT"):
                raise FramingError("the service switched protocols nobody asked for")
            out.append(head)
            self._state = _SWITCHED
            return False
        self._frame_body(status, headers)
        self.keep_alive = _keeps_alive(self._method, status, version, headers, self._state)
        if self._close or not self.keep_alive:
            head = _with_close(head, match.start(), headers)
        out.append(head)
        return True

    def _frame_body(self, status: int, headers: dict[bytes, list[bytes]]) -> None:
        if status in (204, 304) or self._method == b"HEAD":
            self._state = _DONE
            return
        codings = headers.get(b"transfer-encoding")
        lengths = headers.get(b"content-length")
        if codings is not None:
            if lengths is not None or [c.strip().lower() for c in codings] != [b"chunked"]:
                raise FramingError("unsupported Transfer-Encoding")
            self._state = _CHUNK_SIZE
        elif lengths is not None:
            self._left = _content_length(lengths)
            self._state = _LENGTH if self._left else _DONE
        else:
            self._state = _UNTIL_CLOSE

    # -- bodies --------------------------------------------------------------------------------

    def _body(self, out: list[bytes]) -> bool:
        if not self._buf:
            return False
        piece = self._take(min(self._left, len(self._buf)))
        out.append(piece)
        self._left -= len(piece)
        if not self._left:
            self._state = _DONE if self._state is _LENGTH else _CHUNK_END
        return True

    def _chunk_end(self, out: list[bytes]) -> bool:
        """The line end after a chunk's data."""
        start = bytes(self._buf[:2])
        if start.startswith(b"\n") or start == b"\r\n":
            out.append(self._take(1 if start.startswith(b"\n") else 2))
            self._state = _CHUNK_SIZE
            return True
        if start not in (b"", b"\r"):
            raise FramingError("chunk data not followed by a line end")
        return False

    def _chunk_size(self, out: list[bytes]) -> bool:
        match = _CHUNK_SIZE_LINE.match(self._buf)
        if match is None:
            newline = self._buf.find(b"\n", 0, _MAX_CHUNK_LINE)
            if newline >= 0 or len(self._buf) >= _MAX_CHUNK_LINE:
                raise FramingError("bad chunk size line")
            return False
        size = int(match.group(1), 16)
        out.append(self._take(match.end()))
        if size:
            self._left, self._state = size, _CHUNK_DATA
        else:
            self._state = _TRAILERS
        return True

    def _trailers(self, out: list[bytes]) -> bool:
        # The trailer section ends at the first empty line; with no trailers that is at once.
        if self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
            out.append(self._take(1 if self._buf[:1] == b"\n" else 2))
            self._state = _DONE
            return False
        match = _HEAD_END.search(self._buf, 0, MAX_HEAD + 4)
        if match is None:
            if len(self._buf) > MAX_HEAD:
                raise FramingError("trailer section too large")
            return False
        out.append(self._take(match.end()))
        self._state = _DONE
        return False


def _parse_head(head: bytes) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
    """(status, minor version, lower-cased header name -> values) of a response head."""
    lines = head.split(b"\n")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise FramingError("bad status line")
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise FramingError("bad header line")
        found = headers.setdefault(name.lower(), [])
        for part in value.split(b","):
            part = part.strip()
            if part:
                found.append(part)
    return int(status.group(2)), status.group(1), headers


def _content_length(values: list[bytes]) -> int:
    if not values or len(set(values)) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise FramingError("bad Content-Length")
    return int(values[0])


def _keeps_alive(
    method: bytes, status: int, minor: bytes, headers: dict[bytes, list[bytes]], state: _State
) -> bool:
    """Whether the service takes another request after this response."""
    connection = [token.lower() for token in headers.get(b"connection", [])]
    if minor != b"1" or b"close" in connection:
        return False
    return state is not _UNTIL_CLOSE


def _with_close(head: bytes, end: int, headers: dict[bytes, list[bytes]]) -> bytes:
    """The head announcing ``Connection: close`` (inserted before the blank line)."""
    if b"close" in [token.lower() for token in headers.get(b"connection", [])]:
        return head
    newline = b"\r\n" if head[end : end + 2] == b"\r\n" else b"\n"
    return head[:end] + newline + b"Connection: close" + head[end:]
