"""Request-smuggling corpus: each head is refused with 400 before any byte reaches the service."""

from __future__ import annotations

import pytest
from gatekit import TOKEN, chunked, run

T = b"X-Safetunnel-Token: " + TOKEN.encode() + b"\r\n"
GET = b"GET / HTTP/1.1\r\nHost: h\r\n" + T
POST = b"POST / HTTP/1.1\r\nHost: h\r\n" + T

CORPUS = {
    "cl-te": POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "duplicate-cl": POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting-cl": POST + b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    "cl-list": POST + b"Content-Length: 3, 3\r\n\r\nabc",
    "te-chunked-identity": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-identity": POST + b"Transfer-Encoding: identity\r\n\r\n",
    "te-gzip-chunked": POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-twice": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "http10-te": b"POST / HTTP/1.0\r\nHost: h\r\n"
    + T
    + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": GET + b"X-App: a\r\n b\r\n\r\n",
    "obs-fold-tab": GET + b"X-App: a\r\n\tb\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: h\n" + T.replace(b"\r\n", b"\n") + b"\n",
    "bare-lf-in-block": GET + b"X-App: a\nX-B: c\r\n\r\n",
    "bare-cr": GET + b"X-App: a\rb\r\n\r\n",
    "oversized": GET + b"X-Pad: " + b"a" * 17000 + b"\r\n\r\n",
    "many-small-headers": GET + b"".join(b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n",
    "duplicate-host": GET + b"Host: other\r\n\r\n",
    "duplicate-token": GET + T + b"\r\n",
    "space-before-colon": GET + b"Content-Length : 0\r\n\r\n",
    "http2-version": b"GET / HTTP/2.0\r\nHost: h\r\n" + T + b"\r\n",
    "http11-no-host": b"GET / HTTP/1.1\r\n" + T + b"\r\n",
    "leading-blank-line": b"GET / HTTP/1.1\r\n\r\n\r\n",
    "nul-in-value": GET + b"X-App: a\x00b\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_smuggling_head_is_refused_with_400_and_nothing_reaches_the_service(name: str) -> None:
    for script in ([("remote", CORPUS[name])], chunked([("remote", CORPUS[name])], 1)):
        result = run(script)
        assert result.service == b"", name
        assert result.connects == 0
        assert result.remote.startswith(b"HTTP/1.1 400 Bad Request\r\n"), name
        assert b"Connection: close" in result.remote
        assert result.close.reason == "bad-request" and not result.close.allowed


def test_smuggled_second_request_after_a_good_one_is_refused_too() -> None:
    good = GET + b"\r\n"
    result = run(
        [
            ("remote", good + CORPUS["cl-te"]),
            ("service", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]
    )
    assert result.service.count(b"HTTP/1.1") == 1
    assert result.remote.endswith(b"Bad request.\n")


def test_header_block_limit_is_counted_by_the_gate() -> None:
    base = GET + b"X-Pad: \r\n\r\n"
    at_limit = base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (16384 - len(base)))
    assert len(at_limit) == 16384
    assert run([("remote", at_limit)]).connects == 1
    over = at_limit.replace(b"X-Pad: ", b"X-Pad: a")
    assert b"400" in run([("remote", over)]).remote


def test_endless_head_is_cut_at_the_limit_without_waiting_for_its_end() -> None:
    result = run([("remote", GET + b"X-Pad: " + b"a" * 16500)])
    assert b"400" in result.remote


def test_bad_chunk_size_in_body_closes_without_answer_after_forwarding_began() -> None:
    head = POST + b"Transfer-Encoding: chunked\r\n\r\n"
    result = run([("remote", head + b"zz\r\nabc\r\n")])
    assert result.connects == 1
    assert result.close.reason == "bad-request"
    assert result.remote.startswith(b"HTTP/1.1 400")
