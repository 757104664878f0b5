"""HTTP through the gate: token carriers, keep-alive, links, responses, upgrades, deadlines."""

from __future__ import annotations

import pytest
from gatekit import COOKIE, SESSION, TOKEN, authed, chunked, make_policy, request, response, run

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, NeedData, Pipe, ToRemote, ToService

TOKEN_B = TOKEN.encode()


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Safetunnel-Token", TOKEN)],
        [("Authorization", f"Bearer {TOKEN}")],
        [("Cookie", f"{COOKIE}={SESSION}")],
    ],
    ids=["header", "bearer", "cookie"],
)
def test_each_carrier_admits_and_is_stripped(headers: list[tuple[str, str]]) -> None:
    result = run([("remote", request("/a", headers))])
    assert result.events[1] == Connect("http", "default")
    assert result.service == b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assert TOKEN_B not in result.service
    assert result.gate.requests == 1


def test_connect_comes_once_and_before_any_service_bytes() -> None:
    result = run([("remote", authed("/1")), ("service", response()), ("remote", authed("/2"))])
    kinds = [type(e) for e in result.events]
    assert kinds.count(Connect) == 1
    assert kinds.index(Connect) < kinds.index(ToService)


def test_wrong_token_gets_401_that_echoes_nothing() -> None:
    result = run([("remote", request("/secret-path", [("X-Safetunnel-Token", "st_nope")]))])
    assert result.remote.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'WWW-Authenticate: Bearer realm="safetunnel"' in result.remote
    assert b"Connection: close" in result.remote
    assert b"secret-path" not in result.remote and b"st_nope" not in result.remote
    assert result.service == b"" and result.connects == 0
    assert result.close == Close("unauthorized", allowed=False, refused=True)


def test_keep_alive_second_request_without_token_gets_401_and_nothing_reaches_service() -> None:
    first = authed("/one")
    result = run(
        [
            ("remote", first),
            ("service", response(b"first")),
            ("remote", request("/two")),
        ]
    )
    assert result.service == first.replace(b"X-Safetunnel-Token: " + TOKEN_B + b"\r\n", b"")
    assert result.remote.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    assert b"401 Unauthorized" in result.remote
    assert result.close.reason == "unauthorized" and not result.close.allowed


def test_keep_alive_every_request_with_token_is_forwarded() -> None:
    result = run(
        [
            ("remote", authed("/1")),
            ("service", response(b"a")),
            ("remote", authed("/2")),
            ("service", response(b"b")),
        ]
    )
    assert result.service.count(b"GET /") == 2
    assert result.remote.count(b"HTTP/1.1 200 OK") == 2
    assert result.gate.requests == 2
    assert isinstance(result.final, type(None))


def test_pipelined_requests_are_each_authenticated() -> None:
    # Both arrive in one chunk; the second must not ride on the first's authorisation.
    result = run([("remote", authed("/1") + request("/2")), ("service", response())])
    assert result.service.count(b"GET") == 1 and b"/2" not in result.service
    assert b"401" in result.remote and result.close.reason == "unauthorized"


def test_pipelined_authenticated_requests_wait_for_the_previous_response() -> None:
    result = run([("remote", authed("/1") + authed("/2"))])
    assert result.service.count(b"GET") == 1
    result.gate.receive_service(response())
    events: list[object] = []
    while not isinstance(e := result.gate.next_event(0.0), NeedData):
        events.append(e)
    assert b"GET /2 " in b"".join(e.data for e in events if isinstance(e, ToService))


def test_app_bearer_and_other_cookies_are_kept() -> None:
    result = run(
        [
            (
                "remote",
                request(
                    "/",
                    [
                        ("Authorization", "Bearer xyz"),
                        ("Cookie", f"a=1; {COOKIE}={SESSION}; b=2"),
                    ],
                ),
            )
        ]
    )
    assert result.connects == 1
    assert b"Authorization: Bearer xyz\r\n" in result.service
    assert b"Cookie: a=1; b=2\r\n" in result.service
    assert TOKEN_B not in result.service


def test_app_bearer_alone_is_not_a_token() -> None:
    result = run([("remote", request("/", [("Authorization", "Bearer xyz")]))])
    assert b"401" in result.remote and result.service == b""


def test_link_answers_303_with_cookie_and_strips_only_the_parameter() -> None:
    target = f"/page?a=1&safetunnel_token={TOKEN}&b=two"
    result = run([("remote", request(target))], start=400.5, expires_at=1000.0)
    head = head_of(result.remote)
    assert head.startswith(b"HTTP/1.1 303 See Other\r\n")
    assert b"\r\nLocation: /page?a=1&b=two" in head
    cookie = f"{COOKIE}={SESSION}; HttpOnly; SameSite=Strict; Path=/; Max-Age=599"
    assert f"\r\nSet-Cookie: {cookie}".encode() in head
    assert b"\r\nReferrer-Policy: no-referrer" in head
    assert b"\r\nCache-Control: no-store" in head
    assert result.service == b"" and result.final is None


