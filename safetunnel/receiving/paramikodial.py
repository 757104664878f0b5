"""Reaching the share over one paramiko SSH session: a ``direct-tcpip`` channel per connection.

That is what ``ssh -L`` does. One session carries every channel; when it has died, the next
connection opens a new one, pinned to the same host key. A host key that no longer matches, a
refused login or an SSH host that cannot be reached again raise, which ends ``connect``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paramiko

from safetunnel.errors import AuthFailed, ConnectionLost, HostKeyError, SafetunnelError
from safetunnel.receiving.dialer import unreachable
from safetunnel.receiving.relay import Channel
from safetunnel.ssh.session import SSHSession

CHANNEL_TIMEOUT = 10.0

SessionOpener = Callable[[], SSHSession]


class ParamikoDialer:
    """One SSH session (reopened when it died) and a channel to ``destination`` per dial."""

    def __init__(
        self,
        open_session: SessionOpener,
        destination: tuple[str, int],
        host_label: str,
        notify: Callable[[str], None],
    ) -> None:
        self._open = open_session
        self._destination = destination
        self._label = host_label
        self._notify = notify
        self._session: SSHSession | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Log in once before anything listens, so 4/5/1 come before the local port."""
        with self._lock:
            self._session = self._open()

    def watch(self, lost: Callable[[SafetunnelError], None]) -> None:
        """Nothing to watch: the next dial finds out."""

    def dial(self, origin: tuple[str, int]) -> Channel | None:
        """A channel to the share; None when the SSH host could not reach it (said once per
        connection). Fatal failures raise: a changed host key, a refused login, a lost host."""
        for attempt in (1, 2):
            session = self._live_session(fresh=attempt == 2)
            try:
                return session.transport.open_channel(
                    "direct-tcpip", self._destination, origin, timeout=CHANNEL_TIMEOUT
                )
            except paramiko.ChannelException as err:
                self._notify(unreachable(self._destination, err.text))
                return None
            except (paramiko.SSHException, EOFError, OSError):
                continue  # the session died under us: one more try on a new one
        raise ConnectionLost(
            f"the SSH connection to {self._label} was lost and could not be reopened"
        )

    def close(self) -> None:
        """Close the session; a dial waiting on the SSH host gives up with it. Idempotent."""
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def _live_session(self, fresh: bool) -> SSHSession:
        with self._lock:
            if self._closed:
                raise ConnectionLost("connect is stopping")
            session = self._session
            if session is not None and session.is_active() and not fresh:
                return session
            if session is not None:
                session.close()
            self._session = None
            try:
                self._session = self._open()
            except (HostKeyError, AuthFailed):
                raise
            except SafetunnelError as err:
                raise ConnectionLost(
                    f"the SSH connection to {self._label} was lost and could not be "
                    f"reopened: {err.message}",
                    hint="Check the network and the SSH host, then connect again.",
                ) from None
            return self._session
