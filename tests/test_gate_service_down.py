"""The service cannot be opened after Connect: the gate answers, the driver only reports it."""

from __future__ import annotations

import pytest
from gatekit import TOKEN, authed, drain, make_policy, response

from safetunnel.gate.core import Gate
from safetunnel.gate.events import (
    Close,
    Connect,
    Event,
    GateError,
    Pipe,
    RequestDone,
    ToRemote,
    ToService,
)
from safetunnel.gate.responses import BAD_GATEWAY

PREAMBLE = b"SAFETUNNEL " + TOKEN.encode() + b"\n"


def until_connect(gate: Gate, data: bytes) -> list[Event]:
    """What a driver sees up to Connect, where it stops to open the service."""
    gate.receive_remote(data)
    events = []
    while not isinstance(event := gate.next_event(0.0), Connect):
        events.append(event)
    return [*events, event]


def test_http_gets_the_one_502_and_nothing_meant_for_the_service() -> None:
    gate = Gate(make_policy(), 0.0)
    until_connect(gate, authed("/", body=b"payload"))
    gate.service_unavailable()
    events: list[Event] = []
    drain(gate, 0.0, events)
    assert events == [
        ToRemote(BAD_GATEWAY),
        RequestDone("GET", "/", 502, 0.0, 0.0, 0, len(BAD_GATEWAY), reached_service=False),
        Close("service-unavailable", allowed=True, refused=False),
    ]
    assert [bytes(e.data) for e in events if isinstance(e, ToRemote)] == [BAD_GATEWAY]
    assert not any(isinstance(e, ToService) for e in events)


def test_the_502_is_a_complete_closing_http_reply() -> None:
    head, _, body = BAD_GATEWAY.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"\r\nConnection: close" in head
    assert f"\r\nContent-Length: {len(body)}".encode() in head


def test_tcp_just_closes_without_a_reply() -> None:
    gate = Gate(make_policy(), 0.0)
    until_connect(gate, PREAMBLE + b"hello")
    gate.service_unavailable()
    events: list[Event] = []
    drain(gate, 0.0, events)
    assert events == [Close("service-unavailable", allowed=True, refused=False)]


def test_before_connect_is_a_misuse() -> None:
    gate = Gate(make_policy(), 0.0)
    gate.receive_remote(b"GET / HTTP/1.1\r\n")
    with pytest.raises(GateError):
        gate.service_unavailable()


def test_after_pipe_is_a_misuse() -> None:
    gate = Gate(make_policy(), 0.0)
    gate.receive_remote(PREAMBLE + b"hello")
    events: list[Event] = []
    drain(gate, 0.0, events)
    assert isinstance(events[-1], Pipe)
    with pytest.raises(GateError):
        gate.service_unavailable()


def test_after_a_served_request_it_changes_nothing() -> None:
    gate = Gate(make_policy(), 0.0)
    until_connect(gate, authed("/"))
    events: list[Event] = []
    drain(gate, 0.0, events)
    gate.receive_service(response())
    gate.receive_remote(b"")
    drain(gate, 0.0, events)
    assert isinstance(events[-1], Close) and events[-1].reason != "service-unavailable"
    gate.service_unavailable()
    assert gate.next_event(0.0) == events[-1]
