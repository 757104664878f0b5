"""An observer that keeps every tunnel event in a list, for tests that watch a Tunnel."""

from __future__ import annotations

from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.tunnel import Tunnel


class EventLog:
    """An observer that keeps every event in a list (scripts and tests read ``events``)."""

    def __init__(self) -> None:
        self.events: list[TunnelEvent] = []

    def started(self, tunnel: Tunnel) -> None:
        """Nothing to publish."""

    def event(self, event: TunnelEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        """Nothing to release."""
