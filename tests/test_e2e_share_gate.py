"""End to end: the gate in front of a real shared service, through OpenSSH sshd and through the
built-in gateway. The services record every byte they receive, so "the service saw nothing" and
"the token never reached the service" are checked on what actually arrived."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from e2e import (
    E2E,
    ShareProcess,
    closed_by_peer,
    connect,
    http_get,
    read_response,
    recv_all,
    request_bytes,
)
from services import echo, greeting_echo, http_keepalive
from sshd import SSHD

pytestmark = pytest.mark.sshd


def stop_with_sigterm(proc: ShareProcess) -> dict[str, Any]:
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr
    stopped = proc.next_event("stopped", 5)
    assert stopped["reason"] == "signal"
    return stopped


def test_no_token_or_wrong_token_gets_401_and_the_service_sees_nothing(
    e2e: E2E, via: SSHD | None
) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, via=via)
    started = e2e.started(proc)
    port = started["remote_port"]
    assert started["remote_bind"] == "127.0.0.1"
    probed = service.connections  # pre-flight's connect-and-close probe

    bare = http_get(port, "/secret-path")
    assert bare.status == 401
    assert bare.header("www-authenticate") == 'Bearer realm="safetunnel"'
    wrong_token = "st_" + "A" * 43
    for headers in (
        {"X-Safetunnel-Token": wrong_token},
        {"Authorization": f"Bearer {wrong_token}"},
        {"Cookie": f"safetunnel_{started['id']}={wrong_token}"},
    ):
        refused = http_get(port, "/secret-path", headers)
        assert refused.status == 401, headers
        assert wrong_token.encode() not in refused.raw  # never echoes input
    link = http_get(port, f"/secret-path?safetunnel_token={wrong_token}")
    assert link.status == 401
    with connect(port) as sock:  # raw TCP with a wrong preamble: closed, nothing written back
        sock.sendall(f"SAFETUNNEL {wrong_token}\nhello".encode())
        assert recv_all(sock) == b""

    assert service.connections == probed
    assert bytes(service.received) == b""
    stop_with_sigterm(proc)


def test_every_token_carrier_works_and_the_token_never_reaches_the_service(
    e2e: E2E, via: SSHD | None
) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, via=via)
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    assert token.startswith("st_") and len(token) == 46
    assert started["url"] == f"http://127.0.0.1:{port}/?safetunnel_token={token}"

    header = http_get(port, "/by-header", {"X-Safetunnel-Token": token})
    assert (header.status, header.body) == (200, b"hello /by-header")
    bearer = http_get(port, "/by-bearer", {"Authorization": f"Bearer {token}"})
    assert (bearer.status, bearer.body) == (200, b"hello /by-bearer")

    link = http_get(port, f"/by-link?x=1&safetunnel_token={token}")
    assert link.status == 303
    assert link.header("location") == "/by-link?x=1"
    assert link.header("referrer-policy") == "no-referrer"
    assert link.header("cache-control") == "no-store"
    set_cookie = link.header("set-cookie") or ""
    cookie_pair = set_cookie.split(";")[0]
    name, session = cookie_pair.split("=", 1)
    assert name == f"safetunnel_{started['id']}" and session != token  # a session secret
    assert token not in link.raw.decode()
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in set_cookie.split(";")}
    max_age = int(set_cookie.split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 5
    cookie = http_get(port, "/by-link?x=1", {"Cookie": f"theme=dark; {cookie_pair}"})
    assert (cookie.status, cookie.body) == (200, b"hello /by-link?x=1")

    # The application's own Authorization (not an st_ bearer) passes through untouched.
    app_auth = http_get(
        port, "/app", {"X-Safetunnel-Token": token, "Authorization": "Bearer app-secret"}
    )
    assert app_auth.status == 200

    received = bytes(service.received)
    assert b"GET /by-header HTTP/1.1" in received
    assert b"GET /by-link?x=1 HTTP/1.1" in received
    assert b"Cookie: theme=dark\r\n" in received  # the other cookie survives the stripping
    assert b"Authorization: Bearer app-secret" in received
    assert b"safetunnel" not in received.lower()  # no header, cookie or parameter of ours
    assert token.encode() not in received
    stop_with_sigterm(proc)


def test_raw_tcp_preamble_forwards_the_bytes_after_it_intact(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, via=via)
    started = e2e.started(proc)
    with connect(started["remote_port"]) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\nfirst bytes|".encode())
        payload = bytes(range(256)) * 64
        sock.sendall(payload)
        expected = b"first bytes|" + payload
        got = b""
        sock.settimeout(5)
        while len(got) < len(expected):
            data = sock.recv(65536)
            assert data, "closed early"
            got += data
        assert got == expected
    assert bytes(service.received) == expected  # the preamble itself never arrived
    stop_with_sigterm(proc)


def test_keepalive_second_request_without_token_is_refused(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, via=via)
    started = e2e.started(proc)
    probed = service.connections
    with connect(started["remote_port"]) as sock:
        sock.sendall(request_bytes("/first", {"X-Safetunnel-Token": started["token"]}))
        first = read_response(sock)
        assert (first.status, first.body) == (200, b"hello /first")
        sock.sendall(request_bytes("/second-without-token"))
        second = read_response(sock)
        assert second.status == 401
        assert closed_by_peer(sock)
    received = bytes(service.received)
    assert b"/first" in received
    assert b"second-without-token" not in received
    assert service.connections == probed + 1
    stop_with_sigterm(proc)


def test_server_first_protocol_gets_its_greeting_after_the_preamble(
    e2e: E2E, via: SSHD | None
) -> None:
    service = e2e.service(greeting_echo)
    proc = e2e.share(service.port, "--protocol", "tcp", via=via)
    started = e2e.started(proc)
    assert started["protocol"] == "tcp"
    with connect(started["remote_port"]) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\n".encode())
        sock.settimeout(5)
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            data = sock.recv(1024)
            assert data, f"closed before the greeting: {greeting!r}"
            greeting += data
        assert greeting == b"220 hello from the service\r\n"
        sock.sendall(b"EHLO me\r\n")
        assert sock.recv(1024) == b"EHLO me\r\n"
    # --protocol tcp refuses HTTP even with the right token, before the service is contacted.
    connections_before = service.connections
    with connect(started["remote_port"]) as sock:
        sock.sendall(request_bytes("/", {"X-Safetunnel-Token": started["token"]}))
        assert b"200" not in recv_all(sock)
    assert service.connections == connections_before
    assert bytes(service.received) == b"EHLO me\r\n"
    stop_with_sigterm(proc)


def test_service_gone_after_start_gets_502_and_is_not_counted_as_denied(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port)
    started = e2e.started(proc)
    service.close()  # the shared service stops while the tunnel is up
    answer = http_get(started["remote_port"], "/", {"X-Safetunnel-Token": started["token"]})
    assert answer.status == 502
    event = proc.next_event("connection", 5)
    assert event["allowed"] is True
    status = e2e.cli("status", started["id"], "--json")
    assert status.returncode == 0, status.stderr
    assert '"denied": 0' in status.stdout
    stop_with_sigterm(proc)
