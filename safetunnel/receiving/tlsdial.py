"""Reaching a public share directly: TLS to its address, pinned to the ticket's public key.

No CA is asked: the share made its certificate itself, so the only trust anchor is the pin in
the ticket (``sha256//`` and the base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as
curl writes it). A server showing any other key gets nothing, not even the preamble, and ends
``connect`` (exit 4). The connection is checked once before anything listens and then again on
every dial, since each is a fresh handshake.

TLS runs on memory BIOs in one thread per connection (:class:`TlsBridge`), bridged to a socket
pair that the relay uses like any other channel: an ``ssl`` object must not be read and written
from two threads at once, which the relay's two copying threads would do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from safetunnel.addresses import format_hostport
from safetunnel.errors import HostKeyError, SafetunnelError
from safetunnel.receiving.dialer import SocketChannel
from safetunnel.receiving.relay import Channel
from safetunnel.receiving.tlsbridge import TlsBridge, TlsLink, handshake

CONNECT_TIMEOUT = 10.0


class TlsPinMismatch(HostKeyError):
    """The share's server showed a public key other than the ticket's pin: exit 4."""


def spki_pin(der_certificate: bytes) -> str:
    """``sha256//<base64>`` of the certificate's SubjectPublicKeyInfo (curl's --pinnedpubkey)."""
    key = x509.load_der_x509_certificate(der_certificate).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def client_context() -> ssl.SSLContext:
    """TLS 1.2 or later, no CA and no name check: the pin alone decides (checked by the caller
    before a byte of the client's, or the token, is sent)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class TlsDialer:
    """A fresh pinned TLS connection to ``address`` per dial."""

    def __init__(self, address: tuple[str, int], pin: str, notify: Callable[[str], None]) -> None:
        self._address = address
        self._pin = pin
        self._notify = notify
        self._context = client_context()
        self._bridges: set[TlsBridge] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """One handshake before anything listens: a wrong pin stops here, before the local port."""
        sock, tls = self._connect()
        if sock is None or tls is None:
            raise SafetunnelError(
                f"cannot reach the share at {format_hostport(*self._address)}",
                hint="Check the network; the share may have ended.",
            )
        sock.close()

    def watch(self, lost: Callable[[SafetunnelError], None]) -> None:
        """Nothing to watch: the next dial finds out."""

    def dial(self, origin: tuple[str, int]) -> Channel | None:
        del origin  # the share sees this machine's address; nothing to pass on
        sock, tls = self._connect()
        if sock is None or tls is None:
            return None
        try:
            inner, outer = socket.socketpair()
        except OSError:
            sock.close()  # no descriptor left: this connection only, and nothing leaks
            raise
        bridge = TlsBridge(sock, tls, outer, self._forget)
        with self._lock:
            if self._closed:
                bridge.close()
                inner.close()
                return None
            self._bridges.add(bridge)
        bridge.start()
        return SocketChannel(inner)

    def close(self) -> None:
        """End every TLS connection still open. Idempotent."""
        with self._lock:
            self._closed = True
            bridges, self._bridges = list(self._bridges), set()
        for bridge in bridges:
            bridge.close()

    def _forget(self, bridge: TlsBridge) -> None:
        with self._lock:
            self._bridges.discard(bridge)

    def _connect(self) -> tuple[socket.socket | None, TlsLink | None]:
        where = format_hostport(*self._address)
        try:
            sock = socket.create_connection(self._address, timeout=CONNECT_TIMEOUT)
        except OSError as err:
            self._notify(f"The share at {where} could not be reached ({err.strerror or err}).")
            return None, None
        try:
            tls = handshake(sock, self._context, self._address[0])
        except (OSError, ssl.SSLError) as err:
            sock.close()
            self._notify(f"The TLS handshake with the share at {where} failed ({err}).")
            return None, None
        shown = spki_pin(tls.tls.getpeercert(binary_form=True) or b"")
        if not hmac.compare_digest(shown.encode(), self._pin.encode()):
            sock.close()
            raise TlsPinMismatch(
                f"the share at {where} showed the TLS key {shown}, "
                f"but the ticket names {self._pin}",
                hint="Someone may be intercepting the connection; ask the sharer for a new ticket.",
            )
        return sock, tls
