"""Tell the raw-TCP preamble from an HTTP/1.x request by the first bytes of a connection."""

from __future__ import annotations

from typing import Literal

MAGIC = b"SAFETUNNEL "
# Longest method we wait for; real methods are far shorter, and waiting longer only helps
# scanners keep a connection open.
_MAX_METHOD = 20

Sniffed = Literal["tcp", "http", "unknown"]


def sniff(buf: bytes | bytearray) -> Sniffed | None:
    """``"tcp"``, ``"http"`` or ``"unknown"``; ``None`` while the bytes so far are ambiguous."""
    head = bytes(buf[: _MAX_METHOD + 1])
    if not head:
        return None
    if MAGIC.startswith(head[: len(MAGIC)]):
        # Checked first: "SAFETUNNEL" is also a syntactically valid HTTP method.
        return "tcp" if len(head) >= len(MAGIC) else None
    letters = _leading_upper(head)
    if letters == len(head):
        return None if letters <= _MAX_METHOD else "unknown"
    # An HTTP/1.x request line starts with an upper-case method and one space; the rest of the
    # request line is validated with the headers.
    return "http" if letters >= 1 and head[letters] == 0x20 else "unknown"


def _leading_upper(data: bytes) -> int:
    for i, byte in enumerate(data):
        if not 0x41 <= byte <= 0x5A:
            return i
    return len(data)
