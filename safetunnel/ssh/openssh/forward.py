"""The gate's unix socket, and the remote forward that OpenSSH points at it.

The socket is the only way in: it lives in a 0700 directory and is made 0600 right after
``bind`` (no other user can reach the directory in between), so only this user's processes,
the ``ssh`` master among them, can connect. It never listens on a local TCP port, where any
local user could skip the SSH server and knock on the gate directly.

Threads: ``safetunnel-gate-accept``, which hands each connection to ``on_stream`` and never
blocks on it; ``close()`` joins it. A handler that accepts on its own loop
(:class:`~safetunnel.ssh.engine.AcceptingHandler`) gets the listener instead, and no thread
starts; closing the listener stops its accepting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from pathlib import Path

from safetunnel.ssh.engine import AcceptingHandler, StreamHandler
from safetunnel.ssh.openssh.stream import SocketStream

log = logging.getLogger("safetunnel.ssh.openssh")


def socket_name(sockets: Path, kind: str) -> Path:
    """``<kind>-<pid>-<random>.sock``: the pid lets a later share remove what a share killed
    with ``kill -9`` left behind."""
    return sockets / f"{kind}-{os.getpid()}-{secrets.token_hex(4)}.sock"


class GateSocket:
    """A listening unix socket whose connections become ByteStreams."""

    def __init__(self, path: Path, on_stream: StreamHandler, origin: tuple[str, int]) -> None:
        self.path = path
        self._on_stream = on_stream
        self._origin = origin
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(path))
            os.chmod(path, 0o600)
            self._sock.listen(512)
        except BaseException:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if isinstance(on_stream, AcceptingHandler):
            self._sock.setblocking(False)
            if on_stream.accept_on(self._sock, self._stream):
                return  # the handler's own loop accepts
            self._sock.setblocking(True)
        self._thread = threading.Thread(target=self._accept, name="safetunnel-gate-accept")
        self._thread.start()

    def _stream(self, conn: socket.socket) -> SocketStream:
        return SocketStream(conn, self._origin)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as err:
                if self._closed.is_set():
                    return
                # Out of descriptors: the connections stay queued in the kernel; retry shortly
                # rather than spin (and log) on the same error.
                log.warning("accepting on the gate socket failed (%s); trying again shortly", err)
                self._closed.wait(0.1)
                continue
            try:
                self._on_stream(self._stream(conn))
            except Exception:  # the handler's failure must not stop the listener
                log.exception("could not hand off a connection from the gate socket")
                conn.close()

    def close(self) -> None:
        """Stop accepting and remove the socket file; accepted streams stay open. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
