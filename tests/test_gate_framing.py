"""The response framer: where each of the service's responses ends, fed in any pieces."""

from __future__ import annotations

import gatekit as gk
import pytest

from safetunnel.gate.events import Close, Pipe
from safetunnel.gate.framing import MAX_HEAD, FramingError, ResponseFramer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n"
)


def framer(method: bytes = b"GET", *, upgrade: bool = False, close: bool = False) -> ResponseFramer:
    return ResponseFramer(method, upgrade=upgrade, close=close)


def feed_in_pieces(f: ResponseFramer, data: bytes, size: int, eof: bool = False) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        out += b"".join(f.feed(data[i : i + size]))
    if eof:
        out += b"".join(f.feed(b""))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
@pytest.mark.parametrize("response", [OK, CHUNKED], ids=["length", "chunked"])
def test_split_anywhere_relays_every_byte_and_ends_exactly(response: bytes, size: int) -> None:
    f = framer()
    next_one = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert feed_in_pieces(f, response + next_one, size) == response
    assert f.complete and f.keep_alive
    assert f.rest == next_one  # a pipelined second response is not part of the first


def test_not_complete_until_the_last_byte() -> None:
    f = framer()
    f.feed(OK[:-1])
    assert not f.complete
    assert f.feed(OK[-1:]) == [b"o"] and f.complete


def test_chunked_trailers_are_part_of_the_response() -> None:
    f = framer()
    assert feed_in_pieces(f, CHUNKED, 5).endswith(b"X-Other: 2\r\n\r\n")
    assert f.complete and f.rest == b""


def test_chunked_without_trailers_and_with_bare_newlines() -> None:
    body = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\nrest"
    f = framer()
    assert feed_in_pieces(f, body, 1) == body[:-4]
    assert f.complete and f.rest == b"rest"


@pytest.mark.parametrize(
    ("method", "head"),
    [
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ],
)
def test_responses_without_a_body_end_with_their_head(method: bytes, head: bytes) -> None:
    f = framer(method)
    assert f.feed(head + b"HTTP/1.1") == [head]
    assert f.complete and f.keep_alive and f.rest == b"HTTP/1.1"


def test_informational_responses_come_before_the_final_one() -> None:
    f = framer(b"POST")
    assert f.feed(b"HTTP/1.1 100 Continue\r\n\r\n") == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert not f.complete and not f.answered
    assert b"".join(f.feed(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)).endswith(OK)
    assert f.complete and f.answered


def test_101_switches_when_the_request_offered_an_upgrade() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    f = framer(upgrade=True)
    assert f.feed(head + b"\x81\x02hi") == [head]
    assert f.switched and not f.complete and f.rest == b"\x81\x02hi"


def test_101_without_an_upgrade_request_is_an_error() -> None:
    with pytest.raises(FramingError):
        framer().feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


def test_connect_2xx_switches_and_connect_refusal_does_not() -> None:
    f = framer(b"CONNECT")
    f.feed(b"HTTP/1.1 200 Connection established\r\n\r\nraw")
    assert f.switched and f.rest == b"raw"
    g = framer(b"CONNECT")
    g.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert g.complete and not g.switched


def test_a_body_until_close_ends_at_eof_and_closes_the_connection() -> None:
    f = framer()
    out = feed_in_pieces(f, b"HTTP/1.1 200 OK\r\n\r\nstream", 4, eof=True)
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream"
    assert f.complete and not f.keep_alive


@pytest.mark.parametrize(
    ("response", "close", "keep_alive"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False, False),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", False, False),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
            False,
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False, True),
    ],
)
def test_connection_close_is_announced_whenever_this_is_the_last_cycle(
    response: bytes, close: bool, keep_alive: bool
) -> None:
    f = framer(close=close)
    head = b"".join(f.feed(response))
    assert f.keep_alive is keep_alive
    last = close or not keep_alive
    connection = [line for line in head.lower().split(b"\r\n") if line.startswith(b"connection:")]
    assert any(b"close" in line for line in connection) is last
    assert head.count(b"\r\n\r\n") == 1 and head.endswith(b"\r\n\r\n")


def test_an_existing_close_is_not_repeated() -> None:
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert framer(close=True).feed(response) == [response]


def test_a_large_body_passes_without_a_copy() -> None:
    f = framer()
    f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n")
    block = b"x" * 1_000_000
    assert f.feed(block)[0] is block
    assert f.feed(block)[0] is block and f.complete


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
)
def test_malformed_responses_are_errors(response: bytes) -> None:
    with pytest.raises(FramingError):
        framer().feed(response)


@pytest.mark.parametrize(
    "partial",
    [b"", b"HTTP/1.1 200 OK\r\n", OK[:-2], CHUNKED[:60], CHUNKED[:-1]],
)
def test_the_service_closing_before_the_end_is_an_error(partial: bytes) -> None:
    f = framer()
    if partial:
        f.feed(partial)
    with pytest.raises(FramingError):
        f.feed(b"")


def test_an_endless_head_is_an_error() -> None:
    f = framer()
    f.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(FramingError):
        f.feed(b"X-Big: " + b"a" * MAX_HEAD)


def test_bytes_after_the_end_are_kept_not_relayed() -> None:
    f = framer()
    assert b"".join(f.feed(OK)) == OK
    assert f.feed(b"extra") == [] and f.rest == b"extra"


# -- through the gate ----------------------------------------------------------------------------


def test_gate_relays_pipelined_responses_each_to_its_own_request() -> None:
    # The service answers the first request twice over in one write: the second response is
    # held until a second authenticated request has gone to the service, never sent before.
    result = gk.run(
        [
            ("remote", gk.authed("/1")),
            ("service", gk.response(b"one") + gk.response(b"two")),
            ("remote", gk.request("/2")),
        ]
    )
    assert result.remote.count(b"HTTP/1.1 200 OK") == 1 and b"two" not in result.remote
    assert b"HTTP/1.1 401" in result.remote
    ok = gk.run(
        [
            ("remote", gk.authed("/1")),
            ("service", gk.response(b"one") + gk.response(b"two")),
            ("remote", gk.authed("/2")),
        ]
    )
    assert ok.remote.endswith(b"one" + gk.response(b"two")) and ok.gate.requests == 2


def test_gate_keeps_the_connection_after_a_declined_upgrade() -> None:
    offer = gk.authed("/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    result = gk.run(
        [
            ("remote", offer),
            ("service", gk.response(b"no upgrade")),
            ("remote", gk.authed("/next")),
            ("service", gk.response(b"second")),
        ]
    )
    assert not any(isinstance(e, Pipe) for e in result.events)
    assert result.remote.endswith(b"second") and result.gate.requests == 2


def test_gate_answers_502_when_the_service_response_is_malformed() -> None:
    result = gk.run([("remote", gk.authed("/")), ("service", b"NOT HTTP\r\n\r\n")])
    assert result.remote.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert result.close == Close("service-closed", allowed=True)


def test_gate_closes_without_splicing_when_the_body_is_cut_short() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    result = gk.run([("remote", gk.authed("/")), ("service", cut), ("service", b"")])
    assert result.remote == cut
    assert result.close.reason == "service-closed"


def test_gate_relays_a_head_response_and_takes_the_next_request() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    result = gk.run(
        [
            ("remote", gk.authed("/", method="HEAD")),
            ("service", head),
            ("remote", gk.authed("/b")),
            ("service", gk.response(b"body")),
        ]
    )
    assert result.remote == head + gk.response(b"body")
