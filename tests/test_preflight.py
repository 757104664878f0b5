from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator

import psutil
import pytest

from safetunnel.errors import ConfigError, NothingListening
from safetunnel.sharing.ports import classify_greeting
from safetunnel.sharing.preflight import assess_risks, parse_local, probe_local

# ---------------------------------------------------------------- parse_local


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("62893", ("127.0.0.1", 62893)),
        (" 62893 ", ("127.0.0.1", 62893)),
        ("1", ("127.0.0.1", 1)),
        ("65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:62893", ("127.0.0.1", 62893)),
        ("localhost:62893", ("127.0.0.1", 62893)),
        ("LOCALHOST:8080", ("127.0.0.1", 8080)),
        ("[::1]:62893", ("::1", 62893)),
        ("[0:0:0:0:0:0:0:1]:80", ("::1", 80)),
    ],
)
def test_parse_local_accepts_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_local(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "65536",
        "99999",
        "",
        "abc",
        "-1",
        "+80",
        "8o80",
        "127.0.0.1:",
        "127.0.0.1:0",
        "localhost:65536",
        "::1:80",
        "[::1]",
        "[::1]:",
        "1.2.3.4:5:6",
        "٨٠",
    ],
)
def test_parse_local_rejects_junk(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_local(text)


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0:80",
        "192.168.1.5:80",
        "127.0.0.2:80",
        "[::]:80",
        "example.com:80",
        "[fe80::1]:80",
        ":80",
    ],
)
def test_parse_local_refuses_non_loopback_and_says_out_of_scope(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_local(text)
    assert "loopback" in info.value.message
    assert "127.0.0.1" in (info.value.hint or "")


# ---------------------------------------------------------------- probe_local


def _listener(host: str, family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    return sock


@pytest.fixture
def loopback_listener() -> Iterator[socket.socket]:
    with _listener("127.0.0.1") as sock:
        yield sock


def test_probe_finds_our_own_process(loopback_listener: socket.socket) -> None:
    port = loopback_listener.getsockname()[1]
    info = probe_local("127.0.0.1", port, greeting_wait=0.05)
    me = psutil.Process()
    assert info.pid == os.getpid()
    assert info.process == me.name()
    assert info.user == me.username()
    assert info.exposed is False
    assert info.listen_addresses == (f"127.0.0.1:{port}",)
    assert info.address == f"127.0.0.1:{port}"


def test_probe_reports_exposed_wildcard_bind() -> None:
    with _listener("0.0.0.0") as sock:
        port = sock.getsockname()[1]
        info = probe_local("127.0.0.1", port, greeting_wait=0.05)
    assert info.exposed is True
    assert f"0.0.0.0:{port}" in info.listen_addresses
    assert info.pid == os.getpid()


def test_probe_closed_port_raises_nothing_listening_with_hint() -> None:
    with _listener("127.0.0.1") as sock:
        port = sock.getsockname()[1]
    with pytest.raises(NothingListening) as info:
        probe_local("127.0.0.1", port)
    assert info.value.exit_code == 7
    assert f"127.0.0.1:{port}" in info.value.message
    assert f"python3 -m http.server {port} --bind 127.0.0.1" in (info.value.hint or "")


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_probe_ipv6_loopback() -> None:
    with _listener("::1", socket.AF_INET6) as sock:
        port = sock.getsockname()[1]
        info = probe_local("::1", port, greeting_wait=0.05)
    assert info.listen_addresses == (f"[::1]:{port}",)
    assert info.exposed is False
    assert info.pid == os.getpid()
    assert info.address == f"[::1]:{port}"


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_closed_ipv6_port_hint_binds_an_address_http_server_can_use() -> None:
    with _listener("::1", socket.AF_INET6) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(NothingListening) as info:
        probe_local("::1", port)
    assert f"[::1]:{port}" in info.value.message
    command = (info.value.hint or "").split("`")[1]
    assert command.startswith(f"python3 -m http.server {port} --bind ")
    # http.server hands --bind to getaddrinfo, which takes "::1" but not "[::1]".
    bind = command.rsplit(" ", 1)[1]
    assert socket.getaddrinfo(bind, port, socket.AF_INET6)


def _serve_once(sock: socket.socket, handler: Callable[[socket.socket], None]) -> threading.Thread:
    def run() -> None:
        conn, _ = sock.accept()
        with conn:
            handler(conn)

    thread = threading.Thread(target=run, name="test-serve-once")
    thread.start()
    return thread


def test_probe_sends_nothing_and_closes_cleanly(loopback_listener: socket.socket) -> None:
    received: list[bytes] = []
    errors: list[BaseException] = []

    def record(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            while chunk := conn.recv(1024):
                received.append(chunk)
            received.append(b"<EOF>")
        except OSError as exc:  # a reset would land here
            errors.append(exc)

    thread = _serve_once(loopback_listener, record)
    probe_local("127.0.0.1", loopback_listener.getsockname()[1], greeting_wait=0.05)
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert errors == []
    assert received == [b"<EOF>"]  # not a single byte, then an orderly close


def test_probe_recognises_server_greeting_without_echoing_it(
    loopback_listener: socket.socket,
) -> None:
    def greet(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-Evil\x1b[2J\r\n")
        conn.settimeout(5)
        conn.recv(1024)

    thread = _serve_once(loopback_listener, greet)
    port = loopback_listener.getsockname()[1]
    info = probe_local("127.0.0.1", port, greeting_wait=2.0)
    thread.join(timeout=5)
    assert (info.protocol_guess, info.service_kind, info.guess_basis) == (
        "tcp",
        "SSH",
        "server greeting",
    )
    assert "Evil" not in repr(info)
    # An SSH server on an unusual port is still an admin protocol.
    codes = [r.code for r in assess_risks(port, False, 1800, False, service_kind=info.service_kind)]
    assert codes == ["sensitive-port"]


def test_probe_silent_service_on_unknown_port_is_unknown(loopback_listener: socket.socket) -> None:
    info = probe_local("127.0.0.1", loopback_listener.getsockname()[1], greeting_wait=0.05)
    assert info.protocol_guess == "unknown"
    assert info.service_kind is None


def test_probe_falls_back_when_system_table_is_denied(
    loopback_listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(kind: str = "inet") -> list[object]:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", denied)
    port = loopback_listener.getsockname()[1]
    info = probe_local("127.0.0.1", port, greeting_wait=0.05)
    assert info.pid == os.getpid()
    assert info.listen_addresses == (f"127.0.0.1:{port}",)


def test_probe_owner_details_denied_gives_none(
    loopback_listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(pid: int) -> object:
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", denied)
    info = probe_local("127.0.0.1", loopback_listener.getsockname()[1], greeting_wait=0.05)
    assert info.pid == os.getpid()
    assert (info.process, info.user) == (None, None)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "SSH"),
        (b"220 mail.example ESMTP\r\n", "SMTP/FTP"),
        (b"RFB 003.008\n", "VNC"),
        (b"J\x00\x00\x00\x0a8.0.36\x00", "MySQL"),
        (b"\x01\x02\x03\x04", "a server-first protocol"),
    ],
)
def test_classify_greeting(data: bytes, kind: str) -> None:
    assert classify_greeting(data) == kind


# ---------------------------------------------------------------- risks

HOUR = 3600


@pytest.mark.parametrize(
    ("port", "public", "ttl", "exposed", "codes"),
    [
        (62893, False, 30 * 60, False, []),
        (62893, True, 30 * 60, False, ["public"]),
        (62893, False, 4 * HOUR, False, []),
        (62893, False, 4 * HOUR + 1, False, ["long-ttl"]),
        (62893, False, 30 * 60, True, ["already-exposed"]),
        (22, False, 30 * 60, False, ["sensitive-port"]),
        (2375, False, 60, False, ["sensitive-port"]),
        (3306, False, 60, False, ["sensitive-port"]),
        (5432, False, 60, False, ["sensitive-port"]),
        (6379, False, 60, False, ["sensitive-port"]),
        (9200, False, 60, False, ["sensitive-port"]),
        (11211, False, 60, False, ["sensitive-port"]),
        (27017, False, 60, False, ["sensitive-port"]),
        (10250, False, 60, False, ["sensitive-port"]),
        (8080, False, 60, False, []),
        (6379, True, 24 * HOUR, True, ["already-exposed", "public", "sensitive-port", "long-ttl"]),
    ],
)
def test_risk_rules(port: int, public: bool, ttl: int, exposed: bool, codes: list[str]) -> None:
    assert [r.code for r in assess_risks(port, public, ttl, exposed)] == codes


def test_exposure_is_a_notice_the_rest_are_risks() -> None:
    risks = {r.code: r for r in assess_risks(6379, True, 5 * HOUR, True)}
    assert risks["already-exposed"].severity == "notice"
    assert {risks[c].severity for c in ("public", "sensitive-port", "long-ttl")} == {"risk"}
    assert "Redis" in risks["sensitive-port"].message
    assert "6379" in risks["sensitive-port"].message
    assert "5h" in risks["long-ttl"].message


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback here")
@pytest.mark.parametrize(
    ("asked", "actual", "argument"),
    [("127.0.0.1", "::1", "'[::1]:{port}'"), ("::1", "127.0.0.1", "{port}")],
    ids=["service-on-ipv6-only", "service-on-ipv4-only"],
)
def test_a_service_on_the_other_loopback_is_named_with_the_command_that_shares_it(
    asked: str, actual: str, argument: str
) -> None:
    """`share PORT` for a dev server that listens on [::1] only (what "localhost" often means):
    the service runs, so "start the service first" would send the user the wrong way."""
    family = socket.AF_INET6 if ":" in actual else socket.AF_INET
    with _listener(actual, family) as sock:
        port = sock.getsockname()[1]
        with pytest.raises(NothingListening) as info:
            probe_local(asked, port)
    there = f"[::1]:{port}" if ":" in actual else f"127.0.0.1:{port}"
    assert f"but something is on {there}" in info.value.message
    assert f"safetunnel share {argument.format(port=port)}" in (info.value.hint or "")
