"""The built-in gateway's caps: what any client, logged in or not, can make it hold.

Every connection costs threads (paramiko's transport thread and the gateway's own per client,
two relay threads per forwarded connection), so without caps a flood of idle connections grows
the process without bound. The caps turn that into fixed figures:

- logins in progress: ``pending_logins``, two threads each; when full, the *oldest* one is
  dropped, so idle connections can never lock a real client out (it is the newest, and it only
  needs the time of one handshake), and each of them is cut at the login limit anyway;
- logged-in sessions: ``sessions``; one more is disconnected right after its login;
- forwarded connections: ``connections_per_session`` per session and ``connections`` in all, two
  threads each; one more is closed at once. A share's own gate decides which remote clients it
  keeps (and drops idle unauthorized ones), so these are only the backstop for the threads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class GatewayLimits:
    """The caps, with the defaults a standalone team gateway runs with."""

    pending_logins: int = 32
    sessions: int = 64
    connections_per_session: int = 512
    connections: int = 1024


class Slots:
    """A counter with a cap; ``take`` never waits."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._used >= self._cap:
                return False
            self._used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self._used = max(self._used - 1, 0)


def take_all(slots: tuple[Slots, ...]) -> bool:
    """One slot from each, or none at all."""
    taken: list[Slots] = []
    for slot in slots:
        if not slot.take():
            for done in taken:
                done.give()
            return False
        taken.append(slot)
    return True


class PendingLogins:
    """Connections that have not logged in yet, oldest first.

    Admitting one over the cap cuts the oldest (a shutdown wakes its threads) and waits until
    its threads have ended, so the number of login threads is a hard bound, not one that holds
    only once a burst has settled. Each connection comes with a ``gone`` event that its thread
    sets as it ends.
    """

    def __init__(self, cap: int, grace: float) -> None:
        self._cap, self._grace = cap, grace
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Event] = {}  # insertion order: oldest first

    def admit(self, conn: socket.socket, gone: threading.Event) -> None:
        with self._lock:
            self._conns[conn] = gone
            excess = max(len(self._conns) - self._cap, 0)
            evicted = [(old, self._conns.pop(old)) for old in list(self._conns)[:excess]]
        for old, _ in evicted:
            with contextlib.suppress(OSError):
                old.shutdown(socket.SHUT_RDWR)
        for _, old_gone in evicted:
            old_gone.wait(self._grace)

    def leave(self, conn: socket.socket) -> bool:
        """Forget ``conn`` (logged in, or gone); False if it was already cut to make room."""
        with self._lock:
            return self._conns.pop(conn, None) is not None
