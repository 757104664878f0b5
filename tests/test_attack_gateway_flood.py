"""Attacks on the gateway's threads: idle TCP connections to its SSH port, and idle connections
to a forwarded port. Each costs threads; the gateway caps both, and a real client still gets in.
127.0.0.1 only, and bounded in count."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import paramiko
import pytest

from safetunnel.ssh.client import SSHSession, open_session
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.gateway import Gateway, GatewayLimits
from safetunnel.ssh.keys import generate_ed25519
from safetunnel.ssh.target import SSHTarget

IDLE = 300
# 32 logins in progress at two threads each, plus the real session's few threads and slack.
THREAD_BUDGET = 2 * 32 + 16
PER_SESSION = 8
EXTRA = 12


def _connect(gateway: Gateway, key: paramiko.PKey) -> SSHSession:
    host, port = gateway.address
    return open_session(
        SSHTarget(host, port, "tunnel"),
        hostkeys=None,
        on_unknown_key=None,
        auth=None,
        client_key=key,
        expected_key=gateway.host_key,
        timeout=10.0,
    )


def _echo(stream: ByteStream) -> None:
    def serve() -> None:
        with contextlib.suppress(EOFError, OSError):
            while data := stream.read(4096):
                stream.write_all(data)
        stream.close()

    threading.Thread(target=serve, name="test-flood-echo", daemon=True).start()


@pytest.mark.slow
def test_idle_connections_to_the_ssh_port_cannot_pile_up_threads() -> None:
    key = generate_ed25519()
    before = threading.active_count()
    # A long login limit, so that no idle connection times out on its own during the test.
    with Gateway(authorized_keys=[key], timeout=60).start() as gateway, contextlib.ExitStack() as s:
        for _ in range(IDLE):
            s.enter_context(socket.create_connection(gateway.address, 10))
        # Accepted after every idle connection (one listen queue): they are all in by now.
        with _connect(gateway, key) as session:
            grown = threading.active_count() - before
            assert session.transport.is_authenticated()
    assert grown <= THREAD_BUDGET, f"{IDLE} idle connections made {grown} threads"


def _answered(port: int) -> socket.socket | None:
    sock = socket.create_connection(("127.0.0.1", port), 5)
    sock.settimeout(10)
    sock.sendall(b"x")
    try:
        if sock.recv(1) == b"x":
            return sock
    except OSError:
        pass
    sock.close()
    return None


def test_forwarded_connections_are_capped_per_session() -> None:
    key = generate_ed25519()
    limits = GatewayLimits(connections_per_session=PER_SESSION)
    with (
        Gateway(authorized_keys=[key], limits=limits).start() as gateway,
        _connect(gateway, key) as session,
    ):
        port = session.forward("localhost", 0, _echo).port
        tries = [_answered(port) for _ in range(PER_SESSION + EXTRA)]
        relayed = [sock for sock in tries if sock is not None]
        assert len(relayed) == PER_SESSION, (
            f"{len(relayed)} of {len(tries)} connections relayed (cap {PER_SESSION})"
        )
        for sock in relayed:
            sock.close()
        # The slots come back once the relays have wound down.
        deadline = time.monotonic() + 10
        again = _answered(port)
        while again is None and time.monotonic() < deadline:
            again = _answered(port)
        assert again is not None, "no connection relayed after the others closed"
        again.close()
