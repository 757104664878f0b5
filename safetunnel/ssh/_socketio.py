"""How a logged-in paramiko transport reads and closes its socket once it has no timeout.

Both rely on paramiko internals (``Packetizer.read_all``, ``Packetizer.close`` and its
``closed`` flag, the bytes it read ahead of the first packet along with the banner);
tests/test_paramiko_socketio.py checks them on a socket pair, tests/test_paramiko_edges.py
against a real OpenSSH.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from paramiko.packet import Packetizer


def read_ahead(packetizer: Packetizer, sock: socket.socket, size: int) -> None:
    """From now on ``packetizer`` reads ``sock`` (which has no timeout) up to ``size`` bytes
    ahead of its packets.

    Not while paramiko still holds bytes it read along with the banner (at most a read's 128
    bytes, handed out with the first packets of the key exchange): its own ``read_all`` hands
    them out, and a copy here could hand them out twice. Once empty, that store is never
    filled again."""
    target: Any = packetizer
    if getattr(target, "_Packetizer__remainder", b""):
        return
    target.read_all = _ReadAhead(sock, target, size).read_all


class _ReadAhead:
    """paramiko's ``Packetizer.read_all`` for a socket without a timeout, reading ahead.

    paramiko reads each packet with two ``recv`` calls (its first block, then the rest), so a
    burst of small packets costs two system calls, and two hand-overs of the GIL, per packet.
    This reads what is there, up to ``size``, and hands it out packet by packet (paired,
    on bulk uploads through the paramiko engine: 0.82x -> 0.88x of ``ssh -R``, ~8% less CPU).
    Without a timeout paramiko's own loop only reads until it has ``n`` bytes: its timeout
    branches (keepalive, a due rekey, the handshake's deadline) cannot run, so this keeps
    only its ends: EOF, and an error on a closed packetizer, are EOFError. Only the
    transport thread reads, so there is no lock.
    """

    def __init__(self, sock: socket.socket, packetizer: Any, size: int) -> None:
        self._sock = sock
        self._packetizer = packetizer
        self._size = size
        self._data = b""
        self._pos = 0

    def read_all(self, n: int, check_rekey: bool = False) -> bytes:
        if n <= 0:  # a damaged length field can ask for that; paramiko reads nothing then
            return b""
        data, pos = self._data, self._pos
        if len(data) - pos >= n:
            self._pos = pos + n
            return data[pos : pos + n]
        parts = [data[pos:]]
        have = len(parts[0])
        while have < n:
            chunk = self._recv(max(n - have, self._size))
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self._data, self._pos = data, n
        return data[:n]

    def _recv(self, size: int) -> bytes:
        try:
            chunk = self._sock.recv(size)
        except OSError:
            if self._packetizer.closed:
                raise EOFError() from None
            raise
        if not chunk:
            raise EOFError()
        return chunk


def shut_down_before_close(packetizer: Packetizer, sock: socket.socket) -> None:
    """Every close of the connection (``Transport.close``, the end of the transport thread)
    closes it through the packetizer. Closing a socket does not wake a thread that waits in
    ``recv`` or ``send`` on it; shutting it down does. Without a socket timeout (see
    ``TunedTransport.stop_polling``) nothing else would."""
    close = packetizer.close

    def shut_down_and_close() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        close()

    packetizer.close = shut_down_and_close  # type: ignore[method-assign]
