"""For tests that drive a real Tunnel: an observer that keeps its events, a scripted clock."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import paramiko
from services import Service

from safetunnel import tokens
from safetunnel.gate.policy import GateProtocol
from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.client import SSHSession, open_session
from safetunnel.ssh.gateway import Gateway
from safetunnel.ssh.target import SSHTarget


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


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, value: float) -> None:
        with self._lock:
            self.now = value


def gateway_session(gateway: Gateway, key: paramiko.PKey) -> SSHSession:
    """A client session to an in-process gateway, trusting exactly its host key."""
    return open_session(
        SSHTarget(*gateway.address, "t"),
        hostkeys=None,
        on_unknown_key=None,
        auth=None,
        client_key=key,
        expected_key=gateway.host_key,
    )


@contextlib.contextmanager
def observed_share(
    builtin: tuple[Gateway, paramiko.PKey],
    handler: Callable[..., None],
    protocol: GateProtocol,
) -> Iterator[tuple[Tunnel, Service, EventLog]]:
    """A started in-process share of a ``handler`` service through the built-in gateway, with
    an :class:`EventLog` among its observers; closed at the end."""
    gateway, key = builtin
    with Service(handler) as service:
        local = ("127.0.0.1", service.port)
        config = TunnelConfig(local=local, ttl=600, ssh_host="built-in", protocol=protocol)
        seen = EventLog()
        tunnel = Tunnel(gateway_session(gateway, key), config, tokens.generate(), observers=[seen])
        tunnel.start()
        try:
            yield tunnel, service, seen
        finally:
            tunnel.close()
