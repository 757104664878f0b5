"""Hypothesis properties: no token, no service; no token in service bytes; only GateError.

HTTP/1.0 is generated as well as HTTP/1.1: its rules differ (no Host needed, no chunked body, no
keep-alive by default), and a gate that raised on one lost the connection without a reply.
"""

from __future__ import annotations

import itertools
import math

from gatekit import COOKIE, SESSION, TOKEN, Run, make_policy, request, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Connect, GateError, ToService

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Byte soup biased toward HTTP and preamble syntax, so the fuzzer reaches deep states.
FRAGMENTS = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.0\r\n",
        b"POST /f HTTP/1.0\r\n",
        b"Connection: keep-alive\r\n",
        b"POST /x?safetunnel_token=st_AAAA HTTP/1.1\r\n",
        b"Host: h\r\n",
        b"X-Safetunnel-Token: st_guess\r\n",
        b"Authorization: Bearer st_zz\r\n",
        f"Cookie: {COOKIE}=st_nope; a=b\r\n".encode(),
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"\n",
        b"0\r\n\r\n",
        b"SAFETUNNEL ",
        b"st_",
        b"Upgrade: websocket\r\nConnection: upgrade\r\n",
        b"HTTP/1.1 101 Switching\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
    ]
)
SOUP = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=12).map(b"".join)
# The never-raises property may also see the real token: reaching deep states needs it.
FRAGMENTS_WITH_TOKEN = st.one_of(FRAGMENTS, st.just(f"X-Safetunnel-Token: {TOKEN}\r\n".encode()))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@FAST
@given(data=SOUP, cuts=st.lists(st.integers(min_value=0), max_size=6), eof=st.booleans())
def test_without_the_token_nothing_reaches_the_service(
    data: bytes, cuts: list[int], eof: bool
) -> None:
    pieces = [("remote", piece) for piece in _split(data, cuts)]
    result = run([*pieces, *([("remote", b"")] if eof else []), ("time", 11.0)])
    assert not any(isinstance(e, (Connect, ToService)) for e in result.events)
    assert result.final is not None


PLACEMENTS = {
    "header": lambda t: request("/p", [("X-Safetunnel-Token", t)]),
    "bearer": lambda t: request("/p", [("Authorization", f"Bearer {t}")]),
    "cookie": lambda t: request("/p", [("Cookie", f"x=1; {COOKIE}={t}; y=2")]),
    "session": lambda t: request("/p", [("Cookie", f"x=1; {COOKIE}={SESSION}; y=2")]),
    "query": lambda t: request(f"/p?a=1&safetunnel_token={t}"),
    "header-1.0": lambda t: f"GET /p HTTP/1.0\r\nX-Safetunnel-Token: {t}\r\n\r\n".encode(),
    "session-1.0": lambda t: request("/p", [("Cookie", f"{COOKIE}={SESSION}")], version="1.0"),
    "query-1.0": lambda t: request(f"/p?safetunnel_token={t}", version="1.0"),
    "preamble": lambda t: f"SAFETUNNEL {t}\n".encode(),
}


@FAST
@given(
    place=st.lists(st.sampled_from(sorted(PLACEMENTS)), min_size=1, max_size=4),
    body=st.binary(max_size=64).filter(lambda b: TOKEN.encode() not in b),
    cuts=st.lists(st.integers(min_value=0), max_size=5),
)
def test_the_token_never_appears_in_service_bytes(
    place: list[str], body: bytes, cuts: list[int]
) -> None:
    # Several requests on one connection, each carrying the token somewhere. After a preamble
    # the rest is the client's own raw payload, so a preamble stands alone with ``body``.
    if "preamble" in place:
        place = ["preamble"]
    data = b"".join(PLACEMENTS[p](TOKEN) for p in place) + body
    script = [("remote", piece) for piece in _split(data, cuts)]
    result = _run_answering(script)
    assert TOKEN.encode() not in result.service
    assert SESSION.encode() not in result.service


def _run_answering(script: list[tuple[str, bytes]]) -> Run:
    """Like run(), but answers every forwarded request so keep-alive cycles continue."""
    result = run(script)
    if result.final is None and result.connects:
        result = run([*script, *[("service", b"HTTP/1.1 204 No Content\r\n\r\n")] * 6])
    return result


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("remote"), st.one_of(FRAGMENTS_WITH_TOKEN, st.binary(max_size=30))),
        st.tuples(st.just("service"), st.one_of(FRAGMENTS_WITH_TOKEN, st.binary(max_size=30))),
        st.tuples(st.just("next"), st.floats(min_value=0, max_value=30)),
        st.tuples(st.just("expire"), st.floats(min_value=0, max_value=30)),
    ),
    max_size=25,
)


@FAST
@given(
    prefix=st.sampled_from(
        [
            b"",
            request("/", [("X-Safetunnel-Token", TOKEN)]),
            f"GET / HTTP/1.0\r\nX-Safetunnel-Token: {TOKEN}\r\n\r\n".encode(),
            request("/", [("Cookie", f"{COOKIE}={SESSION}")], version="1.0"),
            f"SAFETUNNEL {TOKEN}\n".encode(),
        ]
    ),
    actions=ACTIONS,
)
def test_the_gate_never_raises_anything_but_gate_error(
    prefix: bytes, actions: list[tuple[str, bytes | float]]
) -> None:
    gate = Gate(make_policy(), 0.0)
    now, expires_at = 0.0, math.inf
    if prefix:
        gate.receive_remote(prefix)
    for kind, value in actions:
        try:
            if kind == "remote":
                assert isinstance(value, bytes)
                gate.receive_remote(value)
            elif kind == "service":
                assert isinstance(value, bytes)
                gate.receive_service(value)
            elif kind == "expire":
                assert isinstance(value, float)
                expires_at = value
            else:
                assert isinstance(value, float)
                now = max(now, value)
                for _ in range(50):
                    gate.next_event(now, expires_at)
        except GateError:
            pass
