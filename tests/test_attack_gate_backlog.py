"""A pipelined backlog behind one slow response: the gate holds a bounded amount, copies it once.

The attack (needs a token): 1 GiB pipelined behind one slow request grew the share linearly and
never shrank, and every request cycle copied the whole backlog (a 16 MiB backlog cost 46 s of
CPU). The gate now says when it wants remote bytes (``wants_remote_data``); a driver that obeys
it never makes the gate hold more than ``max_buffered_remote`` plus one read, and the bytes the
gate hands to its HTTP parser add up to the backlog, not to the backlog times the requests.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import h11
import pytest
from gatekit import authed, make_policy, response
from hypothesis import given, settings
from hypothesis import strategies as st

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Event, NeedData, Pipe, ToRemote, ToService
from safetunnel.gate.policy import GatePolicy

READ = 32 * 1024
LIMIT = 64 * 1024


class ParserFeed:
    """Counts the bytes the gate gives h11 as a server (what the remote sent, re-fed per cycle)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fed = 0
        real: Callable[[h11.Connection, bytes], None] = h11.Connection.receive_data

        def counting(conn: h11.Connection, data: bytes) -> None:
            if conn.our_role is h11.SERVER:
                self.fed += len(data)
            real(conn, data)

        monkeypatch.setattr(h11.Connection, "receive_data", counting)


def drive(gate: Gate, backlog: bytes, answers: int, answer: bytes) -> tuple[int, int, bytes]:
    """A driver that obeys ``wants_remote_data``; the service answers only when the gate stops
    reading (or has read everything). Returns (most bytes held, responses, service bytes)."""
    offset, held, relayed, service = 0, 0, 0, bytearray()

    def settle() -> Event:
        nonlocal relayed
        while True:
            event = gate.next_event(0.0)
            if isinstance(event, ToService):
                service.extend(event.data)
            elif isinstance(event, ToRemote):
                relayed += bytes(event.data).count(b"HTTP/1.1 200")
            if isinstance(event, (NeedData, Pipe, Close)):
                return event

    settle()
    for _ in range(answers):
        while offset < len(backlog) and gate.wants_remote_data:
            gate.receive_remote(backlog[offset : offset + READ])
            offset += READ
            held = max(held, gate.buffered_remote)
            assert not isinstance(settle(), Close)
        gate.receive_service(answer)
        assert not isinstance(settle(), Close)
        held = max(held, gate.buffered_remote)
    return held, relayed, bytes(service)


@pytest.mark.parametrize("body", [0, 700], ids=["get", "post"])
def test_a_pipelined_backlog_is_held_bounded_and_parsed_once(
    monkeypatch: pytest.MonkeyPatch, body: int
) -> None:
    count = 4000
    one = authed("/r", body=b"b" * body, method="POST") if body else authed("/r")
    backlog = one * count
    feed = ParserFeed(monkeypatch)
    gate = Gate(make_policy(max_buffered_remote=LIMIT), 0.0)
    started = time.process_time()
    held, relayed, service = drive(gate, backlog, count, response(b"ok"))
    cpu = time.process_time() - started
    figures = (
        f"{len(backlog)} bytes in {count} requests: held at most {held} bytes, "
        f"parser fed {feed.fed} bytes, {cpu:.2f} s CPU"
    )
    assert relayed == count, figures
    assert service.count(b"POST /r" if body else b"GET /r") == count, figures
    assert held <= LIMIT + READ, figures
    assert feed.fed <= 2 * len(backlog), figures


def test_wants_remote_data_turns_false_past_the_limit_and_back_once_answered() -> None:
    gate = Gate(make_policy(max_buffered_remote=LIMIT), 0.0)
    gate.receive_remote(authed("/1") + authed("/n") * (LIMIT // len(authed("/n")) + 1))
    while not isinstance(gate.next_event(0.0), NeedData):
        pass
    assert not gate.wants_remote_data, gate.buffered_remote
    # Only the service can make progress now; its answers free the buffer request by request.
    for _ in range(LIMIT):
        if gate.wants_remote_data:
            break
        gate.receive_service(response())
        while not isinstance(gate.next_event(0.0), NeedData):
            pass
    assert gate.wants_remote_data and gate.buffered_remote <= LIMIT


def test_a_large_chunked_upload_streams_through_a_bounded_gate() -> None:
    size = 1 << 20
    piece = b"%x\r\n%s\r\n" % (4096, b"z" * 4096)
    head = authed("/up", [("Transfer-Encoding", "chunked")], method="POST")
    stream = head + piece * (size // 4096) + b"0\r\n\r\n"
    gate = Gate(make_policy(max_buffered_remote=LIMIT), 0.0)
    held, relayed, service = drive(gate, stream, 1, response(b"done"))
    assert relayed == 1
    assert service.count(b"z") == size
    assert held <= LIMIT + READ


def test_the_limit_cannot_be_below_one_request_head() -> None:
    with pytest.raises(ValueError, match="max_buffered_remote"):
        make_policy(max_buffered_remote=1024)
    assert GatePolicy.__dataclass_fields__["max_buffered_remote"].default == 64 * 1024


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=40000), max_size=8),
)
def test_pipelined_chunked_bodies_are_split_exactly_where_they_end(
    sizes: list[int], cuts: list[int]
) -> None:
    # The gate hands h11 more of a chunked body than the request may hold and takes the rest
    # back: the next request must start exactly where the last one ended, however bytes arrive.
    head = authed("/c", [("Transfer-Encoding", "chunked")], method="POST")
    bodies = [b"%x\r\n%s\r\n0\r\n\r\n" % (n, b"q" * n) for n in sizes]
    stream = b"".join(head + body for body in bodies) + authed("/last")
    points = sorted({0, len(stream), *(c % len(stream) for c in cuts)})
    gate = Gate(make_policy(), 0.0)
    service = bytearray()
    for a, b in itertools.pairwise(points):
        gate.receive_remote(stream[a:b])
        while not isinstance(event := gate.next_event(0.0), NeedData):
            assert not isinstance(event, (Close, Pipe)), event
            if isinstance(event, ToService):
                service.extend(event.data)
    for _ in range(len(sizes) + 1):
        gate.receive_service(response())
        while not isinstance(event := gate.next_event(0.0), NeedData):
            assert not isinstance(event, (Close, Pipe)), event
            if isinstance(event, ToService):
                service.extend(event.data)
    assert service.count(b"POST /c") == len(sizes) and service.endswith(
        b"GET /last HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert service.count(b"q") == sum(sizes)
