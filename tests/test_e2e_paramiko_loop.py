"""On the paramiko engine, a share's connections run on its relay loop: held connections take
no thread each (they took two, then one, before), and each still gets its own answers."""

from __future__ import annotations

import socket
import threading

from e2e import E2E, connect, wait_for

import safetunnel

HELD = 40


def echo_lines(conn: socket.socket, record: object) -> None:
    while data := conn.recv(65536):
        conn.sendall(b"echo " + data)


def connection_threads() -> list[str]:
    """The share's own threads for connections (its pool names them ``<id>-conn_N``)."""
    return [t.name for t in threading.enumerate() if "-conn_" in t.name]


def test_held_connections_take_no_thread_each(e2e: E2E) -> None:
    service = e2e.service(echo_lines)
    with safetunnel.share(service.port, ttl=30) as tunnel:  # the built-in gateway: paramiko
        e2e.tokens.append(tunnel.token)
        socks = [connect(tunnel.remote_port, timeout=10) for _ in range(HELD)]
        try:
            for number, sock in enumerate(socks):
                sock.sendall(f"SAFETUNNEL {tunnel.token}\nline {number}\n".encode())
            for number, sock in enumerate(socks):
                assert sock.recv(1024) == f"echo line {number}\n".encode()
            assert wait_for(lambda: tunnel.stats.snapshot()["connections"] == HELD, 5)
            assert connection_threads() == []
            socks[0].sendall(b"again\n")  # the loop still serves each one
            assert socks[0].recv(1024) == b"echo again\n"
        finally:
            for sock in socks:
                sock.close()
