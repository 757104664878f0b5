"""TLS on the remote side of a share: a :class:`ByteStream` that the pump reads plaintext from.

The pumps see only ``ByteStream``; wrapping the forwarded stream here puts TLS at the one edge
where the remote's bytes come in and go out, for both engines, and the pumps stay unchanged:
every byte from the remote is decrypted before the gate sees it, and every byte to the remote
(the gate's answers, the service's replies, raw bytes once piped) is encrypted. A plain share
never builds one, so its data path is untouched.

Threading: one thread reads the remote at a time (the pump's rule), while another may write
(the service side). The codec is not thread-safe, so each call into it holds ``_codec_lock``;
records must leave in the order the codec made them, so whatever takes records out of the codec
and writes them holds ``_send_lock`` around both (always taken before ``_codec_lock``).
Blocking reads of the remote happen outside both locks.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable

from safetunnel.gate.tls import TlsCodec, TlsRefused
from safetunnel.ssh.engine import ByteStream, StreamHandler


def tls_streams(context: ssl.SSLContext | None, handler: StreamHandler) -> StreamHandler:
    """``handler`` as is without a context; else one that wraps each stream in TLS first."""
    if context is None:
        return handler

    def wrapped(stream: ByteStream) -> None:
        handler(TlsStream(stream, context))

    return wrapped


class TlsStream:
    """One forwarded connection with TLS between it and the pump (the server side)."""

    def __init__(self, stream: ByteStream, context: ssl.SSLContext) -> None:
        self._stream = stream
        self._codec = TlsCodec(context)
        self._codec_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._plain = bytearray()  # decrypted, not read yet (only the reading thread uses it)

    @property
    def origin(self) -> tuple[str, int]:
        return self._stream.origin

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Plaintext, as :meth:`ByteStream.read`; the handshake runs inside the first reads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._plain:
            if self._codec.ended:
                return b""
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            data = self._stream.read(max_bytes, wait)
            try:
                with self._codec_lock:
                    self._plain += self._codec.receive(data)
            except TlsRefused:
                with contextlib.suppress(OSError, EOFError):
                    self._send_records()  # the alert saying why, if the remote still listens
                raise
            self._send_records()  # the handshake's next flight, if any
        chunk = bytes(self._plain[:max_bytes])
        del self._plain[:max_bytes]
        return chunk

    def write_all(self, data: bytes) -> None:
        with self._send_lock:
            with self._codec_lock:
                self._codec.send(data)
                records = self._codec.outgoing()
            self._stream.write_all(records)

    def half_close(self) -> None:
        """close_notify, then the underlying half-close: the remote sees a clean end."""
        with self._send_lock:
            with self._codec_lock:
                self._codec.close()
                records = self._codec.outgoing()
            if records:
                self._stream.write_all(records)
        self._stream.half_close()

    def close(self) -> None:
        # No close_notify here: close() also ends stuck connections at teardown, and writing
        # to a client that reads nothing could block it.
        self._stream.close()

    def discard_input(self) -> None:
        self._stream.discard_input()

    def notify_on_input(self, callback: Callable[[], None]) -> bool:
        """Plaintext already decrypted (or the remote's close) counts as input waiting."""
        notifies = self._stream.notify_on_input(callback)
        if notifies and (self._plain or self._codec.ended):
            callback()
        return notifies

    def _send_records(self) -> None:
        with self._send_lock:
            with self._codec_lock:
                records = self._codec.outgoing()
            if records:
                self._stream.write_all(records)
