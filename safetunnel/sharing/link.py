"""The SSH side of one tunnel: the session it forwards through, and the replacements after a loss.

The first session belongs to the tunnel's resources (closed at teardown with the rest). Every
replacement belongs to this object: the session it replaces is closed when the loss is noticed,
and the current one in :meth:`close`. A replaced session's watchdog may still call back late;
that callback names its session and is ignored once it is not the current one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Literal

from safetunnel.sharing.reconnect import Outage, Reconnector
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.engine import EngineSession, Listener, StreamHandler

State = Literal["serving", "reconnecting"]


class Link:
    """The current session and forward of a tunnel; see the module docstring."""

    def __init__(
        self,
        session: EngineSession,
        config: TunnelConfig,
        on_stream: StreamHandler,
        reconnector: Reconnector | None,
    ) -> None:
        self.session = session
        self.listener: Listener | None = None
        self.state: State = "serving"
        self._first = session
        self._config = config
        self._on_stream = on_stream
        self._reconnector = reconnector
        self._port = config.remote_port  # the port actually assigned, once the forward is up
        self._lock = threading.Lock()
        self._closed = False
        self._dead: list[EngineSession] = []  # lost sessions: closed on the worker, and in close()

    @property
    def port(self) -> int:
        """The remote port (0 until the first forward is up); kept while reconnecting."""
        return self._port

    @property
    def reconnects(self) -> bool:
        return self._reconnector is not None

    def start(self, on_lost: Callable[[], None]) -> None:
        """Request the first forward and watch the session; raises ForwardRefused (exit 6)."""
        self.listener = self.forward(self.session)
        self._port = self.listener.port
        self._watch(self.session, on_lost)

    def forward(self, session: EngineSession) -> Listener:
        """Ask ``session`` for the tunnel's forward: the same bind, and after the first time the
        same port the server assigned then (also when the user asked for port 0)."""
        return session.forward(
            self._config.remote_bind,
            self._port,
            self._on_stream,
            allow_wildcard=self._config.public,
        )

    def _watch(self, session: EngineSession, on_lost: Callable[[], None]) -> None:
        def lost() -> None:
            if session is self.session and not self.reconnects:
                on_lost()  # with reconnects the supervisor notices is_active() and recovers

        session.start_watchdog(self._config.keepalive, lost)

    def is_active(self) -> bool:
        return self.session.is_active()

    def recover(self, outage: Outage, on_lost: Callable[[], None]) -> bool:
        """Replace the lost session; True once a new one serves, False when the tunnel is
        stopping. Raises what ends the tunnel (a fatal error, or ConnectionLost)."""
        assert self._reconnector is not None
        dead = self.session
        self.state = "reconnecting"
        why = "the SSH connection stopped answering or was closed"
        self._dead.append(dead)
        self._reconnector.retire(dead)  # its channels are gone; nothing of it may linger
        return self._reconnector.recover(
            outage, self.forward, lambda opened: self._adopt(opened, on_lost), self._port, why
        )

    def _adopt(self, opened: tuple[EngineSession, Listener], on_lost: Callable[[], None]) -> bool:
        """Make a new session the current one; False (closing it) when the tunnel is gone."""
        with self._lock:
            if self._closed:
                opened[0].close()
                return False
            self.session, self.listener = opened
        self._watch(self.session, on_lost)
        self.state = "serving"
        return True

    def close_listener(self) -> None:
        """Cancel the current forward (no new connections). Idempotent."""
        if self.listener is not None:
            with contextlib.suppress(Exception):
                self.listener.close()

    def close(self, timeout: float) -> None:
        """Close the current session if it is a replacement (the first one is a resource of
        the tunnel), after giving an attempt under way ``timeout`` s to end. Idempotent."""
        with self._lock:
            self._closed = True
            current = self.session
        if self._reconnector is not None:
            self._reconnector.close(timeout)
        for session in (current, *self._dead):
            if session is not self._first:  # the first one is the tunnel's resource
                with contextlib.suppress(Exception):
                    session.close()  # idempotent: a retired one may be closed already
