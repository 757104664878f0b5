"""One tuned paramiko Transport, shared by the client and the built-in gateway.

The subclass adds what paramiko does not offer: a global request with a timeout (paramiko's
``global_request(wait=True)`` waits forever on a silent peer) and a record of the server's
SSH_MSG_DEBUG texts (paramiko only logs them, and OpenSSH announces a widened bind that way).
Both rely on paramiko internals (``completion_event``, ``global_response``,
``_send_user_message``, ``_parse_debug``, ``_tcp_handler``); tests/test_ssh_client.py exercises
each against a real OpenSSH so a paramiko upgrade that changes them fails loudly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST

from safetunnel.errors import SSHError

log = logging.getLogger("safetunnel.ssh")

# Measured against ssh -R: 2-4 MiB windows and ~256 KiB packets were fastest; a 16 MiB window cut
# throughput tenfold, so do not "improve" these upwards without measuring (benchmarks/).
WINDOW_SIZE = 2 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
READ_SIZE = 128 * 1024
# AEAD first: with AES-GCM paramiko makes one ``cryptography`` call per packet, where CTR+HMAC
# builds a new HMAC object and compares the MAC in a pure-Python loop on every packet, in and out,
# all on the single transport thread that carries every connection (profiled: ~20% of that
# thread's GIL time at 50 concurrent connections). GCM is also what OpenSSH offers right after
# ChaCha20-Poly1305, and it is not affected by Terrapin. CTR stays as the fallback.
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)

ForwardHandler = Callable[[paramiko.Channel, tuple[str, int], tuple[str, int]], None]


def _disabled_algorithms() -> dict[str, list[str]]:
    """CBC ciphers and SHA-1/MD5 MACs are off (weak or attackable constructions that no current
    OpenSSH server needs); computed from paramiko's own lists so new names are caught."""
    transport_cls: Any = paramiko.Transport
    ciphers = [name for name in transport_cls._preferred_ciphers if "-cbc" in name]
    macs = [name for name in transport_cls._preferred_macs if "sha1" in name or "md5" in name]
    return {"ciphers": ciphers, "macs": macs}


DISABLED_ALGORITHMS = _disabled_algorithms()


class RequestTimeout(Exception):
    """No reply to a global request in time; the connection must be treated as dead."""


class RequestAborted(Exception):
    """The transport closed, or the caller asked to stop, while waiting for a reply."""


class TunedTransport(paramiko.Transport):
    """paramiko.Transport with the measured window/packet sizes, the algorithm policy above and
    global requests that time out instead of hanging on a silent server."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__(
            sock,
            default_window_size=WINDOW_SIZE,
            default_max_packet_size=MAX_PACKET_SIZE,
            disabled_algorithms=DISABLED_ALGORITHMS,
        )
        options = self.get_security_options()
        offered = set(options.ciphers)
        options.ciphers = tuple(
            [name for name in PREFERRED_CIPHERS if name in offered]
            + [name for name in options.ciphers if name not in PREFERRED_CIPHERS]
        )
        self.banner_timeout = timeout
        self.handshake_timeout = timeout
        self.auth_timeout = timeout
        self.debug_messages: list[str] = []

    def _parse_debug(self, m: paramiko.Message) -> None:
        """Keep SSH_MSG_DEBUG texts; called on the transport thread in packet order."""
        m.get_boolean()  # always_display
        text = m.get_text()
        self.debug_messages.append(text)  # list.append is atomic; readers copy
        log.debug("server debug message: %r", text)

    def set_forward_handler(self, handler: ForwardHandler | None) -> None:
        """Install the forwarded-tcpip handler (what request_port_forward does after replying)."""
        self._tcp_handler = handler

    def timed_request(
        self,
        kind: str,
        data: tuple[Any, ...] | None,
        timeout: float,
        stop: threading.Event | None = None,
    ) -> paramiko.Message | None:
        """Send a global request with want_reply and wait at most ``timeout`` seconds.

        Returns the success message, or None for a failure reply. The caller must serialize all
        global requests (paramiko matches replies through one shared ``completion_event``).
        """
        event = threading.Event()
        self.completion_event = event
        message = paramiko.Message()
        message.add_byte(cMSG_GLOBAL_REQUEST)
        message.add_string(kind)
        message.add_boolean(True)
        if data is not None:
            message.add(*data)
        self._send_user_message(message)
        deadline = time.monotonic() + timeout
        while not event.wait(min(0.05, max(deadline - time.monotonic(), 0))):
            if not self.is_active() or (stop is not None and stop.is_set()):
                raise RequestAborted(kind)
            if time.monotonic() >= deadline:
                raise RequestTimeout(kind)
        return self.global_response

    def _send_user_message(self, data: paramiko.Message) -> None:
        # Declared here only for the type checker: paramiko's stubs omit it.
        super()._send_user_message(data)  # type: ignore[misc]


def connect_socket(hostname: str, port: int, timeout: float) -> socket.socket:
    """TCP connect with a timeout and TCP_NODELAY (Nagle's delay stalls the small packets of
    an SSH handshake and of request/response traffic); SSHError on failure."""
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as exc:
        raise SSHError(
            f"Cannot connect to {hostname} port {port}: {exc.strerror or exc}",
            hint="Check the host name and port, and that sshd is running there.",
        ) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tune_accepted(sock: socket.socket) -> None:
    """TCP_NODELAY on a socket handed to a relay: without it Nagle's algorithm holds back small
    writes, which showed up as 40-80 ms stalls per request."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
