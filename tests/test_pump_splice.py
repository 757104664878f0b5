"""Bulk data on the OpenSSH engine moves by splice(2): every byte, no descriptor left behind."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from e2e import E2E, connect
from sshd import SSHD

from safetunnel.sharing import pumpio

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="splice(2) is Linux only")
MIB = 1 << 20
BLOB = hashlib.sha256(b"seed").digest() * (3 * MIB // 32 + 7)  # not a multiple of any buffer


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        one = socket.create_connection(server.getsockname())
        two, _ = server.accept()
    return one, two


@pytest.fixture
def route() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """client -> (src ... dst) -> sink: splice_copy runs between src and dst."""
    client, src = tcp_pair()
    dst, sink = tcp_pair()
    yield client, src, dst, sink
    for sock in (client, src, dst, sink):
        sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def drain(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run() -> None:
        while data := sock.recv(MIB):
            into.extend(data)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_every_byte_arrives_in_order_and_is_counted(
    route: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    client, src, dst, sink = route
    got, counted = bytearray(), []
    reader = drain(sink, got)
    before = open_fds()
    writer = threading.Thread(target=lambda: (client.sendall(BLOB), client.shutdown(1)))
    writer.start()
    pumpio.splice_copy(src.fileno(), dst.fileno(), counted.append, lambda: True)
    assert open_fds() == before  # its duplicates and its pipe are closed again
    dst.shutdown(socket.SHUT_WR)
    writer.join(10)
    reader.join(10)
    assert bytes(got) == BLOB
    assert sum(counted) == len(BLOB)
    src.getsockname(), dst.getsockname()  # the caller's sockets are still open


def test_it_stops_after_a_read_once_told_to(
    route: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    client, src, dst, _ = route
    client.sendall(b"x" * 1000)
    counted: list[int] = []
    pumpio.splice_copy(src.fileno(), dst.fileno(), counted.append, lambda: False)
    assert counted == [1000]


def test_a_shutdown_from_another_thread_ends_a_blocked_splice(
    route: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    # Teardown closes a pump's sockets from another thread: shutdown must wake the splice even
    # though it reads through a duplicate of the descriptor.
    _, src, dst, _ = route
    copier = threading.Thread(
        target=pumpio.splice_copy, args=(src.fileno(), dst.fileno(), len, lambda: True)
    )
    copier.start()
    src.shutdown(socket.SHUT_RDWR)
    copier.join(10)
    assert not copier.is_alive()


def test_a_paramiko_channel_is_never_spliced() -> None:
    class ChannelLike:
        def fileno(self) -> int:  # paramiko's: a readiness pipe, not the data
            return 0

    assert pumpio.spliceable(ChannelLike()) is None


@pytest.mark.sshd
@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_megabytes_both_ways_through_a_real_share(e2e: E2E, shared_sshd: SSHD, engine: str) -> None:
    def digest_then_blob(conn: socket.socket, record: object) -> None:
        hashed, size = hashlib.sha256(), 0
        while data := conn.recv(MIB):
            hashed.update(data)
            size += len(data)
        conn.sendall(b"%d %s\n" % (size, hashed.hexdigest().encode()) + BLOB)

    service = e2e.service(digest_then_blob)
    proc = e2e.share(service.port, "--engine", engine, via=shared_sshd, ttl="1m")
    started = e2e.started(proc)
    assert started["engine"] == engine
    got = bytearray()
    with connect(started["remote_port"], timeout=30) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\n".encode() + BLOB)
        sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(MIB):
            got.extend(data)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr
    line, _, rest = bytes(got).partition(b"\n")
    assert line == b"%d %s" % (len(BLOB), hashlib.sha256(BLOB).hexdigest().encode())
    assert rest == BLOB
