"""Raw validation of an HTTP request head, done by the gate itself before h11 sees it.

h11 is deliberately lenient about some request-smuggling vectors (it accepts bare LF line ends,
merges duplicate identical Content-Length headers, ...), and its size cap counts its own buffer,
not the header block. A reverse proxy must be strict instead, so every rule below answers 400.
"""

from __future__ import annotations

_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_MUST_BE_UNIQUE = (b"content-length", b"host", b"x-safetunnel-token", b"transfer-encoding")


class BadRequest(Exception):
    """The head breaks a framing rule; the reason is for logs and never echoes the input."""


class HeadScanner:
    """Finds the end of a header block incrementally, so a trickled head is scanned once."""

    def __init__(self) -> None:
        self._pos = 0

    def reset(self) -> None:
        """Start over for a new head."""
        self._pos = 0

    def find_end(self, buf: bytearray, base: int = 0) -> int | None:
        """Length of the head starting at ``buf[base]`` (up to ``CRLF CRLF``), or None while
        incomplete; raises BadRequest on a bare LF or CR. ``base`` is where the head starts, so
        a large buffer is never sliced to scan a small head."""
        pos = base + self._pos
        clean = _clean_end(buf, base, pos)
        if clean is not None:
            return clean
        while True:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                # A CR is only legal right before LF; a trailing CR may still get its LF.
                _check_no_bare_cr(buf, pos, len(buf) - 1)
                trailing_cr = len(buf) > base and buf[-1] == 0x0D
                self._pos = len(buf) - base - trailing_cr
                return None
            if newline == base or buf[newline - 1] != 0x0D:
                raise BadRequest("bare LF line ending")
            _check_no_bare_cr(buf, pos, newline - 1)
            if newline - base >= 3 and buf[newline - 3 : newline - 1] == b"\r\n":
                return newline + 1 - base
            pos = newline + 1


def _clean_end(buf: bytearray, base: int, pos: int) -> int | None:
    """The head's length when, from ``pos`` to its first blank line, every CR and every LF is
    part of a CRLF: the line-by-line scan then finds that same end and no bare CR or LF, so it
    is spared its calls per line. None leaves everything to that scan.

    An end whose CRLF CRLF starts before ``pos`` (at most 3 bytes: the scan resumes after the
    last LF it saw) is found by the scan's look-back, so the search starts there too."""
    found = buf.find(b"\r\n\r\n", max(base, pos - 3))
    if found < 0:
        return None
    end = found + 4
    pairs = buf.count(b"\r\n", pos, end)
    if buf.count(b"\n", pos, end) != pairs or buf.count(b"\r", pos, end) != pairs:
        return None
    return end - base


def _check_no_bare_cr(buf: bytearray, start: int, end: int) -> None:
    if buf.find(b"\r", start, max(start, end)) >= 0:
        raise BadRequest("bare CR")


def check_head(head: bytes, max_bytes: int) -> None:
    """Validate a complete head (request line + headers + blank line); raise BadRequest."""
    if len(head) > max_bytes:
        raise BadRequest("header block too large")
    lines = head[:-4].split(b"\r\n")
    version = _request_version(lines[0])
    values: dict[bytes, bytes] = {}
    repeated: set[bytes] = set()  # a plain set: a Counter costs a Python call per new name
    for line in lines[1:]:
        name, value = _split_field(line)
        if name in values:
            repeated.add(name)
        values[name] = value
    for name in _MUST_BE_UNIQUE:
        if name in repeated:
            raise BadRequest(f"duplicate {name.decode()}")
    if b"transfer-encoding" in values:
        _check_transfer_encoding(values[b"transfer-encoding"], version, b"content-length" in values)
    if b"content-length" in values and not values[b"content-length"].isdigit():
        raise BadRequest("invalid content-length")


def _request_version(line: bytes) -> bytes:
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest("malformed request line")
    if parts[2] not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise BadRequest("unsupported HTTP version")
    return parts[2]


def _split_field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise BadRequest("obs-fold")
    name, colon, value = line.partition(b":")
    # No whitespace before the colon: RFC 9112 makes that a 400 precisely because of smuggling.
    if not colon or not name or not _TCHARS.issuperset(name):
        raise BadRequest("malformed header line")
    return name.lower(), value.strip(b" \t")


def _check_transfer_encoding(value: bytes, version: bytes, has_length: bool) -> None:
    if has_length:
        raise BadRequest("content-length with transfer-encoding")
    if version == b"HTTP/1.0":
        raise BadRequest("transfer-encoding in HTTP/1.0")
    # Exactly one coding, chunked: anything else ("chunked, identity", "gzip, chunked") is a
    # classic desync between a proxy and the application behind it.
    if value.lower() != b"chunked":
        raise BadRequest("unsupported transfer-encoding")
