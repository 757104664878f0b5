"""What the gate reports about each HTTP request (RequestDone): one per answered request, with a
path that has no query and nothing a terminal would act on."""

from __future__ import annotations

import pytest
from gatekit import TOKEN, Run, authed, request, response, run

from safetunnel.gate.events import RequestDone, ToRemote, ToService
from safetunnel.gate.report import MAX_PATH, shown_method, shown_path


def reports(result: Run) -> list[RequestDone]:
    return [e for e in result.events if isinstance(e, RequestDone)]


def sent_bytes(result: Run, kind: type) -> int:
    return sum(len(e.data) for e in result.events if isinstance(e, kind))


def test_a_request_is_reported_once_its_response_is_complete() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    result = run(
        [
            ("time", 1.0),
            ("remote", authed("/a/b?secret=1&x=2", body=b"12345", method="POST")),
            ("time", 1.5),
            ("service", head),
            ("time", 2.25),
            ("service", b"hello"),
        ]
    )
    [done] = reports(result)
    assert (done.method, done.path, done.status) == ("POST", "/a/b", 200)
    assert (done.started, done.ended, done.duration) == (1.0, 2.25, 1.25)
    assert done.bytes_in == sent_bytes(result, ToService)  # head without the token, and body
    assert done.bytes_out == len(head) + 5 == sent_bytes(result, ToRemote)
    assert done.reached_service


def test_nothing_is_reported_before_the_response_ends() -> None:
    result = run(
        [("remote", authed("/")), ("service", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")]
    )
    assert reports(result) == []


@pytest.mark.parametrize(
    ("method", "answer", "status"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 200),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", 304),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", 204),
    ],
)
def test_bodiless_answers_end_at_their_head(method: str, answer: bytes, status: int) -> None:
    [done] = reports(run([("remote", authed("/r", method=method)), ("service", answer)]))
    assert (done.method, done.status, done.bytes_out) == (method, status, len(answer))


def test_a_chunked_response_ends_at_its_last_chunk() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    script = [("remote", authed("/c")), ("service", head + b"5\r\nhello\r\n")]
    assert reports(run(script)) == []
    [done] = reports(run([*script, ("service", b"0\r\n\r\n")]))
    assert done.bytes_out == len(head) + len(b"5\r\nhello\r\n0\r\n\r\n")


def test_a_chunked_request_counts_what_reached_the_service() -> None:
    body = b"3\r\nabc\r\n0\r\n\r\n"
    wire = authed("/up", [("Transfer-Encoding", "chunked")], method="PUT") + body
    result = run([("remote", wire), ("service", response(b"ok"))])
    [done] = reports(result)
    assert done.bytes_in == sent_bytes(result, ToService)
    assert done.bytes_in > len(b"abc")


def test_an_informational_response_does_not_end_the_request() -> None:
    final = response(b"ok")
    result = run([("remote", authed("/")), ("service", b"HTTP/1.1 100 Continue\r\n\r\n" + final)])
    [done] = reports(result)
    assert done.status == 200 and done.bytes_out == len(b"HTTP/1.1 100 Continue\r\n\r\n") + len(
        final
    )


def test_pipelined_requests_are_reported_in_order_each_with_its_own_status() -> None:
    wire = authed("/one?a=1") + authed("/two", method="DELETE")
    result = run(
        [
            ("remote", wire),
            ("time", 1.0),
            ("service", response(b"1", "404 Not Found")),
            ("time", 3.0),
            ("service", response(b"22", "500 Internal Server Error")),
        ]
    )
    first, second = reports(result)
    assert (first.method, first.path, first.status, first.ended) == ("GET", "/one", 404, 1.0)
    assert (second.method, second.path, second.status) == ("DELETE", "/two", 500)
    # The second request waited in the gate; its time is counted from when it was let through.
    assert second.started == 1.0 and second.ended == 3.0


