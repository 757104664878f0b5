"""Megabytes both ways through a real share, on both engines: every byte, in order."""

from __future__ import annotations

import hashlib
import signal
import socket
import time

import pytest
from e2e import E2E, connect, recv_all
from sshd import SSHD

MIB = 1 << 20
BLOB = hashlib.sha256(b"seed").digest() * (3 * MIB // 32 + 7)  # not a multiple of any buffer


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


@pytest.mark.sshd
@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_a_reader_that_pauses_gets_every_byte_once_it_reads_again(
    e2e: E2E, shared_sshd: SSHD, engine: str
) -> None:
    """The client reads nothing for a while: sshd's buffers fill, the SSH window (2 MiB) shuts,
    the share stops reading the service, and everything goes on once the client reads again.
    The blob is larger than what sshd, the kernel and the window together take, so the window
    does shut, however quickly sshd runs: on a paramiko channel only the window's reopening
    can then wake the share."""
    big = BLOB * 4

    def blob(conn: socket.socket, record: object) -> None:
        conn.recv(1024)
        conn.sendall(big)

    service = e2e.service(blob)
    proc = e2e.share(service.port, "--engine", engine, via=shared_sshd, ttl="1m")
    started = e2e.started(proc)
    got = bytearray()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before the handshake
        sock.settimeout(30)
        sock.connect(("127.0.0.1", started["remote_port"]))
        sock.sendall(f"SAFETUNNEL {started['token']}\ngo".encode())
        time.sleep(2)  # the share fills what the window and the buffers hold, then waits
        while data := sock.recv(MIB):
            got.extend(data)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr
    assert len(got) == len(big)
    assert bytes(got) == big


@pytest.mark.sshd
@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_a_service_that_pauses_gets_every_byte_once_it_reads_again(
    e2e: E2E, shared_sshd: SSHD, engine: str
) -> None:
    """The other way round: the service reads nothing for a while, so the share's socket to it
    fills, the share stops reading the remote side, the window the share gives the client
    shuts, and everything goes on once the service reads again."""
    big = BLOB * 4

    def pause_then_digest(conn: socket.socket, record: object) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        time.sleep(2)
        hashed, size = hashlib.sha256(), 0
        while data := conn.recv(MIB):
            hashed.update(data)
            size += len(data)
        conn.sendall(b"%d %s\n" % (size, hashed.hexdigest().encode()))

    service = e2e.service(pause_then_digest)
    proc = e2e.share(service.port, "--engine", engine, via=shared_sshd, ttl="1m")
    started = e2e.started(proc)
    with connect(started["remote_port"], timeout=30) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\n".encode() + big)
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock, limit=30)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr
    assert answer == b"%d %s\n" % (len(big), hashlib.sha256(big).hexdigest().encode())
