"""HTTP/1.0 through the gate: it never raises on one, and forwards it as HTTP/1.0.

The attack: ``GET / HTTP/1.0`` with a valid token and no Host made the gate raise
(``LocalProtocolError``: h11 cannot send an HTTP/1.1 request without Host), so the connection
dropped with no reply; and every HTTP/1.0 request reached the service re-labelled HTTP/1.1.
"""

from __future__ import annotations

from gatekit import TOKEN, response, run

T = b"X-Safetunnel-Token: " + TOKEN.encode() + b"\r\n"


def test_http10_without_host_is_forwarded_as_http10_without_raising() -> None:
    result = run([("remote", b"GET /old HTTP/1.0\r\n" + T + b"\r\n"), ("service", response())])
    assert result.connects == 1, result.events
    assert result.service == b"GET /old HTTP/1.0\r\n\r\n"
    assert result.remote.endswith(b"hello")
    assert result.close.reason == "done" and result.close.allowed


def test_http10_keeps_its_headers_body_and_version() -> None:
    raw = (
        b"POST /form HTTP/1.0\r\nHost: h\r\nUser-Agent: old/1\r\n"
        + T
        + b"Content-Length: 5\r\n\r\nhello"
    )
    result = run([("remote", raw), ("service", b"HTTP/1.0 200 OK\r\n\r\nbye"), ("service", b"")])
    assert result.service == (
        b"POST /form HTTP/1.0\r\nHost: h\r\nUser-Agent: old/1\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert result.remote.endswith(b"bye")
    assert result.close.allowed


def test_http10_without_host_and_without_token_is_a_plain_401() -> None:
    result = run([("remote", b"GET / HTTP/1.0\r\n\r\n")])
    assert result.remote.startswith(b"HTTP/1.1 401") and result.service == b""


def test_http10_split_byte_by_byte_gives_the_same_bytes() -> None:
    raw = b"GET /a HTTP/1.0\r\nAccept: */*\r\n" + T + b"\r\n"
    whole = run([("remote", raw), ("service", response())])
    split = run([*[("remote", raw[i : i + 1]) for i in range(len(raw))], ("service", response())])
    assert split.service == whole.service == b"GET /a HTTP/1.0\r\nAccept: */*\r\n\r\n"
    assert split.remote == whole.remote
