"""One TLS connection on memory BIOs, bridged to a plain socket by a single thread.

The relay copies bytes with two threads, but an ``ssl`` object must only be used from one
thread at a time; so TLS is done here, in one thread that owns the SSL object, and the relay
gets the plain end of a socket pair. A half-close is carried both ways: the pair's EOF becomes
a TCP half-close (not a close_notify: OpenSSL refuses any data that arrives after it sent one,
and the share may still be answering), and the share's close_notify or TCP EOF becomes the
pair's EOF.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

READ_SIZE = 64 * 1024
# Bytes held in either direction before the bridge stops reading that side's source: the
# slower side pushes back instead of the bridge's memory growing.
HIGH_WATER = 256 * 1024
JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class TlsLink:
    """An SSL object and the two memory BIOs it reads from and writes to."""

    tls: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def handshake(sock: socket.socket, context: ssl.SSLContext, server: str) -> TlsLink:
    """A completed client handshake over ``sock`` (blocking, with the socket's timeout)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=_sni(server))
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionResetError("the server closed during the TLS handshake") from None
            incoming.write(data)
    sock.sendall(outgoing.read())  # the client's Finished (TLS 1.3)
    return TlsLink(tls, incoming, outgoing)


def _sni(server: str) -> str | None:
    # An address is never sent as a server name (RFC 6066), only a host name is.
    with contextlib.suppress(ValueError):
        socket.inet_pton(socket.AF_INET6 if ":" in server else socket.AF_INET, server)
        return None
    return server


class TlsBridge:
    """Copies between ``raw`` (TLS) and ``plain`` (the relay's pair end) until both are done."""

    def __init__(
        self,
        raw: socket.socket,
        link: TlsLink,
        plain: socket.socket,
        done: Callable[[TlsBridge], None],
    ) -> None:
        self._raw = raw
        self._tls = link.tls
        self._incoming, self._outgoing = link.incoming, link.outgoing
        self._plain = plain
        self._done = done
        self._to_raw = bytearray()
        self._to_plain = bytearray()
        self._raw_eof = self._plain_eof = self._tls_eof = self._plain_shut = False
        self._half_close = False
        self._thread = threading.Thread(target=self._run, name="connect-tls")
        self._closed = False

    def start(self) -> None:
        self._raw.setblocking(False)
        self._plain.setblocking(False)
        self._thread.start()

    def close(self) -> None:
        """End it: both sockets are shut, which wakes the thread, then joined. Idempotent."""
        for sock in (self._raw, self._plain):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)

    def _run(self) -> None:
        try:
            with contextlib.suppress(OSError, ssl.SSLError):
                while self._step():
                    pass
        finally:
            self._raw.close()
            self._plain.close()
            self._done(self)

    def _step(self) -> bool:
        """Move what can be moved, then wait for the sockets; False once it is over."""
        self._from_tls()
        self._to_raw += self._outgoing.read()
        if self._tls_eof and not self._to_plain and not self._plain_shut:
            self._plain.shutdown(socket.SHUT_WR)
            self._plain_shut = True
        delivered = self._tls_eof and not self._to_plain
        # Everything from the share is delivered: over once nothing more can go to it either.
        if delivered and (self._raw_eof or (self._plain_eof and not self._to_raw)):
            return False
        if self._half_close and not self._to_raw:
            self._half_close = False
            self._raw.shutdown(socket.SHUT_WR)
        readers, writers = self._wanted()
        if not readers and not writers:
            return False
        readable, writable, _ = select.select(readers, writers, [])
        if self._raw in readable:
            self._read_raw()
        if self._plain in readable:
            self._read_plain()
        if self._raw in writable:
            del self._to_raw[: self._raw.send(self._to_raw)]
        if self._plain in writable:
            del self._to_plain[: self._plain.send(self._to_plain)]
        return True

    def _wanted(self) -> tuple[list[socket.socket], list[socket.socket]]:
        readers: list[socket.socket] = []
        if not self._raw_eof and len(self._to_plain) < HIGH_WATER:
            readers.append(self._raw)
        if not self._plain_eof and len(self._to_raw) < HIGH_WATER:
            readers.append(self._plain)
        writers = [
            sock
            for sock, data in ((self._raw, self._to_raw), (self._plain, self._to_plain))
            if data
        ]
        return readers, writers

    def _from_tls(self) -> None:
        while not self._tls_eof and len(self._to_plain) < HIGH_WATER:
            try:
                data = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # a close, clean or not
                data = b""
            except ssl.SSLError:
                # A fatal alert (an OpenSSL server answers a TCP half-close with one) ends the
                # connection, but only after what it decrypted before is delivered.
                self._raw_eof = True
                data = b""
            if not data:
                self._tls_eof = True
                return
            self._to_plain += data

    def _read_raw(self) -> None:
        data = self._raw.recv(READ_SIZE)
        if data:
            self._incoming.write(data)
        else:
            self._raw_eof = True
            self._incoming.write_eof()
            self._from_tls()

    def _read_plain(self) -> None:
        data = self._plain.recv(READ_SIZE)
        if data:
            self._tls.write(data)
            return
        self._plain_eof = True
        self._half_close = True  # once what is queued for the share has gone out
