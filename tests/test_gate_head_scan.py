"""HeadScanner's shortcut for a clean head gives what the line-by-line scan alone gives.

The scanner answers a head whose every CR and LF is part of a CRLF without walking it line by
line; here it is held, on generated heads fed in generated pieces, to the scan it shortcuts:
the same end, the same refusal (a bare CR or LF), at the same feed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from safetunnel.gate.headers import BadRequest, HeadScanner


class LineScan:
    """The scan without the shortcut, as headers.py had it."""

    def __init__(self) -> None:
        self._pos = 0

    def find_end(self, buf: bytearray, base: int = 0) -> int | None:
        pos = base + self._pos
        while True:
            newline = buf.find(b"\n", pos)
            if newline < 0:
                if buf.find(b"\r", pos, max(pos, len(buf) - 1)) >= 0:
                    raise BadRequest("bare CR")
                trailing_cr = len(buf) > base and buf[-1] == 0x0D
                self._pos = len(buf) - base - trailing_cr
                return None
            if newline == base or buf[newline - 1] != 0x0D:
                raise BadRequest("bare LF line ending")
            if buf.find(b"\r", pos, max(pos, newline - 1)) >= 0:
                raise BadRequest("bare CR")
            if newline - base >= 3 and buf[newline - 3 : newline - 1] == b"\r\n":
                return newline + 1 - base
            pos = newline + 1


def steps(scanner: HeadScanner | LineScan, prefix: bytes, pieces: list[bytes]) -> list[object]:
    buf = bytearray(prefix)
    seen: list[object] = []
    for piece in pieces:
        buf += piece
        try:
            end = scanner.find_end(buf, len(prefix))
        except BadRequest:
            seen.append("bad")
            break
        seen.append(end)
        if end is not None:
            break
    return seen


PARTS = st.sampled_from(
    [b"GET / HTTP/1.1", b"H: v", b"\r\n", b"\r", b"\n", b"a", b" ", b"\r\n\r\n"]
)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from([b"", b"x", b"\r\n\r\n", b"PRIOR\r\n"]),
    st.lists(st.lists(PARTS, max_size=5).map(b"".join), min_size=1, max_size=8),
)
def test_shortcut_agrees_with_the_line_scan(prefix: bytes, pieces: list[bytes]) -> None:
    assert steps(HeadScanner(), prefix, pieces) == steps(LineScan(), prefix, pieces)


def test_a_bare_cr_or_lf_before_the_end_is_still_refused() -> None:
    for head in (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", b"GET / HTTP/1.1\nA: b\r\n\r\n"):
        assert steps(HeadScanner(), b"", [head]) == ["bad"]
    assert steps(HeadScanner(), b"", [b"GET / HTTP/1.1\r\nA: b\r\n", b"\r\n"]) == [None, 24]
