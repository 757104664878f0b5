"""Attack: nothing new reaches the service after the TTL, though teardown gives a grace period.

A raw-TCP client with the token keeps sending past the expiry (on the tunnel's scripted clock).
From the expiry instant its bytes are no longer forwarded; the service's replies may still drain.
Before the fix the grace period left every connection's pump running, so raw-TCP data kept
flowing for up to 2 s after the expiry.
"""

from __future__ import annotations

import paramiko
from e2e import connect
from services import Service, echo
from tunnelkit import Clock, gateway_session

from safetunnel import tokens
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway


def test_raw_tcp_bytes_sent_after_the_expiry_never_reach_the_service(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    gateway, key = builtin_gateway
    clock, token = Clock(1000.0), tokens.generate()
    with Service(echo) as service:
        session = gateway_session(gateway, key)
        config = TunnelConfig(local=("127.0.0.1", service.port), ttl=600, ssh_host="built-in")
        tunnel = Tunnel(session, config, token, clock=clock)
        tunnel.start()
        try:
            with connect(tunnel.remote_port) as sock:
                sock.sendall(f"SAFETUNNEL {token}\n".encode() + b"before-expiry;")
                assert sock.recv(64) == b"before-expiry;"
                clock.set(1600.0)  # the expiry instant
                for _ in range(20):
                    try:
                        sock.sendall(b"after-expiry;")
                    except OSError:
                        break  # closed on us: fine, nothing got through either
                tunnel.wait(3)  # the teardown and its grace period, on the tunnel's scripted clock
                with_after = service.received.count(b"after-expiry;")
                assert with_after == 0, (
                    f"{with_after} writes sent after the expiry reached the service "
                    f"({len(service.received)} bytes in all)"
                )
        except TimeoutError:
            raise AssertionError("the echo of the bytes before the expiry never came") from None
        finally:
            clock.set(2000.0)  # whatever grace period is left runs out
            tunnel.close()
    assert tunnel.stop_reason == "ttl"
