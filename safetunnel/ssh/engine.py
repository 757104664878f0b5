"""The seam between a share and the SSH engine that carries it.

A share needs three things from an engine, and nothing else:

1. **connect** to a target: what comes back is an :class:`EngineSession` that says which host key
   the server showed (state, fingerprint, key type) so that the confirmation can name it;
2. **forward**: ask the server to listen on a remote address; what comes back is a
   :class:`Listener` whose ``close()`` cancels the forward. A session hands out one listener in
   its life, because the engines underneath keep a single forward handler per connection;
3. **deliver** each connection that arrives on that remote address as a :class:`ByteStream`.

The pump and the gate see only :class:`ByteStream`: they never learn whether the bytes came
through a paramiko channel or a local socket. This module holds the protocols and the one
Listener both engines hand out (no paramiko), so that importing it stays cheap.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

# "certified": signed by a CA that the user's known_hosts trusts (@cert-authority); OpenSSH only.
HostKeyState = Literal["pinned", "certified", "newly-trusted", "builtin"]


class ByteStream(Protocol):
    """One incoming connection, as a duplex stream of bytes."""

    @property
    def origin(self) -> tuple[str, int]:
        """Where the connection came from, as the SSH server reported it."""
        ...

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes``; ``b""`` once the remote closed its side. ``TimeoutError`` when
        nothing arrived within ``timeout`` seconds (``None`` waits as long as it takes)."""
        ...

    def write_all(self, data: bytes) -> None:
        """Send every byte of ``data`` or raise ``OSError``/``EOFError``."""
        ...

    def half_close(self) -> None:
        """No more writes from this side (the remote reads EOF); reading goes on."""
        ...

    def close(self) -> None:
        """Close both directions. Idempotent and safe from any thread."""
        ...

    def discard_input(self) -> None:
        """Nothing will be read from this stream again: drop what is buffered and whatever
        still arrives, so a refused connection costs no memory while its answer waits."""
        ...

    def notify_on_input(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when input (data, EOF or close) is waiting, and again on every
        later input until re-armed; ``callback`` must only hand off, never block.

        Returns False when the stream cannot notify: the caller then reads in a thread of its
        own at once. Lets a connection hold no thread while its client is silent.
        """
        ...


StreamHandler = Callable[[ByteStream], None]


@runtime_checkable
class AcceptingHandler(Protocol):
    """A stream handler that can also accept the connections itself.

    An engine whose connections arrive on a local listening socket offers it with
    ``accept_on(listener, wrap)``: on True the handler accepts from then on (the listener is
    non-blocking, and closing it is how the engine stops that), passing ``wrap(conn)`` to
    itself; on False the engine accepts on a thread of its own. Accepting where the streams are
    served saves a thread hand-off per connection."""

    def __call__(self, stream: ByteStream) -> None: ...

    def accept_on(
        self, listener: socket.socket, wrap: Callable[[socket.socket], ByteStream]
    ) -> bool: ...


class Listener(Protocol):
    """A remote forward that is up; ``close()`` cancels it (open streams stay). Idempotent."""

    @property
    def bind(self) -> str: ...

    @property
    def port(self) -> int: ...

    def close(self) -> None: ...


class Forward:
    """A forward that is up, as a :class:`Listener`; ``close()`` calls the session's cancel,
    which must be idempotent. ``spec`` is what was asked for, where an engine cancels by it."""

    def __init__(self, bind: str, port: int, cancel: Callable[[], None], spec: str = "") -> None:
        self._bind = bind
        self._port = port
        self._cancel = cancel
        self.spec = spec

    @property
    def bind(self) -> str:
        return self._bind

    @property
    def port(self) -> int:
        return self._port

    def close(self) -> None:
        """Stop the server listening (no new connections); open streams stay."""
        self._cancel()


class EngineSession(Protocol):
    """An authenticated connection to an SSH server, as a share uses it."""

    @property
    def host_key_state(self) -> HostKeyState: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def key_type(self) -> str: ...

    def forward(
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Listener:
        """Listen on ``bind:port`` on the server (0: the server picks) and hand every incoming
        connection to ``on_stream``, which must not block (it may run on the engine's thread).

        Raises ForwardRefused when the server refuses, or widens the bind to every interface
        while ``allow_wildcard`` is False."""
        ...

    def start_watchdog(self, interval: float, on_lost: Callable[[], None]) -> None:
        """Call ``on_lost`` once when the server stops answering for about three intervals."""
        ...

    def is_active(self) -> bool: ...

    def close(self) -> None:
        """Cancel the forward and close the connection. Idempotent."""
        ...
