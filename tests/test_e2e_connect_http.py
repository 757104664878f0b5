"""End to end: ``connect`` to an HTTP-only share (``--protocol http``), through a real sshd.

The browser case: curl against the local port with no token. The gate takes connect's preamble
as the start of HTTP and still frames and checks every request as that recipient's, so the
share's request events and audit name the recipient, revoking it closes connect's connection,
and the service never sees the token. The harness greps every output and file for the tokens and
tickets.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest
from e2e import E2E, ShareProcess, closed_by_peer, read_response, request_bytes
from services import http_keepalive
from sshd import SSHD

from safetunnel.tickets import decode

pytestmark = pytest.mark.sshd


def curl(port: int, path: str) -> tuple[int, bytes]:
    out = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code or 0), body


def mint(e2e: E2E, tunnel_id: str, name: str) -> str:
    ticket = e2e.cli_ok("ticket", tunnel_id, "--for", name).stdout.strip()
    e2e.tickets.append(ticket)
    e2e.tokens.append(decode(ticket).token)
    return ticket


def local_port(e2e: E2E, ticket: str, sshd: SSHD) -> tuple[ShareProcess, int]:
    proc = e2e.connect(ticket, via=sshd)
    return proc, int(proc.next_event("listening")["local"].rpartition(":")[2])


def test_curl_without_a_token_reaches_an_http_only_share_as_the_recipient(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--protocol", "http", via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    alice = mint(e2e, started["id"], "alice")
    proc, port = local_port(e2e, alice, shared_sshd)

    assert curl(port, "/one?x=1") == (200, b"hello /one?x=1")
    assert curl(port, "/two") == (200, b"hello /two")
    received = bytes(service.received)
    assert b"GET /one?x=1" in received and b"GET /two" in received
    assert decode(alice).token.encode() not in received and b"SAFETUNNEL" not in received

    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0
    events = [json.loads(line) for line in share.stdout_lines if line.strip()]
    paths = [e["path"] for e in events if e["event"] == "request"]
    assert paths == ["/one", "/two"]
    audit = e2e.audit(started["id"])
    allowed = [e for e in audit if e["event"] == "connection" and e["allowed"]]
    assert allowed and {e.get("recipient") for e in allowed} == {"alice"}
    assert {e.get("protocol") for e in allowed} == {"http"}


def test_revoking_the_recipient_closes_its_connect_connection(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--protocol", "http", via=shared_sshd, ttl="60s")
    started = e2e.started(share)
    proc, port = local_port(e2e, mint(e2e, started["id"], "bob"), shared_sshd)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
        kept.sendall(request_bytes("/before", {}))
        assert read_response(kept, 10.0).status == 200
        assert "closed 1 open connection" in e2e.cli_ok("revoke", started["id"], "bob").stdout
        assert closed_by_peer(kept), "bob's connect connection stayed open"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
        again.sendall(request_bytes("/after", {}))
        assert closed_by_peer(again)  # the preamble is refused: a close, no answer
    assert b"/after" not in bytes(service.received)

    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0
