"""The idle limit runs on the tunnel's injected clock, through the stats' "idle since".

Before the stats took the tunnel's clock, "idle since" came from ``time.monotonic`` while the
tunnel's ``now`` came from its own clock, so a scripted clock could never make a tunnel idle."""

from __future__ import annotations

import paramiko
from services import Service, echo
from tunnelkit import Clock, gateway_session

from safetunnel import tokens
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway


def test_idle_limit_follows_the_injected_clock(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    gateway, key = builtin_gateway
    clock = Clock(1000.0)
    with Service(echo) as service:
        session = gateway_session(gateway, key)
        config = TunnelConfig(
            local=("127.0.0.1", service.port), ttl=3600, ssh_host="built-in", idle=60
        )
        tunnel = Tunnel(session, config, tokens.generate(), clock=clock)
        tunnel.start()
        try:
            clock.set(1059.0)
            assert not tunnel.wait(0.6)  # a minute less a second of nothing: still up
            clock.set(1061.0)
            assert tunnel.wait(10)
        finally:
            tunnel.close()
    assert tunnel.stop_reason == "idle"
