"""Real local services for end-to-end tests: they record every byte they receive.

Tests assert on ``received`` to prove that the token (and anything refused by the gate) never
reached the service.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class Service:
    """A TCP service on 127.0.0.1 (any free port unless ``port`` is given); ``handle(conn,
    record)`` runs per connection in a thread."""

    def __init__(
        self,
        handle: Callable[[socket.socket, Callable[[bytes], None]], None],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._handle = handle
        self._lock = threading.Lock()
        self.received = bytearray()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="test-service")
        self._acceptor.start()

    def record(self, data: bytes) -> None:
        with self._lock:
            self.received += data

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            thread = threading.Thread(target=self._run, args=(conn,), name="test-service-conn")
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self._handle(conn, self.record)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def echo(conn: socket.socket, record: Callable[[bytes], None]) -> None:
    while data := conn.recv(65536):
        record(data)
        conn.sendall(data)


def greeting_echo(conn: socket.socket, record: Callable[[bytes], None]) -> None:
    """Server-first protocol: greets before the client says anything (like SMTP or SSH)."""
    conn.sendall(b"220 hello from the service\r\n")
    echo(conn, record)


def http_keepalive(conn: socket.socket, record: Callable[[bytes], None]) -> None:
    """Minimal HTTP/1.1 server: answers every request with 200 and the request path."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return
            record(data)
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(buffer) < length:
            data = conn.recv(65536)
            if not data:
                return
            record(data)
            buffer += data
        buffer = buffer[length:]
        path = head.split(b" ")[1]
        body = b"hello " + path
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