def test_link_max_age_follows_an_extended_expiry() -> None:
    result = run(
        [("expires", 3700.0), ("remote", request(f"/?safetunnel_token={TOKEN}"))], expires_at=100.0
    )
    assert b"Max-Age=3700\r\n" in result.remote
    assert b"Location: /\r\n" in result.remote


def test_link_with_bad_token_is_401() -> None:
    result = run([("remote", request("/?safetunnel_token=st_guess"))])
    assert b"401" in result.remote and result.close.reason == "unauthorized"


def test_link_redirect_never_leaves_the_origin() -> None:
    result = run([("remote", request(f"//evil.example/x?safetunnel_token={TOKEN}"))])
    assert b"Location: /evil.example/x\r\n" in result.remote


def test_cookie_from_the_link_works_on_the_next_request() -> None:
    first = run([("remote", request(f"/?safetunnel_token={TOKEN}"))])
    set_cookie = next(
        line for line in first.remote.split(b"\r\n") if line.startswith(b"Set-Cookie:")
    )
    cookie = set_cookie.split(b" ", 1)[1].split(b";")[0].decode()
    second = request("/", [("Cookie", cookie)])
    result = run([("remote", request(f"/?safetunnel_token={TOKEN}")), ("remote", second)])
    assert result.connects == 1
    assert result.service == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def test_link_request_body_is_discarded_not_forwarded() -> None:
    link = request(f"/?safetunnel_token={TOKEN}", body=b"BODY", method="POST")
    result = run([("remote", link + authed("/next"))])
    assert b"303" in result.remote
    assert b"BODY" not in result.service and b"GET /next" in result.service


def test_request_body_streams_through_content_length() -> None:
    body = b"x" * 200_000
    result = run(chunked([("remote", authed("/up", body=body, method="POST"))], 65536))
    assert result.service.endswith(b"\r\n\r\n" + body)


def test_chunked_request_is_reframed_and_trailers_dropped() -> None:
    raw = (
        b"POST /c HTTP/1.1\r\nHost: h\r\nX-Safetunnel-Token: "
        + TOKEN_B
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3\r\nabc\r\n0\r\nX-Safetunnel-Token: "
        + TOKEN_B
        + b"\r\n\r\n"
    )
    result = run([("remote", raw)])
    assert result.service.endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert TOKEN_B not in result.service


def test_read_until_close_response_is_relayed_as_is_and_connection_closed() -> None:
    # The body ends when the service closes, so the client must read until the gate closes
    # too, and must not send another request meanwhile: Connection: close says both.
    result = run(
        [
            ("remote", authed("/")),
            ("service", b"HTTP/1.1 200 OK\r\n\r\nstream"),
            ("remote", authed("/next")),
            ("service", b" more"),
            ("service", b""),
        ]
    )
    assert result.remote == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream more"
    assert b"/next" not in result.service
    assert result.close == Close("done", allowed=True)


def test_service_closing_before_answering_gets_502() -> None:
    result = run([("remote", authed("/")), ("service", b"")])
    assert result.remote.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert result.close.reason == "service-closed"


def test_service_eof_between_requests_closes() -> None:
    result = run([("remote", authed("/")), ("service", response()), ("service", b"")])
    assert result.close == Close("service-closed", allowed=True)


def test_remote_eof_after_a_complete_exchange_closes_allowed() -> None:
    result = run([("remote", authed("/")), ("service", response()), ("remote", b"")])
    assert result.close == Close("remote-closed", allowed=True)


def test_remote_half_close_still_gets_its_response() -> None:
    result = run([("remote", authed("/")), ("remote", b""), ("service", response(b"late"))])
    assert result.remote.endswith(b"late")
    assert result.close.reason == "remote-closed" and result.close.allowed


def test_connection_close_request_ends_after_response() -> None:
    result = run([("remote", authed("/", [("Connection", "close")])), ("service", response())])
    assert result.close == Close("done", allowed=True)


def test_http10_request_is_answered_then_closed() -> None:
    result = run([("remote", authed("/", version="1.0")), ("service", response(b"old"))])
    assert result.remote.endswith(b"old") and result.close.reason == "done"


def test_expect_100_continue_passes_through() -> None:
    req = authed("/u", [("Expect", "100-continue"), ("Content-Length", "3")], method="POST")
    result = run(
        [
            ("remote", req),
            ("service", b"HTTP/1.1 100 Continue\r\n\r\n"),
            ("remote", b"abc"),
            ("service", response(b"ok")),
        ]
    )
    assert result.remote.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert result.service.endswith(b"\r\n\r\nabc")


def test_101_switches_to_pipe_preserving_trailing_bytes_both_ways() -> None:
    upgrade = authed("/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    switch = (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    result = run(
        [
            ("remote", upgrade + b"\x81\x05early"),
            ("service", switch + b"\x81\x02hi"),
        ]
    )
    assert result.final == Pipe()
    assert result.remote == switch + b"\x81\x02hi"
    assert result.service.endswith(b"\r\n\r\n\x81\x05early")
    to_remote = [e for e in result.events if isinstance(e, ToRemote)]
    assert to_remote[-1].data == b"\x81\x02hi"


