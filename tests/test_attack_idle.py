"""Attack: wrong-token requests must not keep an ``--idle`` share alive.

The attacker sends one wrong-token request every 20 s (on the tunnel's scripted clock) to a
share with a 60 s idle limit. Only authorized traffic counts as activity, so the share ends 60 s
after it started. Before the fix every byte and every connection counted, refused or not: one
wrong request every few seconds kept the share up forever.
"""

from __future__ import annotations

from collections.abc import Iterator

import paramiko
import pytest
from e2e import http_status
from services import Service, http_keepalive
from tunnelkit import Clock, gateway_session

from safetunnel import tokens
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway

WRONG = "st_" + "A" * 43


@pytest.fixture
def idle_share(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> Iterator[tuple[Tunnel, str, Clock]]:
    """A share with ``idle=60`` on a scripted clock that starts at 1000."""
    gateway, key = builtin_gateway
    clock, token = Clock(1000.0), tokens.generate()
    with Service(http_keepalive) as service:
        session = gateway_session(gateway, key)
        config = TunnelConfig(
            local=("127.0.0.1", service.port), ttl=3600, ssh_host="built-in", idle=60
        )
        tunnel = Tunnel(session, config, token, clock=clock)
        tunnel.start()
        try:
            yield tunnel, token, clock
        finally:
            tunnel.close()


def test_wrong_token_requests_do_not_reset_the_idle_timer(
    idle_share: tuple[Tunnel, str, Clock],
) -> None:
    tunnel, _, clock = idle_share
    for now in (1020.0, 1040.0, 1055.0):
        clock.set(now)
        assert http_status(tunnel.remote_port, WRONG) == 401
    clock.set(1061.0)  # 61 s after the start, with no authorized traffic at all
    assert tunnel.wait(10), "the share is still up: refused requests reset its idle timer"
    assert tunnel.stop_reason == "idle"


def test_an_authorized_request_does_reset_it(idle_share: tuple[Tunnel, str, Clock]) -> None:
    tunnel, token, clock = idle_share
    clock.set(1050.0)
    assert http_status(tunnel.remote_port, token) == 200
    clock.set(1061.0)
    assert not tunnel.wait(0.6)  # 11 s since the last authorized request
    clock.set(1111.0)
    assert tunnel.wait(10)
    assert tunnel.stop_reason == "idle"
