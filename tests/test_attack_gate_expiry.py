"""After the TTL nothing new reaches the service: the attack is a request sent after expiry.

With ``--ttl 5s`` eight complete authorized requests reached the service during the teardown
grace, and raw-TCP data kept flowing: the gate never looked at the expiry. Now a request head or
a preamble completed at ``now >= expires_at`` is refused, whatever the token.
"""

from __future__ import annotations

from gatekit import TOKEN, Run, authed, drain, make_policy, request, response, run

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, NeedData, ToRemote

EXPIRES = 100.0
ENDED = b"HTTP/1.1 503 Service Unavailable\r\n"


def late(data: bytes, now: float = EXPIRES) -> Run:
    """A connection whose first bytes are read at ``now`` (a driver drains on first input)."""
    result = Run(Gate(make_policy(), now - 1))
    result.gate.receive_remote(data)
    drain(result.gate, now, result.events, EXPIRES)
    return result


def test_an_authorized_request_after_expiry_gets_503_and_nothing_reaches_the_service() -> None:
    result = late(authed("/late"))
    assert result.service == b"" and result.connects == 0, result.events
    assert result.remote.startswith(ENDED)
    assert b"Connection: close" in result.remote
    assert result.close == Close("expired", allowed=False, refused=False)


def test_a_request_pipelined_behind_a_slow_response_is_refused_once_the_share_expired() -> None:
    # Both heads arrive before expiry; the second is only looked at after the first's response,
    # which comes after the expiry instant: it must not reach the service.
    result = run(
        [
            ("remote", authed("/first") + authed("/second")),
            ("time", EXPIRES + 0.5),
            ("service", response(b"first")),
        ],
        expires_at=EXPIRES,
    )
    assert result.service.count(b"GET /") == 1 and b"/second" not in result.service
    assert result.remote.startswith(b"HTTP/1.1 200 OK")
    assert ENDED in result.remote
    assert result.close.reason == "expired"


def test_a_link_after_expiry_sets_no_cookie() -> None:
    result = late(request(f"/?safetunnel_token={TOKEN}"))
    assert b"Set-Cookie" not in result.remote and result.remote.startswith(ENDED)
    assert result.close.reason == "expired"


def test_a_raw_tcp_preamble_after_expiry_is_closed_without_connecting() -> None:
    result = late(f"SAFETUNNEL {TOKEN}\nhello".encode(), now=EXPIRES + 1)
    assert result.connects == 0 and result.service == b""
    assert result.remote == b""
    assert result.close == Close("expired", allowed=False, refused=False)


def test_a_request_before_expiry_still_goes_through() -> None:
    result = late(authed("/"), now=EXPIRES - 0.001)
    assert result.connects == 1 and b"GET / " in result.service


def test_an_extended_expiry_lets_the_request_through() -> None:
    result = run(
        [("expires", EXPIRES + 60), ("time", EXPIRES + 1), ("remote", authed("/"))],
        start=EXPIRES - 1,
        expires_at=EXPIRES,
    )
    assert result.connects == 1


def test_a_connection_waiting_for_a_head_wakes_at_expiry_and_closes() -> None:
    # The pump sleeps until NeedData's deadline: it must not sleep past the expiry.
    gate = Gate(make_policy(header_timeout=10.0), 95.0)
    gate.receive_remote(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert gate.next_event(95.0, EXPIRES) == NeedData(EXPIRES)
    assert gate.current_deadline == EXPIRES
    reply = gate.next_event(EXPIRES, EXPIRES)
    assert isinstance(reply, ToRemote) and bytes(reply.data).startswith(ENDED)
    assert gate.next_event(EXPIRES, EXPIRES) == Close("expired", allowed=False, refused=False)


def test_a_silent_connection_at_expiry_is_closed_without_a_reply() -> None:
    result = run([("time", EXPIRES)], start=EXPIRES - 1, expires_at=EXPIRES)
    assert result.remote == b"" and result.close == Close("expired", allowed=False, refused=False)


def test_an_idle_keep_alive_connection_closes_at_expiry_without_a_reply() -> None:
    result = run(
        [("remote", authed("/")), ("service", response()), ("time", EXPIRES)],
        expires_at=EXPIRES,
    )
    assert result.remote.endswith(b"hello")  # no 503 appended: nothing was asked
    assert result.close.reason == "expired"
    assert result.close.allowed  # the connection did get through before the expiry
