"""End to end: per-recipient tickets minted for a running share, and revoked while in use.

Real console script, real OpenSSH sshd. Two recipients get their own tickets from `safetunnel
ticket`; both reach the share (HTTP on a kept-alive connection, raw TCP with the preamble, and
`safetunnel connect`); one is revoked: its open connections close at once, its token is refused
from then on, and the other keeps working. The harness greps every output and file for the
share's token, both minted tokens and all tickets.
"""

from __future__ import annotations

import json
import signal
import socket

import pytest
from e2e import E2E, closed_by_peer, connect, read_response, recv_all, request_bytes
from services import echo, http_keepalive
from sshd import SSHD

from safetunnel.tickets import decode

pytestmark = pytest.mark.sshd


def mint(e2e: E2E, tunnel_id: str, name: str) -> str:
    """The token inside a fresh ticket for ``name``; both join the secrets checked at the end."""
    out = e2e.cli_ok("ticket", tunnel_id, "--for", name)
    ticket = out.stdout.strip()
    token = decode(ticket).token
    e2e.tickets.append(ticket)
    e2e.tokens.append(token)
    assert token not in out.stderr and ticket not in out.stderr
    return token


def get(sock: socket.socket, path: str, token: str) -> int:
    sock.sendall(request_bytes(path, {"X-Safetunnel-Token": token}))
    return read_response(sock, 10.0).status


def test_a_revoked_http_recipient_is_cut_off_and_the_other_keeps_working(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    # One failure would end the share: a revoked token's retries must not count as failures.
    share = e2e.share(service.port, "--max-failures", "1", via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    tunnel_id, port = started["id"], started["remote_port"]
    alice, bob = mint(e2e, tunnel_id, "alice"), mint(e2e, tunnel_id, "bob")
    assert alice != bob != started["token"]

    with connect(port, 10.0) as kept_alice, connect(port, 10.0) as kept_bob:
        assert get(kept_alice, "/alice-1", alice) == 200
        assert get(kept_bob, "/bob-1", bob) == 200
        revoked = e2e.cli_ok("revoke", tunnel_id, "alice")
        assert "revoked alice; closed 1 open connection" in revoked.stdout
        assert closed_by_peer(kept_alice), "alice's kept-alive connection stayed open"
        with connect(port, 10.0) as fresh:
            assert get(fresh, "/alice-2", alice) == 401
        assert get(kept_bob, "/bob-2", bob) == 200
        with connect(port, 10.0) as own:  # the share's own token is the recipient "default"
            assert get(own, "/default", started["token"]) == 200

    assert b"/alice-2" not in bytes(service.received)
    status = e2e.status(tunnel_id)
    by_name = {r["name"]: r for r in status["recipients"]}
    assert set(by_name) == {"default", "alice", "bob"}
    assert by_name["alice"]["revoked"] and not by_name["bob"]["revoked"]
    assert (by_name["alice"]["connections"], by_name["bob"]["connections"]) == (1, 1)
    assert e2e.cli("revoke", tunnel_id, "alice").returncode == 2  # once only
    assert e2e.cli("ticket", tunnel_id, "--for", "bad name").returncode == 2

    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0
    audit = e2e.audit(tunnel_id)
    used = {e.get("recipient") for e in audit if e["event"] == "connection" and e["allowed"]}
    assert {"alice", "bob", "default"} <= used
    changes = [(e["name"], e["action"]) for e in audit if e["event"] == "recipient"]
    assert changes == [("alice", "added"), ("bob", "added"), ("alice", "revoked")]
    assert any(e["event"] == "connection" and e["reason"] == "revoked" for e in audit)
    cut = [e for e in audit if e["event"] == "connection" and e.get("recipient") == "alice"]
    assert [e["reason"] for e in cut if e["allowed"]] == ["revoked"]  # closed by the revoke
    assert [e["reason"] for e in audit if e["event"] == "stopped"] == ["signal"]
    events = [json.loads(line) for line in share.stdout_lines if line.strip()]
    connections = [e for e in events if e["event"] == "connection" and e["allowed"]]
    assert {e.get("recipient") for e in connections} == {"alice", "bob", "default"}


def test_a_revoked_tcp_recipient_is_cut_off_and_connect_with_the_other_works(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(echo)
    share = e2e.share(service.port, "--protocol", "tcp", via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    tunnel_id, port = started["id"], started["remote_port"]
    alice = mint(e2e, tunnel_id, "alice")
    mint(e2e, tunnel_id, "bob")
    bob_ticket = e2e.tickets[-1]

    with connect(port, 10.0) as raw:
        raw.sendall(f"SAFETUNNEL {alice}\nping".encode())
        assert raw.recv(4) == b"ping"
        e2e.cli_ok("revoke", tunnel_id, "alice")
        assert closed_by_peer(raw), "alice's raw connection stayed open"
    with connect(port, 10.0) as again:
        again.sendall(f"SAFETUNNEL {alice}\nagain".encode())
        assert recv_all(again) == b""
    assert b"again" not in bytes(service.received)

    proc = e2e.connect(bob_ticket, via=shared_sshd)
    local = int(proc.next_event("listening")["local"].rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", local), timeout=10) as client:
        client.sendall(b"pong")
        assert client.recv(4) == b"pong"
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0
    audit = e2e.audit(tunnel_id)
    used = {e.get("recipient") for e in audit if e["event"] == "connection" and e["allowed"]}
    assert used == {"alice", "bob"}
