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

A failed handshake is a refusal like a wrong token, so the tunnel is told of it: it counts it
against the share's failure budget and may hold back the answer (the alert, then the close), as
it does a wrong token's. The alerts that end a connection (that one, and the closing alert of an
orderly close) are only ever sent when they can go at once: a client that reads nothing must
never hold up a close, nor the one thread that sends the held-back answers.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable

from safetunnel.gate.tls import TlsCodec, TlsRefused
from safetunnel.ssh.engine import ByteStream, StreamHandler

# Told of a failed handshake from a source host, with the refusal's answer to run: True when it
# holds the answer back and runs it later itself, False when the answer should go out now.
Refusals = Callable[[str, Callable[[], None]], bool]


def tls_streams(
    context: ssl.SSLContext | None, handler: StreamHandler, refusals: Refusals | None = None
) -> StreamHandler:
    """``handler`` as is without a context; else one that wraps each stream in TLS first."""
    if context is None:
        return handler

    def wrapped(stream: ByteStream) -> None:
        handler(TlsStream(stream, context, refusals))

    return wrapped


class TlsStream:
    """One forwarded connection with TLS between it and the pump (the server side)."""

    def __init__(
        self, stream: ByteStream, context: ssl.SSLContext, refusals: Refusals | None = None
    ) -> None:
        self._stream = stream
        self._codec = TlsCodec(context)
        self._codec_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._plain = bytearray()  # decrypted, not read yet (only the reading thread uses it)
        self._refusals = refusals
        self._held = False  # a refused handshake's answer is held back: it closes the stream

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
            in_handshake = not self._codec.handshake_done  # only this thread changes it
            try:
                with self._codec_lock:
                    self._plain += self._codec.receive(data)
            except TlsRefused:
                if in_handshake:
                    self._refused()
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
        """The closing alert if it can go at once (a client that checks for truncation then
        sees a clean end), then the close. close() also ends stuck connections at teardown, so
        it never waits: not on a write already stuck on a client that reads nothing (closing
        is what frees that one), nor on a full socket or SSH window."""
        if self._held:
            return  # the held-back answer closes the stream when it goes out
        self._last_records(close_notify=True)
        self._stream.close()

    def _refused(self) -> None:
        """A failed handshake: the tunnel counts it, and answers now or later."""
        self._held = True
        if self._refusals is not None and self._refusals(self.origin[0], self._answer):
            self._stream.discard_input()  # nothing will be read from it again
            return
        self._answer()

    def _answer(self) -> None:
        """A refused handshake's answer: the alert saying why, if it can go at once, then the
        close (any thread, once)."""
        self._last_records(close_notify=False)
        self._stream.close()

    def _last_records(self, *, close_notify: bool) -> None:
        """Send what the codec still has (after queuing the closing alert, if asked) only if it
        can go at once; otherwise (or on a stream that cannot tell) it is dropped, since the
        caller closes next. A write stuck on the remote holds the send lock: then nothing."""
        write = getattr(self._stream, "write_nowait", None)
        if not callable(write) or not self._send_lock.acquire(blocking=False):
            return
        try:
            with self._codec_lock:
                if close_notify:
                    self._codec.close()
                records = self._codec.outgoing()
            if records:
                with contextlib.suppress(OSError, EOFError):
                    write(records)
        finally:
            self._send_lock.release()

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
