"""One tuned paramiko Transport, shared by the client and the built-in gateway.

The subclass adds what paramiko does not offer: a global request with a timeout (paramiko's
``global_request(wait=True)`` waits forever on a silent peer) and a record of the server's
SSH_MSG_DEBUG texts (paramiko only logs them, and OpenSSH announces a widened bind that way).
It also keeps paramiko's transport thread from dying in a rekey (see :class:`_ClearToSend`).
All of it relies on paramiko internals (``completion_event``, ``global_response``,
``_send_message``, ``_send_user_message``, ``clear_to_send``, ``_parse_debug``,
``_tcp_handler``); tests/test_ssh_client.py exercises them against a real OpenSSH and
tests/test_attack_gateway_rekey.py the rekeys, so a paramiko upgrade that changes them fails
loudly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST

from safetunnel.addresses import format_hostport
from safetunnel.errors import SSHError
from safetunnel.ssh._socketio import read_ahead, shut_down_before_close
from safetunnel.ssh.handshake import no_answer

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


# Message numbers below this are the transport layer's own (key exchange, disconnect, ignore,
# debug); everything from here on (auth, global requests, channels) is held during a rekey.
FIRST_NON_TRANSPORT_MESSAGE = 50


class _ClearToSend(threading.Event):
    """paramiko's ``clear_to_send`` event, which first sends what the transport thread held back.

    paramiko's transport thread answers some messages itself: a channel close, a channel open, a
    global request. When it does so while a rekey is under way, a channel close waits for the
    end of the rekey that only this same thread can finish (30 s, then the connection dies with
    "Key-exchange timed out waiting for key negotiation"), and the other two go out in the
    middle of the key exchange, where a paramiko peer rejects them ("Expecting packet ...") and
    drops the connection. Heavy traffic beside short connections hit both within a minute.

    Lowering how often we rekey would only make this rarer, and rekeying is what bounds how much
    traffic one key protects, so the rekey stays. Instead the transport thread now does what the
    SSH protocol asks of every side: between its KEXINIT and the new keys it sends only
    key-exchange messages. Its other messages are queued and sent, in order, with the new keys,
    right before the user threads may send again (``set`` runs under paramiko's
    ``clear_to_send_lock``, so nothing can overtake them). Nothing leaves early or unencrypted:
    a queued message is sent under the new keys or not at all.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        super().__init__()
        self._flush = flush

    def set(self) -> None:
        self._flush()
        super().set()


# What global_response holds until the reply to the request in flight arrives.
_NO_REPLY = paramiko.Message(b"\x00no reply yet")


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
        # Only the transport thread touches these two (see _ClearToSend), so no lock.
        self._held: list[paramiko.Message] = []
        self.clear_to_send = _ClearToSend(self._send_held)
        self._socket = sock
        shut_down_before_close(self.packetizer, sock)

    def stop_polling(self) -> None:
        """From now on reads and writes of the connection wait on the socket without a timeout,
        and reads fetch what is there rather than one packet (see ``read_ahead``).

        paramiko gives the socket a 0.1 s timeout so that its thread notices a close in time.
        With a timeout, Python precedes every read and write by a poll(), and both calls let
        go of the GIL: on a share's busy connection that was about a sixth of its CPU time per
        forwarded connection (a paired run: 1 client 0.49x -> 0.52x of ``ssh -R``). A close
        now shuts the socket down first, which wakes a waiting read or write at once instead.
        Call this after the login: the banner, key exchange and login time out through the
        socket's timeout."""
        with contextlib.suppress(OSError):  # closed meanwhile: a dead transport needs neither
            self._socket.settimeout(None)
            read_ahead(self.packetizer, self._socket, READ_SIZE)

    def bound_unacknowledged(self, seconds: float) -> None:
        """Have the kernel end the connection once sent data stays unacknowledged (or unsent
        behind a peer's zero window) for ``seconds``. A write stuck on a dead peer's full buffer
        holds paramiko's write lock, and a keepalive ping waits behind it: without this bound
        nothing noticed the loss until TCP gave up, after about 15 minutes."""
        option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
        if option is not None:
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, option, max(1, round(seconds * 1000)))

    def _must_hold(self, data: paramiko.Message) -> bool:
        # Only the transport thread sets or clears clear_to_send, so on it this cannot race.
        return (
            threading.current_thread() is self
            and not self.clear_to_send.is_set()
            and data.asbytes()[0] >= FIRST_NON_TRANSPORT_MESSAGE
        )

    def _send_held(self) -> None:
        held, self._held = self._held, []
        for message in held:
            paramiko.Transport._send_message(self, message)  # type: ignore[attr-defined]

    def _send_message(self, data: paramiko.Message) -> None:
        if self._must_hold(data):
            self._held.append(data)
        else:
            super()._send_message(data)  # type: ignore[misc]

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
        paramiko also sets ``completion_event`` at the end of every rekey and when the transport
        dies, so only a changed ``global_response`` counts as the reply: otherwise a rekey during
        the wait returned the previous request's answer, and this request's late reply then
        answered the next one.
        """
        event = threading.Event()
        self.completion_event = event
        message = _global_request(kind, data)
        self.global_response = _NO_REPLY
        deadline = time.monotonic() + timeout
        # During a key exchange paramiko holds the request back, for up to its own 30 s; the
        # answer would then come (or not) long after ``timeout``. (The transport thread itself
        # must not wait: it is the one that finishes the exchange.)
        if threading.current_thread() is not self and not self.clear_to_send.wait(timeout):
            raise RequestTimeout(kind)
        self._send_user_message(message)
        while True:
            event.wait(min(0.05, max(deadline - time.monotonic(), 0)))
            response = self.global_response
            if response is not _NO_REPLY:
                return response
            if not self.is_active() or (stop is not None and stop.is_set()):
                raise RequestAborted(kind)
            if time.monotonic() >= deadline:
                raise RequestTimeout(kind)
            # Set without a reply (a rekey ended): wait on. A reply racing this clear is still
            # seen, through global_response, within one 50 ms round.
            event.clear()

    def _send_user_message(self, data: paramiko.Message) -> None:
        # On the transport thread paramiko would wait here for a rekey only that thread finishes.
        if self._must_hold(data):
            self._held.append(data)
        else:
            super()._send_user_message(data)  # type: ignore[misc]


def _global_request(kind: str, data: tuple[Any, ...] | None) -> paramiko.Message:
    """A global request that wants a reply."""
    message = paramiko.Message()
    message.add_byte(cMSG_GLOBAL_REQUEST)
    message.add_string(kind)
    message.add_boolean(True)
    if data is not None:
        message.add(*data)
    return message


def connect_socket(hostname: str, port: int, timeout: float) -> socket.socket:
    """TCP connect with a timeout and TCP_NODELAY (Nagle's delay stalls the small packets of
    an SSH handshake and of request/response traffic); SSHError on failure."""
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except TimeoutError as exc:  # strerror is None here: say what the far end did instead
        raise SSHError(
            no_answer(format_hostport(hostname, port), timeout),
            hint="Check the host name and port, and that nothing between drops the connection.",
        ) from exc
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
