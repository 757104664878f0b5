"""End to end: what the sharer sees of each HTTP request (``--json``, the live view, ``status``,
``log``), a stopped service told once and its return once, and raw TCP's duration and bytes.

Every query below carries a secret that must reach no output, record or log line; the harness
checks every output and file for the share's token afterwards.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from e2e import (
    E2E,
    TOKEN_RE,
    ShareProcess,
    connect,
    http_get,
    http_status,
    read_response,
    recv_all,
    request_bytes,
    stop,
    token_from,
    wait_until,
)
from services import Service, echo, http_keepalive
from sshd import SSHD

pytestmark = pytest.mark.sshd

SECRET = "q-secret-4f1d9c"  # in every query: shown nowhere
REQUEST_KEYS = ["event", "id", "method", "path", "status", "duration", "bytes_in", "bytes_out"]


def events_of(proc: ShareProcess, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, filter(str.strip, proc.stdout_lines)) if e["event"] == kind]


def test_each_request_is_an_event_in_status_and_in_the_log(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, via=shared_sshd, ttl="60s")
    started = e2e.started(proc)
    port, token, tunnel_id = started["remote_port"], started["token"], started["id"]
    auth = {"X-Safetunnel-Token": token}
    with connect(port) as sock:  # two requests on one keep-alive connection
        sock.sendall(request_bytes(f"/report?key={SECRET}", auth))
        first = read_response(sock)
        body = b"name=value"
        head = request_bytes("/form", {**auth, "Content-Length": str(len(body))}, method="POST")
        sock.sendall(head + body)
        second = read_response(sock)
    link = http_get(port, f"/docs?safetunnel_token={token}&x={SECRET}")
    assert (first.status, second.status, link.status) == (200, 200, 303)

    requests = {e["path"]: e for e in (proc.next_event("request") for _ in range(3))}
    assert set(requests) == {"/report", "/form", "/docs"}
    for event in requests.values():
        assert list(event) == REQUEST_KEYS and event["id"] == tunnel_id
        assert isinstance(event["status"], int) and isinstance(event["duration"], float)
    report, form, docs = requests["/report"], requests["/form"], requests["/docs"]
    assert (report["method"], report["status"], report["bytes_out"]) == ("GET", 200, len(first.raw))
    assert (form["method"], form["bytes_out"]) == ("POST", len(second.raw))
    assert form["bytes_in"] + report["bytes_in"] == len(service.received)  # all it was sent
    assert service.received.endswith(body)
    assert (docs["status"], docs["bytes_in"]) == (303, 0)  # the gate's own answer to a link

    status = e2e.status(tunnel_id)
    assert {r["path"] for r in status["requests"]} == set(requests)
    text = e2e.cli_ok("status", tunnel_id).stdout
    assert "Recent requests:" in text
    assert re.search(r"^POST\s+/form\s+200\s", text, re.MULTILINE), text

    assert stop(proc, e2e.env) == 0
    audited = [e for e in e2e.audit(tunnel_id) if e["event"] == "request"]
    assert sorted(e["path"] for e in audited) == ["/docs", "/form", "/report"]
    log = e2e.cli_ok("log", tunnel_id).stdout
    assert re.search(r"\brequest\s+method=GET path=/report status=200 duration=", log), log
    audit_text = (e2e.sandbox.state_dir / "audit.jsonl").read_text()
    events = "".join(line for line in proc.stdout_lines if '"event":"started"' not in line)
    for shown in (events, proc.stderr, json.dumps(status), text, log, audit_text):
        assert SECRET not in shown and "safetunnel_token" not in shown


def test_the_live_view_shows_requests_and_tcp_ends_printably(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, via=shared_sshd, ttl="60s", as_json=False)
    # The record is written before the started block is printed: wait for the block itself.
    wait_until(lambda: TOKEN_RE.search(proc.stderr) is not None, timeout=30, what="the token")
    token = token_from(proc.stderr)
    e2e.tokens.append(token)
    port = e2e.list_json()[0]["remote_port"]

    long_path = "/" + "a" * 400 + "/%1b%5b2J"
    assert http_status(port, token, f"{long_path}?{SECRET}") == 200
    with connect(port) as sock:  # a raw TCP connection to the same share (protocol auto)
        sock.sendall(f"SAFETUNNEL {token}\n".encode())
        sock.shutdown(1)
        recv_all(sock)
    wait_until(lambda: "tcp: closed after" in proc.stderr, what="the TCP connection's end line")
    assert stop(proc, e2e.env) == 0

    lines = proc.stderr.splitlines()
    request = next(line for line in lines if line.startswith("  GET /aaa"))
    assert re.fullmatch(r"  GET /a{150,}\.\.\. 200 · \d+ ms · in \d+ B · out \d+ B", request)
    closed = next(line for line in lines if "tcp: closed after" in line)
    assert re.fullmatch(r"  \S+ tcp: closed after \S+ m?s · in \d+ B · out 0 B", closed), closed
    assert SECRET not in proc.stderr and "\x1b" not in proc.stderr


def test_a_stopped_service_is_told_once_and_its_return_once(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    local_port = service.port
    proc = e2e.share(local_port, via=shared_sshd, ttl="60s")
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    assert http_status(port, token) == 200
    service.close()
    for _ in range(3):
        assert http_status(port, token, f"/down?{SECRET}") == 502
    down = proc.next_event("warning")
    assert down["code"] == "service-down" and f"127.0.0.1:{local_port}" in down["message"]

    back = Service(http_keepalive, port=local_port)
    e2e.services.append(back)
    for _ in range(2):
        assert http_status(port, token, "/up") == 200
    up = proc.next_event("warning")
    assert up["code"] == "service-up"
    assert stop(proc, e2e.env) == 0

    assert [w["code"] for w in events_of(proc, "warning")] == ["service-down", "service-up"]
    statuses = Counter((e["path"], e["status"]) for e in events_of(proc, "request"))
    assert statuses == {("/", 200): 1, ("/down", 502): 3, ("/up", 200): 2}
    audited = [e.get("code") for e in e2e.audit(started["id"]) if e["event"] == "warning"]
    assert audited == ["service-down", "service-up"]
    assert SECRET not in proc.stdout


def test_raw_tcp_connections_report_duration_and_bytes(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, "--protocol", "tcp", via=shared_sshd, ttl="60s")
    started = e2e.started(proc)
    with connect(started["remote_port"]) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\nhello".encode())
        echoed = b""
        while len(echoed) < 5 and (data := sock.recv(100)):
            echoed += data
    assert echoed == b"hello"
    closed = proc.next_event("connection-closed")
    assert (closed["protocol"], closed["allowed"], closed["bytes_out"]) == ("tcp", True, 5)
    assert closed["bytes_in"] >= 5 and isinstance(closed["duration"], float)
    assert stop(proc, e2e.env) == 0
    assert events_of(proc, "request") == []
