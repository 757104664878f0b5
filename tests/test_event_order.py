"""A connection's events come in the order its life took: its decision before its requests.

A request the gate answers itself (a share link's redirect, a 502 while the service is down)
used to be reported before the connection's own ``connection`` event, which came only at its
end.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paramiko
import pytest
from e2e import read_response
from services import Service, http_keepalive
from tunnelkit import gateway_session

from safetunnel import tokens
from safetunnel.sharing import events
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway


class Seen:
    """An observer that keeps the events."""

    def __init__(self) -> None:
        self.events: list[events.TunnelEvent] = []

    def started(self, tunnel: Tunnel) -> None:
        pass

    def event(self, event: events.TunnelEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


@pytest.fixture
def http_share(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> Iterator[tuple[Tunnel, Service, Seen]]:
    gateway, key = builtin_gateway
    with Service(http_keepalive) as service:
        config = TunnelConfig(
            local=("127.0.0.1", service.port), ttl=600, ssh_host="built-in", protocol="http"
        )
        seen = Seen()
        tunnel = Tunnel(gateway_session(gateway, key), config, tokens.generate(), observers=[seen])
        tunnel.start()
        try:
            yield tunnel, service, seen
        finally:
            tunnel.close()


def kinds(seen: Seen) -> list[str]:
    return [event.kind for event in seen.events if event.kind.startswith(("conn", "req"))]


def test_a_link_redirect_is_reported_after_its_connection_got_in(
    http_share: tuple[Tunnel, Service, Seen],
) -> None:
    tunnel, _, seen = http_share
    with socket.create_connection(("127.0.0.1", tunnel.remote_port), timeout=10) as client:
        client.sendall(
            f"GET /?safetunnel_token={tunnel.token} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert read_response(client).status == 303
    tunnel.close()
    assert kinds(seen) == ["connection", "request", "connection-closed"]
    decided = next(e for e in seen.events if isinstance(e, events.Connection))
    assert decided.allowed


def test_a_502_is_reported_after_its_connection_got_in(
    http_share: tuple[Tunnel, Service, Seen],
) -> None:
    tunnel, service, seen = http_share
    service.close()  # nothing listens on the service's port any more
    with socket.create_connection(("127.0.0.1", tunnel.remote_port), timeout=10) as client:
        client.sendall(
            f"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: {tunnel.token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert read_response(client).status == 502
    tunnel.close()
    assert kinds(seen) == ["connection", "request", "connection-closed"]
