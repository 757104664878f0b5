"""Attack: bulk traffic with short connections beside it must not kill a share on the built-in
gateway through a paramiko rekey.

paramiko rekeys every ``Packetizer.REKEY_BYTES`` (512 MiB) in either direction. A channel close
(or a channel-open or global-request reply) handled on the transport thread while a rekey it
started is in flight either waited for the rekey that only that thread can finish (30 s, then
"Key-exchange timed out waiting for key negotiation") or went out in the middle of the key
exchange, where the peer refused it ("Expecting packet ..."). Either way the share ended with
exit 8. 1.5 GiB crosses that threshold three times; to cross it hundreds of times within a few
seconds, this test lowers paramiko's own per-process knob to 1 MiB for both ends.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator

import paramiko
import pytest
from paramiko.packet import Packetizer
from tunnelkit import gateway_session

from safetunnel import tokens
from safetunnel.gate.sniff import MAGIC
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import start_builtin

REKEY_BYTES = 1024 * 1024
BULK = 384 * 1024 * 1024  # 384 rekeys in each direction at 1 MiB
SHORT_CLIENTS = 4
CHUNK = 256 * 1024


def _serve(conn: socket.socket) -> None:
    """``SINK`` first: count until EOF and answer the count; anything else: echo."""
    with contextlib.suppress(OSError), conn:
        first = conn.recv(CHUNK)
        if first.startswith(b"SINK"):
            total = len(first) - 4
            while data := conn.recv(CHUNK):
                total += len(data)
            conn.sendall(str(total).encode())
            return
        while first:
            conn.sendall(first)
            first = conn.recv(CHUNK)


@contextlib.contextmanager
def service() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                thread = threading.Thread(target=_serve, args=(conn,), name="test-rekey-service")
                threads.append(thread)
                thread.start()

    acceptor = threading.Thread(target=accept, name="test-rekey-accept")
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


def _connect(port: int, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.sendall(MAGIC + token.encode() + b"\n")
    return sock


def _bulk(port: int, token: str, moved: list[int]) -> None:
    """Send BULK bytes through the share; ``moved`` gets what the service counted."""
    chunk = b"\xa5" * CHUNK
    with contextlib.suppress(OSError), _connect(port, token) as sock:
        sock.sendall(b"SINK")
        for _ in range(BULK // CHUNK):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while data := sock.recv(64):
            reply += data
        moved.append(int(reply or b"0"))


def _short(port: int, token: str, stop: threading.Event, done: list[int]) -> None:
    """Open, round-trip a few bytes, close; again and again until the bulk is through."""
    count = 0
    with contextlib.suppress(OSError):
        while not stop.is_set():
            with _connect(port, token) as sock:
                sock.sendall(b"ping")
                if sock.recv(16) != b"ping":
                    break
            count += 1
    done.append(count)


@pytest.mark.slow
def test_bulk_with_short_connections_crosses_hundreds_of_rekeys(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Packetizer, "REKEY_BYTES", REKEY_BYTES)
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    gateway, key = start_builtin()
    token = tokens.generate()
    with gateway, service() as local:
        session = gateway_session(gateway, key)
        config = TunnelConfig(
            local=("127.0.0.1", local), ttl=600, ssh_host="built-in", protocol="tcp"
        )
        with Tunnel(session, config, token) as tunnel:
            tunnel.start()
            moved: list[int] = []
            done: list[int] = []
            stop = threading.Event()
            shorts = [
                threading.Thread(target=_short, args=(tunnel.remote_port, token, stop, done))
                for _ in range(SHORT_CLIENTS)
            ]
            for thread in shorts:
                thread.start()
            _bulk(tunnel.remote_port, token, moved)
            stop.set()
            for thread in shorts:
                thread.join(30)
            reason = tunnel.stop_reason
            alive = isinstance(session.transport, paramiko.Transport) and (
                session.transport.is_active()
            )
    mib = (moved[0] if moved else 0) // (1024 * 1024)
    assert reason is None and alive, (
        f"the share died ({reason}) after {mib} of {BULK >> 20} MiB, "
        f"{sum(done)} short connections, rekey every {REKEY_BYTES >> 20} MiB"
    )
    assert moved == [BULK], f"moved {mib} of {BULK >> 20} MiB"
    rekeys = sum(record.getMessage().startswith("Switch to new keys") for record in caplog.records)
    # Each end logs every switch; some rekeys cover more than 1 MiB while one is under way.
    assert rekeys >= BULK // REKEY_BYTES, f"only {rekeys} switches to new keys (both ends)"
    assert len(done) == SHORT_CLIENTS and min(done) > 0, f"short connections per client: {done}"
