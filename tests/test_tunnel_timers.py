"""The tunnel's own timers with an injected clock, over a real session to the built-in gateway:
warnings 5 and 1 minutes before expiry (once each), extend re-arming them, and TTL teardown."""

from __future__ import annotations

import time

import paramiko
from e2e import port_open, wait_for
from services import Service, echo
from tunnelkit import Clock, EventLog, gateway_session

from safetunnel import tokens
from safetunnel.sharing.events import Stopped, TunnelEvent, Warning
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway


def start_tunnel(
    gateway: Gateway, key: paramiko.PKey, service: Service, clock: Clock, ttl: int
) -> tuple[Tunnel, list[TunnelEvent]]:
    session = gateway_session(gateway, key)
    config = TunnelConfig(
        local=("127.0.0.1", service.port),
        ttl=ttl,
        ssh_host="built-in",
        tunnel_id="st-abc123",
        max_ttl=3600,
    )
    log = EventLog()
    tunnel = Tunnel(session, config, tokens.generate(), observers=[log], clock=clock)
    tunnel.start()
    return tunnel, log.events


def warnings(events: list[TunnelEvent]) -> list[str]:
    return [e.message for e in events if isinstance(e, Warning)]


def test_warnings_extend_and_ttl_follow_the_clock(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    gateway, key = builtin_gateway
    clock = Clock()
    with Service(echo) as service:
        tunnel, events = start_tunnel(gateway, key, service, clock, ttl=600)
        port = tunnel.remote_port
        try:
            time.sleep(0.6)
            assert warnings(events) == []  # 10 minutes left: nothing to say yet
            clock.set(1000.0 + 600 - 299)
            assert wait_for(lambda: len(warnings(events)) == 1, 3)
            assert warnings(events) == ["expires in 4m 59s"]
            time.sleep(0.6)
            assert len(warnings(events)) == 1  # once, not on every tick
            tunnel.extend(600)  # 14m 59s left again: both warnings re-armed
            clock.set(1000.0 + 1200 - 59)
            assert wait_for(lambda: len(warnings(events)) == 2, 3)
            time.sleep(0.6)
            # Both thresholds were crossed in one jump: one warning, with the real time left.
            assert warnings(events) == ["expires in 4m 59s", "expires in 59s"]
            assert tunnel.wait(0.3) is False and port_open(port)
            clock.set(1000.0 + 1200 + 1)
            assert tunnel.wait(10)
        finally:
            tunnel.close()
    assert tunnel.stop_reason == "ttl"
    last = events[-1]
    assert isinstance(last, Stopped) and last.reason is StopReason.TTL
    assert not port_open(port)
