"""End to end: a recipient's ``safetunnel connect`` in front of real shares through OpenSSH sshd.

The share runs as the sharer would run it; connect gets the ticket from its started event on
stdin, as a recipient pastes it. The clients below know nothing of tokens: urllib for HTTP, a
bare socket for raw TCP. The services record every byte, so "the token never reached the
service" is checked on what arrived; the harness greps every output and file for the token and
the ticket.
"""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from e2e import E2E, ShareProcess, assert_port_released, recv_all
from services import echo, http_keepalive
from sshd import SSHD

from safetunnel import tokens
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.tickets import Ticket, decode
from safetunnel.timefmt import utc_now

pytestmark = pytest.mark.sshd


def listening(proc: ShareProcess) -> tuple[dict[str, Any], int]:
    event = proc.next_event("listening")
    host, _, port = event["local"].rpartition(":")
    assert host == "127.0.0.1"
    return event, int(port)


def stop(proc: ShareProcess, port: int) -> None:
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr
    assert proc.next_event("stopped")["reason"] == "signal"
    assert_port_released(port)


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_an_http_client_without_a_token_reaches_the_service(
    e2e: E2E, shared_sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    ticket = decode(started["ticket"])
    assert (ticket.remote_port, ticket.host_key) == (
        started["remote_port"],
        fingerprint(shared_sshd.host_key),
    )
    assert ticket.token == started["token"]

    proc = e2e.connect(started["ticket"], "--engine", engine, via=shared_sshd)
    event, port = listening(proc)
    assert event["expires_at"] == started["expires_at"]
    for path in ("/first", "/second"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            assert (answer.status, answer.read()) == (200, f"hello {path}".encode())

    assert b"GET /first" in service.received and b"GET /second" in service.received
    assert started["token"].encode() not in bytes(service.received)
    assert b"SAFETUNNEL" not in bytes(service.received)
    stop(proc, port)
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_a_raw_tcp_client_that_knows_no_token_gets_its_echo(
    e2e: E2E, shared_sshd: SSHD, engine: str
) -> None:
    service = e2e.service(echo)
    share = e2e.share(service.port, "--protocol", "tcp", via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    proc = e2e.connect(started["ticket"], "--engine", engine, via=shared_sshd)
    _, port = listening(proc)

    for word in (b"ping", b"pong"):  # one SSH session carries each new connection
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(word)
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == word

    assert bytes(service.received) == b"pingpong"  # no preamble, no token: only the client's
    stop(proc, port)
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0


def made_ticket(e2e: E2E, server: SSHD, **changes: Any) -> str:
    """A ticket for a share that need not exist; its token joins the ones grepped for."""
    token = tokens.generate()
    e2e.tokens.append(token)
    values: dict[str, Any] = {
        "ssh_host": f"{server.user}@{server.host}",
        "ssh_port": server.port,
        "host_key": fingerprint(server.host_key),
        "key_type": server.host_key.get_name(),
        "remote_bind": "127.0.0.1",
        "remote_port": 47999,
        "protocol": "auto",
        "expires_at": utc_now() + timedelta(minutes=5),
        "token": token,
    }
    return Ticket(**{**values, **changes}).encode()


def test_a_host_key_other_than_the_tickets_stops_with_exit_4(e2e: E2E, shared_sshd: SSHD) -> None:
    other = fingerprint(shared_sshd.client_key)  # a real key, just not this host's
    proc = e2e.connect(made_ticket(e2e, shared_sshd, host_key=other), via=shared_sshd)
    assert proc.wait(30) == 4
    assert "but the ticket names" in proc.stderr and other in proc.stderr
    assert proc.stdout == ""  # nothing ever listened


def test_an_expired_ticket_is_refused_before_any_network(e2e: E2E, shared_sshd: SSHD) -> None:
    past = utc_now() - timedelta(seconds=5)
    proc = e2e.connect(made_ticket(e2e, shared_sshd, expires_at=past), via=shared_sshd)
    assert proc.wait(30) == 2
    assert "this ticket expired at" in proc.stderr
    assert "Ask the sharer for a new ticket" in proc.stderr


def test_a_malformed_ticket_is_a_usage_error(e2e: E2E, shared_sshd: SSHD) -> None:
    good = made_ticket(e2e, shared_sshd)
    for broken in (good[:-10], "stt1_" + "!" * 20, good.replace("stt1_", "stt9_")):
        out = e2e.cli("connect", "-", input_text=broken + "\n")
        assert out.returncode == 2, out
        assert out.stderr.startswith("Error: "), out.stderr
        assert "Traceback" not in out.stderr


def test_a_ticket_on_the_command_line_is_refused_and_not_echoed(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    ticket = made_ticket(e2e, shared_sshd)
    e2e.tickets.append(ticket)
    out = e2e.cli("connect", ticket)
    assert out.returncode == 2
    assert "readable by every local user" in out.stderr
    assert ticket not in out.stdout + out.stderr  # checked again by the harness


def test_connect_stops_by_itself_at_the_tickets_expiry(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    share = e2e.share(service.port, via=shared_sshd, ttl="4s")
    started = e2e.started(share)
    proc = e2e.connect(started["ticket"], via=shared_sshd)
    _, port = listening(proc)
    assert proc.wait(30) == 0, proc.stderr
    assert proc.next_event("stopped")["reason"] == "expired"
    assert "The ticket expired" in proc.stderr
    assert_port_released(port)
    assert share.wait(30) == 0


def test_a_ticket_file_must_be_private(e2e: E2E, shared_sshd: SSHD) -> None:
    path = e2e.sandbox.home / "ticket.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ticket = made_ticket(e2e, shared_sshd, expires_at=utc_now() - timedelta(seconds=1))
    e2e.tickets.append(ticket)  # the harness then proves the file is gone by the end
    with os.fdopen(fd, "w") as file:
        file.write(ticket)
    private = e2e.cli("connect", "--ticket-file", str(path))
    assert private.returncode == 2 and "expired" in private.stderr  # read, then refused
    path.chmod(0o640)
    shared = e2e.cli("connect", "--ticket-file", str(path))
    assert shared.returncode == 2 and "can be read by other users" in shared.stderr
    both = e2e.cli("connect", "-", "--ticket-file", str(path))
    assert both.returncode == 2 and "one of them" in both.stderr
    path.unlink()
