"""Sniffing and the raw-TCP preamble."""

from __future__ import annotations

import pytest
from gatekit import TOKEN, chunked, make_policy, request, run

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, GateError, NeedData, Pipe, ToService
from safetunnel.gate.sniff import sniff

PREAMBLE = b"SAFETUNNEL " + TOKEN.encode() + b"\n"


def test_good_preamble_connects_then_pipes_with_trailing_bytes() -> None:
    result = run([("remote", PREAMBLE + b"EHLO x\r\n\x00\xff")])
    assert [type(e) for e in result.events[1:]] == [Connect, ToService, Pipe]
    assert result.service == b"EHLO x\r\n\x00\xff"
    assert result.gate.protocol == "tcp"


def test_good_preamble_without_trailing_bytes_emits_no_empty_write() -> None:
    result = run([("remote", PREAMBLE)])
    assert result.decisions == ["Connect", "Pipe"]


def test_connect_waits_for_the_token_so_server_first_protocols_keep_their_greeting() -> None:
    gate = Gate(make_policy(), 0.0)
    gate.receive_remote(PREAMBLE[:-1])
    assert gate.next_event(0.0) == NeedData(10.0)
    gate.receive_remote(b"\n")
    assert gate.next_event(0.0) == Connect("tcp", "default")


def test_crlf_preamble_is_tolerated() -> None:
    result = run([("remote", PREAMBLE[:-1] + b"\r\nrest")])
    assert result.service == b"rest"


@pytest.mark.parametrize(
    "data",
    [
        b"SAFETUNNEL st_wrong\nhello",
        b"SAFETUNNEL " + TOKEN.encode() + b"x\nhello",
        b"SAFETUNNEL  " + TOKEN.encode() + b"\nhello",
        b"safetunnel " + TOKEN.encode() + b"\nhello",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_bad_preamble_or_unknown_protocol_is_a_silent_refusal(data: bytes) -> None:
    result = run([("remote", data)])
    assert result.remote == b"" and result.service == b"" and result.connects == 0
    assert result.close.allowed is False


def test_preamble_longer_than_limit_is_refused_before_its_newline() -> None:
    result = run([("remote", b"SAFETUNNEL " + b"A" * 245)])
    assert result.close.reason == "bad-preamble"
    short = run([("remote", b"SAFETUNNEL " + b"A" * 200)])
    assert short.final is None


def test_preamble_deadline_is_absolute() -> None:
    result = run([("remote", b"SAFETUNNEL st_"), ("time", 9.99), ("time", 10.0)])
    assert result.events[-2] == NeedData(10.0)
    assert result.close.reason == "timeout"
    assert result.connects == 0


def test_protocol_policy_refuses_the_other_form() -> None:
    # An HTTP-only share takes the preamble only as the start of HTTP: never as a raw pipe.
    http_only = run([("remote", PREAMBLE + b"\x00raw\r\n\r\n")], make_policy(protocol="http"))
    assert http_only.close.reason == "bad-request" and http_only.service == b""
    http_on_tcp = run([("remote", request())], make_policy(protocol="tcp"))
    assert http_on_tcp.close.reason == "protocol" and http_on_tcp.remote == b""
    assert run([("remote", PREAMBLE)], make_policy(protocol="tcp")).final == Pipe()


@pytest.mark.parametrize("cut", range(1, len(PREAMBLE) + 7))
def test_preamble_split_anywhere_loses_and_duplicates_nothing(cut: int) -> None:
    data = PREAMBLE + b"payload"
    gate = Gate(make_policy(), 0.0)
    events = []
    for piece in (data[:cut], data[cut:]):
        if events and isinstance(events[-1], Pipe):
            # After Pipe the pump copies raw bytes itself.
            events.append(ToService(piece))
            continue
        gate.receive_remote(piece)
        while not isinstance(event := gate.next_event(0.0), NeedData | Pipe | Close):
            events.append(event)
        events.append(event)
    assert sum(isinstance(e, Connect) for e in events) == 1
    assert b"".join(e.data for e in events if isinstance(e, ToService)) == b"payload"


def test_preamble_one_byte_at_a_time_connects_exactly_at_the_newline() -> None:
    result = run(chunked([("remote", PREAMBLE + b"payload")], 1))
    assert result.decisions == ["Connect", "Pipe"]


def test_eof_before_any_byte_is_not_a_failure() -> None:
    result = run([("remote", b"")])
    assert result.close == Close("remote-closed", allowed=False, refused=False)


def test_gate_is_out_of_the_data_path_after_pipe() -> None:
    result = run([("remote", PREAMBLE)])
    with pytest.raises(GateError):
        result.gate.receive_remote(b"more")
    with pytest.raises(GateError):
        result.gate.receive_service(b"more")
    assert result.gate.next_event(99.0) == Pipe()


def test_service_bytes_before_connect_are_api_misuse() -> None:
    gate = Gate(make_policy(), 0.0)
    with pytest.raises(GateError):
        gate.receive_service(b"220 hello\r\n")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"SAFE", None),
        (b"SAFETUNNEL ", "tcp"),
        (b"GE", None),
        (b"GET / HTTP/1.1", "http"),
        (b"DELETE /x", "http"),
        (b"get / HTTP/1.1", "unknown"),
        (b" GET", "unknown"),
        (b"A" * 21, "unknown"),
        (b"\r\n", "unknown"),
    ],
)
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected
