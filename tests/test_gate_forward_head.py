"""The head written for the service refuses and writes exactly what a second h11.Request would.

forward.request_head checks the rewritten headers itself instead of building an h11.Request from
them; this holds it to the reference it replaced, on headers that h11 accepts and on ones it
refuses (CR, LF, NUL, bad names, Host missing or doubled, Content-Length and Transfer-Encoding
that h11 normalizes).
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safetunnel.gate import forward
from safetunnel.gate.forward import request_head


def reference(request: h11.Request, headers: list[tuple[bytes, bytes]]) -> bytes:
    """What the gate wrote before: an h11.Request validates, Host goes first in HTTP/1.1."""
    checked = h11.Request(
        method=request.method,
        target=request.target,
        headers=headers,
        http_version=request.http_version,
    )
    ordered = checked.headers.raw_items()
    if request.http_version == b"1.1":
        ordered = [i for i in ordered if i[0].lower() == b"host"] + [
            i for i in ordered if i[0].lower() != b"host"
        ]
    lines = [request.method + b" " + request.target + b" HTTP/" + request.http_version]
    lines += [name + b": " + value for name, value in ordered]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def outcome(request: h11.Request, headers: list[tuple[bytes, bytes]], fn: object) -> bytes | str:
    try:
        return fn(request, headers)  # type: ignore[operator,no-any-return]
    except h11.LocalProtocolError:
        return "refused"


def parsed(version: bytes) -> h11.Request:
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET /p?q HTTP/" + version + b"\r\nHost: h\r\n\r\n")
    event = server.next_event()
    assert isinstance(event, h11.Request)
    return event


NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"X-A",
        b"Cookie",
        b"Content-Length",
        b"transfer-encoding",
        b"Bad Name",
        b"",
        b"X\r\nY",
        b"Na:me",
        b"Accept",
    ]
)
VALUES = st.sampled_from(
    [
        b"",
        b"v",
        b"a b",
        b"a\tb",
        b" lead",
        b"trail ",
        b"x\r\ny",
        b"x\ny",
        b"x\x00",
        b"5",
        b"5, 5",
        b"5,6",
        b"chunked",
        b"Chunked",
        b"gzip",
        b"\xff\x80",
        b"a;  b=c",
    ]
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.tuples(NAMES, VALUES), max_size=6),
    st.sampled_from([b"1.0", b"1.1"]),
)
def test_request_head_matches_a_second_h11_request(
    headers: list[tuple[bytes, bytes]], version: bytes
) -> None:
    request = parsed(version)
    assert outcome(request, headers, request_head) == outcome(request, headers, reference)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-A", b"1"), (b"Host", b"h")],
        [(b"Host", b"h"), (b"Cookie", b"a=b; c=d")],
        [(b"X-A", b"bad\r\nInjected: yes"), (b"Host", b"h")],
        [(b"X-A\r\nInjected", b"yes"), (b"Host", b"h")],
        [(b"X-A", b"1")],
        [(b"Host", b"h"), (b"Host", b"h")],
    ],
)
def test_known_cases_agree(headers: list[tuple[bytes, bytes]]) -> None:
    request = parsed(b"1.1")
    result = outcome(request, headers, request_head)
    assert result == outcome(request, headers, reference)
    assert b"Injected" not in (result if isinstance(result, bytes) else b"")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-A", b"1"), (b"Host", b"h")],
        [(b"X-A", b"bad\r\nInjected: yes"), (b"Host", b"h")],
        [(b"Host", b"h"), (b"Host", b"h")],
    ],
)
def test_without_h11s_private_patterns_every_head_takes_h11s_path(
    headers: list[tuple[bytes, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An h11 release that moves the patterns costs speed, never a check."""
    monkeypatch.setattr(forward, "_FIELD_NAME", None)
    request = parsed(b"1.1")
    assert outcome(request, headers, request_head) == outcome(request, headers, reference)