def test_an_upgrade_is_reported_at_the_switch() -> None:
    upgrade = authed("/ws?room=1", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    switch = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    result = run([("remote", upgrade), ("service", switch + b"\x81\x00")])
    [done] = reports(result)
    assert (done.path, done.status, done.bytes_out) == ("/ws", 101, len(switch))
    assert result.decisions[-1] == "Pipe"


@pytest.mark.parametrize(
    "wire",
    [
        request("/secret", [("X-Safetunnel-Token", "st_wrong")]),
        request("/x\x1b[2J"),
        request("/no-token-at-all"),
    ],
    ids=["wrong-token", "malformed", "no-token"],
)
def test_refused_requests_are_not_reported(wire: bytes) -> None:
    result = run([("remote", wire)])
    assert result.close.refused
    assert reports(result) == []


def test_a_second_request_without_the_token_is_not_reported_the_first_is() -> None:
    result = run([("remote", authed("/ok")), ("service", response()), ("remote", request("/no"))])
    assert [d.path for d in reports(result)] == ["/ok"]
    assert result.close.reason == "unauthorized"


def test_a_link_is_reported_as_the_gates_303_without_its_token() -> None:
    result = run([("remote", request(f"/docs/../page?safetunnel_token={TOKEN}&q=2"))])
    [done] = reports(result)
    assert (done.method, done.path, done.status) == ("GET", "/page", 303)
    assert not done.reached_service and done.bytes_in == 0
    assert done.bytes_out == sent_bytes(result, ToRemote)
    assert TOKEN not in repr(done)


def test_a_service_that_closes_mid_answer_is_reported_as_the_gates_502() -> None:
    result = run(
        [("remote", authed("/")), ("service", b"HTTP/1.1 200 OK\r\nContent-"), ("service", b"")]
    )
    [done] = reports(result)
    assert done.status == 502 and done.reached_service
    assert result.remote.startswith(b"HTTP/1.1 502 ")


def test_a_response_cut_after_its_head_keeps_the_services_status() -> None:
    result = run(
        [
            ("remote", authed("/")),
            ("service", b"HTTP/1.1 206 Partial Content\r\nContent-Length: 9\r\n\r\nab"),
            ("service", b""),
        ]
    )
    [done] = reports(result)
    assert done.status == 206 and done.bytes_out == sent_bytes(result, ToRemote)


def test_a_response_until_close_ends_at_the_services_eof() -> None:
    result = run(
        [("remote", authed("/")), ("service", b"HTTP/1.1 200 OK\r\n\r\nstream"), ("service", b"")]
    )
    [done] = reports(result)
    assert done.status == 200 and done.bytes_out == sent_bytes(result, ToRemote)


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (b"/a?b=c", "/a"),
        (b"/a#frag", "/a"),
        (b"/p/?safetunnel_token=" + TOKEN.encode(), "/p/"),
        (b"http://user:pw@example.com/x/y?z", "/x/y"),
        (b"http://example.com", "/"),
        (b"*", "*"),
        (b"example.com:443", "example.com:443"),
        (b"/\x1b[31mred\x07\x00\x7f", "/?[31mred???"),
        (b"/caf\xc3\xa9 x", "/caf???x"),
        (b"/t/" + TOKEN.encode() + b"/z", "/t/[redacted]/z"),
    ],
)
def test_shown_path(target: bytes, shown: str) -> None:
    assert shown_path(target) == shown


def test_shown_path_and_method_are_capped() -> None:
    path = shown_path(b"/" + b"a" * 5000 + b"?q")
    assert len(path) == MAX_PATH and path.endswith("...")
    assert shown_method(b"X" * 100).endswith("...") and len(shown_method(b"X" * 100)) <= 16
    assert shown_method(b"GET") == "GET"


def test_percent_encoded_controls_are_shown_encoded_never_decoded() -> None:
    [done] = reports(run([("remote", authed("/%1b%5b2J/ok?x=%1b")), ("service", response())]))
    assert done.path == "/%1b%5b2J/ok"
