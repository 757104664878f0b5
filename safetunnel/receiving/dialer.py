"""How a receiver reaches the share: one dialer per ``connect``, one stream per local connection.

A dialer is checked before anything listens (:meth:`Dialer.start`: the host key or TLS pin, the
login), then asked for one byte stream per local connection. It raises only what ends
``connect`` (a changed key, a refused login, a host that cannot be reached again); a share that
is merely not answering one connection is ``None`` (said once, to the user). :meth:`close` is
its single teardown path, and is idempotent. :meth:`watch` is told what to call when what carries
the connections is gone for good while nothing is dialing (a no-op where the next dial finds out).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Protocol

from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND, format_hostport
from safetunnel.errors import SafetunnelError
from safetunnel.receiving.relay import Channel
from safetunnel.tickets import Ticket

# A share bound on every interface of the SSH host is also reachable on its loopback, which is
# where a connection from the host itself should go.
WILDCARDS = {PUBLIC_BIND: LOOPBACK_BIND, "::": "::1"}


def share_destination(ticket: Ticket) -> tuple[str, int]:
    """Where, seen from the SSH host, the share listens."""
    bind = ticket.remote_bind
    return WILDCARDS.get(bind, bind), ticket.remote_port


def unreachable(destination: tuple[str, int], reason: str) -> str:
    """What the user is told when the SSH host could not open a connection to the share."""
    where = format_hostport(*destination)
    return f"The SSH host could not reach the share at {where} ({reason}); it may have ended."


class Dialer(Protocol):
    """What the receiver asks of whatever carries its connections to the share."""

    def start(self) -> None: ...
    def watch(self, lost: Callable[[SafetunnelError], None]) -> None: ...
    def dial(self, origin: tuple[str, int]) -> Channel | None: ...
    def close(self) -> None: ...


class SocketChannel:
    """A connected stream socket as a relay's channel (half-close by ``shutdown``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def shutdown_write(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in the other thread
        self._sock.close()
