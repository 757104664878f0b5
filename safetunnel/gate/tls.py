"""TLS for the remote side of a share, as a sans-IO codec: bytes in, bytes out, no sockets.

The server side of one TLS connection over two memory BIOs (the standard library's ``ssl``):
ciphertext from the remote goes in with :meth:`TlsCodec.receive`, which returns the plaintext
it completes; plaintext for the remote goes in with :meth:`TlsCodec.send`; whatever must travel
to the remote (handshake records, encrypted data, the closing alert) waits in
:meth:`TlsCodec.outgoing` until the caller writes it. The gate behind it only ever sees
plaintext, so nothing else in the gate knows TLS exists.

A failed handshake or a damaged record raises :class:`TlsRefused`, which is an ``OSError``:
whoever moves the bytes treats it as a broken connection and closes it, and no byte of what
came in reaches the gate.
"""

from __future__ import annotations

import ssl

# The most plaintext taken out of the TLS object per call: one TLS record holds at most 16 KiB,
# so this drains several records at a time without growing an unbounded buffer.
_READ_CHUNK = 256 * 1024


class TlsRefused(ConnectionError):
    """The remote did not speak TLS acceptably (plain text, an old version, a bad record).

    ``reason`` is short and safe to audit: OpenSSL's reason code, never the bytes received.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"TLS refused: {reason}")
        self.reason = reason
        self.audit_reason = "tls"  # what the audit and the events say: refused, by TLS


def server_context(min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    """A server context with the library's defaults and TLS 1.2 at least; no certificate yet.

    Session tickets are off: a ticket would be sent right after the handshake, unasked, and a
    share lives too briefly for resumption to matter."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = min_version
    context.num_tickets = 0
    # A client that is done sending may half-close TCP without a closing alert (`connect` must:
    # OpenSSL refuses any record after its own alert). Without this option OpenSSL takes that
    # EOF as an attack and fails the connection, and the answer still on its way is lost.
    context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


class TlsCodec:
    """One server-side TLS connection, sans IO. Not thread-safe: callers serialize access."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshake_done = False
        self.ended = False  # the remote closed (close_notify or EOF): no more plaintext
        self._heard = False  # the remote sent anything at all
        self._closed = False  # our closing alert is queued, or nothing polite is left to send

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext (``b""``: the remote's EOF) and return the plaintext now complete.

        ``b""`` back means "nothing yet" unless :attr:`ended` is set. Raises TlsRefused, also
        for an EOF in the middle of a handshake: a client that starts one and gives up (one that
        did not like the key it was shown) failed it. An EOF before any byte is no handshake
        at all, as a connection that sends nothing is no request."""
        if data:
            self._heard = True
            self._incoming.write(data)
        elif not self.handshake_done:
            self.ended = self._closed = True
            if self._heard:
                raise TlsRefused("closed during the handshake")
            return b""
        else:
            self._incoming.write_eof()
        try:
            if not self.handshake_done:
                self._tls.do_handshake()
                self.handshake_done = True
            return self._read_all()
        except ssl.SSLWantReadError:
            return b""
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self.ended = True
            return b""
        except ssl.SSLError as err:
            self._closed = True
            raise TlsRefused(_reason(err)) from None
        finally:
            if not data:
                self.ended = True

    def _read_all(self) -> bytes:
        chunks: list[bytes] = []
        try:
            while chunk := self._tls.read(_READ_CHUNK):
                chunks.append(chunk)
            self.ended = True  # an empty read is the remote's close_notify
        except ssl.SSLWantReadError:
            return b"".join(chunks)  # the next record is not complete: it comes with more input
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self.ended = True
        return b"".join(chunks)

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` for the remote (it then waits in :meth:`outgoing`)."""
        if not self.handshake_done:
            raise TlsRefused("data to send before the handshake finished")
        view = memoryview(data)
        try:
            while view:
                view = view[self._tls.write(view) :]
        except ssl.SSLError as err:
            raise TlsRefused(_reason(err)) from None

    def close(self) -> None:
        """Queue the closing alert (close_notify) once; the remote may still send, unread."""
        if not self.handshake_done or self._closed:
            return
        self._closed = True
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            return  # our alert is queued; the remote's answer is not awaited
        except ssl.SSLError:
            return  # already broken: nothing polite is left to send

    def outgoing(self) -> bytes:
        """What must be written to the remote now, in order (possibly ``b""``)."""
        return self._outgoing.read()

    @property
    def pending_output(self) -> bool:
        return self._outgoing.pending > 0


def _reason(err: ssl.SSLError) -> str:
    reason = getattr(err, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else "handshake failed"