def test_head_deadline_is_absolute_and_timeout_counts_as_refusal() -> None:
    result = run([("remote", b"GET / HTTP/1.1\r\nHost: x\r\n"), ("time", 5.0), ("time", 10.0)])
    assert NeedData(10.0) in result.events
    assert result.close.reason == "timeout" and result.service == b""


def test_idle_keep_alive_expires_without_counting_as_failure() -> None:
    result = run(
        [
            ("remote", authed("/")),
            ("time", 3.0),
            ("service", response()),
            ("time", 12.9),
            ("time", 13.0),
        ]
    )
    assert NeedData(13.0) in result.events
    assert result.close == Close("idle", allowed=True)


def test_next_event_after_close_keeps_returning_close() -> None:
    result = run([("remote", request("/"))])
    assert result.gate.next_event(50.0) == result.close
    result.gate.receive_remote(b"ignored")
    assert result.gate.next_event(50.0) == result.close


SCRIPTS = {
    "keep-alive": [
        ("remote", authed("/1")),
        ("service", response(b"a" * 300)),
        ("remote", authed("/2", body=b"b" * 300, method="PUT")),
        ("service", response(b"wxyz", extra="Set-Cookie: x=1\r\n")),
        ("remote", request("/3")),
    ],
    "link": [
        ("remote", request(f"/p?q=1&safetunnel_token={TOKEN}")),
        ("remote", request("/p?q=1", [("Cookie", f"{COOKIE}={SESSION}")])),
        ("service", response()),
    ],
    "upgrade": [
        ("remote", authed("/ws", [("Connection", "Upgrade"), ("Upgrade", "x")])),
        ("service", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
    ],
    "smuggle": [("remote", authed("/", [("Content-Length", "1"), ("Content-Length", "1")]))],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_split_anywhere_gives_the_same_decisions_and_bytes(name: str) -> None:
    whole = run(SCRIPTS[name])
    for size in (1, 2, 7):
        split = run(chunked(SCRIPTS[name], size))
        assert split.decisions == whole.decisions
        assert split.service == whole.service
        assert split.remote == whole.remote


def test_chunked_response_split_anywhere_decodes_to_the_same_body() -> None:
    # h11 re-chunks what it relays, so chunk sizes follow delivery; the content must not.
    body = b"0123456789" * 50
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 64]), body[i : i + 64]) for i in range(0, len(body), 64)
    )
    svc = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    for size in (1, 3, 1000):
        result = run(chunked([("remote", authed("/")), ("service", svc)], size))
        assert _dechunk(result.remote.split(b"\r\n\r\n", 1)[1]) == body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def test_gate_holds_no_clock_deadline_comes_from_construction() -> None:
    gate = Gate(make_policy(header_timeout=2.5), 100.0)
    assert gate.next_event(100.0) == NeedData(102.5)


def test_other_tunnels_cookies_never_reach_the_service() -> None:
    # Browsers send every tunnel's cookie to every port of a host: another tunnel's token must be
    # dropped, not forwarded to this tunnel's service.
    other = "st_" + "Z" * 43
    result = run(
        [
            (
                "remote",
                request(
                    "/",
                    [
                        ("Cookie", f"safetunnel_st-999999={other}; a=1; {COOKIE}={SESSION}"),
                    ],
                ),
            )
        ]
    )
    assert result.connects == 1
    assert b"Cookie: a=1\r\n" in result.service
    assert other.encode() not in result.service
    assert b"safetunnel_" not in result.service and SESSION.encode() not in result.service


def test_another_tunnels_cookie_is_not_a_candidate_here() -> None:
    result = run([("remote", request("/", [("Cookie", f"safetunnel_st-999999={TOKEN}")]))])
    assert b"401" in result.remote and result.service == b""


def test_bearer_separated_by_a_tab_is_recognised_and_stripped() -> None:
    result = run([("remote", request("/", [("Authorization", f"Bearer\t{TOKEN}")]))])
    assert result.connects == 1
    assert TOKEN.encode() not in result.service
    assert b"Authorization" not in result.service


@pytest.mark.parametrize(
    "target", ["/\\evil.example/x", "\\\\evil.example/x", "/\\/evil.example/x"]
)
def test_link_redirect_with_backslashes_stays_on_the_origin(target: str) -> None:
    result = run([("remote", request(f"{target}?safetunnel_token={TOKEN}"))])
    location = next(line for line in result.remote.split(b"\r\n") if line.startswith(b"Location:"))
    assert location == b"Location: /evil.example/x"


def test_many_candidates_in_one_request_are_refused_as_one_failure() -> None:
    guesses = [("Authorization", "Bearer st_" + "A" * 43) for _ in range(5)]
    result = run([("remote", request("/", [*guesses, ("Authorization", f"Bearer {TOKEN}")]))])
    assert b"401" in result.remote
    assert result.service == b""
    assert [e for e in result.events if isinstance(e, Close)] == [
        Close("unauthorized", allowed=False, refused=True)
    ]


def test_several_link_parameters_are_not_accepted() -> None:
    target = f"/?safetunnel_token=st_guess&safetunnel_token={TOKEN}"
    result = run([("remote", request(target))])
    assert b"401" in result.remote and result.service == b""
