"""A connection's events come in the order its life took: its decision before its requests.

A request the gate answers itself (a share link's redirect, a 502 while the service is down)
used to be reported before the connection's own ``connection`` event, which came only at its
end.
"""

from __future__ import annotations

import socket

import paramiko
import pytest
from e2e import read_response
from services import http_keepalive
from tunnelkit import observed_share

from safetunnel.sharing import events
from safetunnel.ssh.gateway import Gateway


@pytest.mark.parametrize("answer", [303, 502])
def test_a_request_the_gate_answers_is_reported_after_its_connection_got_in(
    builtin_gateway: tuple[Gateway, paramiko.PKey], answer: int
) -> None:
    with observed_share(builtin_gateway, http_keepalive, "http") as (tunnel, service, seen):
        if answer == 303:  # a share link: the gate sets its cookie and redirects
            head = f"GET /?safetunnel_token={tunnel.token} HTTP/1.1\r\nHost: x\r\n"
        else:  # the service is down: the gate answers 502
            service.close()
            head = f"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: {tunnel.token}\r\n"
        with socket.create_connection(("127.0.0.1", tunnel.remote_port), timeout=10) as client:
            client.sendall(f"{head}Connection: close\r\n\r\n".encode())
            assert read_response(client).status == answer
        tunnel.close()
    kinds = [e.kind for e in seen.events if e.kind.startswith(("conn", "req"))]
    assert kinds == ["connection", "request", "connection-closed"]
    decided = next(e for e in seen.events if isinstance(e, events.Connection))
    assert decided.allowed
