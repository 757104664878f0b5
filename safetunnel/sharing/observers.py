"""Who watches a tunnel: the one protocol for everything that reacts to a tunnel's life.

The registry publication (record, control socket, audit lines) and the terminal UI are both
observers. A tunnel calls, in this order:

1. ``started(tunnel)`` on each observer in the order given, once the forward is up and before the
   ``Started`` event. An observer that raises aborts the share: the tunnel is torn down and the
   error propagates to whoever called ``start``. This is where the publication writes its record,
   so whoever sees ``Started`` also finds the tunnel listed.
2. ``event(ev)`` for every event, ``Stopped`` last. A failing observer is logged and skipped: a
   closed stdout must not stop a tunnel. Events come in batches (one or more), each followed by
   ``flush()`` on the observers that have one: an observer may hold what it writes until then,
   so a busy share's lines go out with one write per batch instead of one per event.
3. ``close()`` once, after the tunnel's own resources (forward, connections, SSH session, gateway)
   are down and ``Stopped`` was delivered, in the reverse of the order given. The publication is
   given first, so it is closed last and ``kill`` sees the record vanish only when all else is
   down. ``close`` is also called when ``start`` fails, without ``started`` or any event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from safetunnel.sharing.events import TunnelEvent

# What ``started`` is handed: the tunnel. A type parameter rather than an import, so the tunnel
# module and this one do not import each other.
T_contra = TypeVar("T_contra", contravariant=True)
T = TypeVar("T")

log = logging.getLogger("safetunnel.sharing.observers")


class TunnelObserver(Protocol[T_contra]):
    def started(self, tunnel: T_contra) -> None: ...
    def event(self, event: TunnelEvent) -> None: ...
    def close(self) -> None: ...


class Observers(Generic[T]):
    """Several observers as one, with the failure rules and the order of the protocol above."""

    def __init__(self, observers: Sequence[TunnelObserver[T]]) -> None:
        self._observers = list(observers)

    def started(self, tunnel: T) -> None:
        for observer in self._observers:
            observer.started(tunnel)

    def event(self, event: TunnelEvent) -> None:
        for observer in self._observers:
            try:
                observer.event(event)
            except Exception:  # a broken observer (closed stdout) must not stop the tunnel
                log.warning("observer %r failed on %s", observer, event.kind, exc_info=True)

    def flush(self) -> None:
        for observer in self._observers:
            flush = getattr(observer, "flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception:  # as for event(): a closed stdout must not stop the tunnel
                log.warning("observer %r failed to flush", observer, exc_info=True)

    def close(self) -> None:
        for observer in reversed(self._observers):
            try:
                observer.close()
            except Exception:  # keep closing the rest; report, don't hide
                log.warning("closing observer %r failed", observer, exc_info=True)
