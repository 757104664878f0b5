"""A revoke that completes while a connection with that token is being let in.

The gate checks the token, then the tunnel admits the connection to a slot. A revoke that ran
between the two found nothing to close (the connection was not in a slot yet), and the
connection was then admitted: a revoked token kept a raw connection to the service open.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paramiko
import pytest
from services import Service, echo
from tunnelkit import EventLog, observed_share

from safetunnel.sharing import events
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.ssh.gateway import Gateway


@pytest.fixture
def tcp_share(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> Iterator[tuple[Tunnel, Service, EventLog]]:
    with observed_share(builtin_gateway, echo, "tcp") as share:
        yield share


def test_a_revoke_between_the_token_check_and_the_slot_still_keeps_the_connection_out(
    tcp_share: tuple[Tunnel, Service, EventLog],
) -> None:
    tunnel, service, seen = tcp_share
    bob = tunnel.mint_recipient("bob")["token"]
    revoked: list[dict[str, object]] = []

    def revoke_bob_now() -> bool:
        # Runs after the gate accepted bob's token and before the connection gets its slot.
        if not revoked:
            revoked.append(tunnel.revoke_recipient("bob"))
        return True

    tunnel.add_admission_check(revoke_bob_now)
    with socket.create_connection(("127.0.0.1", tunnel.remote_port), timeout=10) as client:
        client.sendall(f"SAFETUNNEL {bob}\nafter the revoke".encode())
        client.settimeout(10)
        got = client.recv(100)
    assert revoked == [{"name": "bob", "closed": 0}]
    assert got == b"", f"a revoked token's connection was served: {got!r}"
    assert b"after the revoke" not in bytes(service.received)
    tunnel.close()
    closed = [e for e in seen.events if isinstance(e, events.ConnectionClosed)]
    assert [(e.allowed, e.reason) for e in closed] == [(False, "revoked")]
    decided = [e for e in seen.events if isinstance(e, events.Connection)]
    assert [(e.allowed, e.reason) for e in decided] == [(False, "revoked")]
