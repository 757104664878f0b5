"""An HTTP-only share reached with the raw preamble (what ``connect`` sends): HTTP follows it and
every request is still framed and checked, as the preamble's recipient."""

from __future__ import annotations

from gatekit import TOKEN, TUNNEL_ID, drain, request, response, run

from safetunnel import tokens
from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, Event, Pipe, ToRemote, ToService
from safetunnel.gate.policy import GatePolicy

ALICE = tokens.generate()


def http_only() -> GatePolicy:
    made = GatePolicy.for_token(TOKEN, TUNNEL_ID, protocol="http")
    made.mint("alice", ALICE)
    return made


def preamble(token: str = ALICE) -> bytes:
    return f"SAFETUNNEL {token}\n".encode()


def test_requests_after_the_preamble_pass_as_its_recipients_without_a_token() -> None:
    result = run([("remote", preamble() + request("/a")), ("service", response())], http_only())
    assert result.events[1] == Connect("http", "alice")
    assert result.service.startswith(b"GET /a HTTP/1.1\r\n")
    assert result.remote == response()
    assert result.gate.protocol == "http" and result.gate.recipients == {"alice"}
    assert ALICE.encode() not in result.service


def test_kept_alive_requests_are_each_framed_and_none_carries_the_preamble_on() -> None:
    script = [("remote", preamble() + request("/1")), ("service", response(b"one"))]
    script += [("remote", request("/2")), ("service", response(b"two"))]
    result = run(script, http_only())
    assert result.gate.requests == 2 and result.connects == 1
    assert result.service.count(b"GET /") == 2 and b"SAFETUNNEL" not in result.service
    assert not isinstance(result.final, Pipe)


def test_carriers_sent_as_well_are_stripped_and_never_answered() -> None:
    head = request(
        "/p?safetunnel_token=" + TOKEN + "&x=1",
        [("X-Safetunnel-Token", "st_" + "A" * 43), ("Cookie", "safetunnel_" + TUNNEL_ID + "=z")],
    )
    result = run([("remote", preamble() + head)], http_only())
    assert result.events[1] == Connect("http", "alice")  # no 303, no 401 for the other token
    assert result.service.startswith(b"GET /p?x=1 HTTP/1.1\r\n")
    assert b"st_" not in result.service and b"safetunnel_" not in result.service


def test_a_token_elsewhere_in_the_head_is_still_refused() -> None:
    head = request("/", [("X-Other", TOKEN)])
    result = run([("remote", preamble() + head)], http_only())
    assert result.close.reason == "bad-request" and result.service == b""
    assert result.remote.startswith(b"HTTP/1.1 400")


def test_revoking_the_recipient_refuses_its_next_request() -> None:
    shared = http_only()
    gate = Gate(shared, 0.0)
    gate.receive_remote(preamble() + request("/one"))
    first: list[Event] = []
    drain(gate, 0.0, first)
    assert Connect("http", "alice") in first
    gate.receive_service(response())
    shared.recipients.revoke("alice")
    gate.receive_remote(request("/two"))
    events: list[Event] = []
    drain(gate, 0.0, events)
    assert events[-1] == Close("revoked", allowed=True, refused=False)
    assert any(isinstance(e, ToRemote) and e.data.startswith(b"HTTP/1.1 401") for e in events)
    assert not any(isinstance(e, ToService) and b"/two" in e.data for e in events)


def test_the_recipient_is_known_before_its_first_request_so_revoking_closes_it() -> None:
    result = run([("remote", preamble())], http_only())
    assert result.gate.recipients == {"alice"} and result.connects == 0


def test_bad_or_revoked_preambles_are_silent_refusals() -> None:
    wrong = run([("remote", preamble("st_" + "B" * 43) + request())], http_only())
    assert wrong.close == Close("unauthorized", allowed=False, refused=True)
    shared = http_only()
    shared.recipients.revoke("alice")
    gone = run([("remote", preamble() + request())], shared)
    assert gone.close.reason == "revoked" and gone.close.refused is False
    assert wrong.remote == gone.remote == b"" and wrong.service == gone.service == b""


def test_the_limits_of_http_still_hold_after_the_preamble() -> None:
    smuggled = request("/", [("Content-Length", "3"), ("Transfer-Encoding", "chunked")])
    result = run([("remote", preamble() + smuggled)], http_only())
    assert result.close.reason == "bad-request" and result.service == b""
    huge = request("/", [("X-Big", "a" * 17000)])
    result = run([("remote", preamble() + huge)], http_only())
    assert result.close.reason == "bad-request" and result.service == b""


def test_the_first_request_has_a_head_deadline_of_its_own_after_the_preamble() -> None:
    result = run(
        [("time", 5.0), ("remote", preamble()), ("time", 14.0), ("remote", b"GET")], http_only()
    )
    assert result.final is None
    late = run([("remote", preamble()), ("time", 10.5), ("remote", b"GET")], http_only())
    # Nothing of a request by then: a plain idle end, as after a kept-alive response.
    assert late.close == Close("idle", allowed=True, refused=False)


def test_raw_bytes_after_the_preamble_are_no_pipe_on_an_http_share() -> None:
    result = run([("remote", preamble() + b"\x00\x01binary\r\n\r\n")], http_only())
    assert result.close.reason == "bad-request" and result.service == b""


def test_a_tcp_only_share_still_refuses_http_and_auto_still_pipes() -> None:
    tcp = GatePolicy.for_token(TOKEN, TUNNEL_ID, protocol="tcp")
    assert run([("remote", request())], tcp).close.reason == "protocol"
    auto = run([("remote", preamble(TOKEN) + b"raw")])
    assert isinstance(auto.final, Pipe) and auto.service == b"raw"
