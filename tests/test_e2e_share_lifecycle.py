"""End to end: how a share ends (TTL, idle, signals, kill -9, SSH loss, limits) and that every
ending releases the remote port and removes the record."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from e2e import (
    E2E,
    assert_port_released,
    closed_by_peer,
    connect,
    http_get,
    port_open,
    wait_for,
)
from services import echo, http_keepalive
from sshd import SSHD

pytestmark = pytest.mark.sshd


def test_ttl_expiry_exits_0_and_releases_the_port(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, ttl="2s", via=via)
    started = e2e.started(proc)
    port = started["remote_port"]
    assert [p.stem for p in e2e.records()] == [started["id"]]
    assert http_get(port, "/", {"X-Safetunnel-Token": started["token"]}).status == 200
    began = time.monotonic()
    assert proc.wait(15) == 0, proc.stderr
    assert time.monotonic() - began < 4.5  # 2 s TTL plus teardown, not a hang
    stopped = proc.next_event("stopped", 2)
    assert stopped["reason"] == "ttl"
    assert stopped["ended_at"].endswith("Z")
    assert_port_released(port)
    assert e2e.records() == []
    kinds = [line["event"] for line in e2e.audit()]
    assert kinds[0] == "confirmed" and "started" in kinds and kinds[-1] == "stopped"


def test_yes_skips_the_question_but_still_shows_what_is_exposed(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(http_keepalive, host="0.0.0.0")
    proc = e2e.share(service.port, ttl="1s", via=via)
    e2e.started(proc)
    assert proc.wait(15) == 0, proc.stderr
    assert f"About to share 127.0.0.1:{service.port}" in proc.stderr
    assert "ALREADY EXPOSED" in proc.stderr
    assert "Share it?" not in proc.stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGHUP, 0)]
)
def test_signals_stop_the_share_and_release_the_port(
    e2e: E2E, shared_sshd: SSHD, sig: signal.Signals, code: int
) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, ttl="30s", via=shared_sshd)
    started = e2e.started(proc)
    port = started["remote_port"]
    assert port_open(port)
    proc.proc.send_signal(sig)
    assert proc.wait(10) == code, proc.stderr
    assert proc.next_event("stopped", 2)["reason"] == "signal"
    assert_port_released(port)
    assert "Traceback" not in proc.stderr


def test_open_connection_is_closed_at_teardown(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, ttl="30s", via=via)
    started = e2e.started(proc)
    with connect(started["remote_port"]) as sock:
        sock.sendall(f"SAFETUNNEL {started['token']}\nping".encode())
        assert sock.recv(16) == b"ping"
        proc.proc.send_signal(signal.SIGTERM)
        assert closed_by_peer(sock, 6)
    assert proc.wait(10) == 0, proc.stderr
    assert_port_released(started["remote_port"])
    closed = proc.next_event("connection-closed", 2)
    assert (closed["allowed"], closed["reason"]) == (True, "signal")  # not an "eof" it never saw


@pytest.mark.slow
def test_kill_9_of_the_share_lets_sshd_free_the_port(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, ttl="30s", via=shared_sshd)
    started = e2e.started(proc)
    port = started["remote_port"]
    assert port_open(port)
    proc.proc.kill()
    assert proc.wait(5) == -signal.SIGKILL
    assert_port_released(port, timeout=10)
    # The record of a killed process is stale; `list` prunes it (and its socket).
    listed = e2e.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert e2e.records() == []


def test_the_files_of_a_share_killed_with_9_go_when_its_record_is_pruned(
    e2e: E2E, shared_sshd: SSHD, tmp_path: Path
) -> None:
    service = e2e.service(echo)
    token_file = tmp_path / "token"
    ticket_file = tmp_path / "token.ticket"
    e2e.token_files += [token_file, ticket_file]
    proc = e2e.share(service.port, "--token-file", str(token_file), ttl="30s", via=shared_sshd)
    started = e2e.started(proc)
    e2e.tokens.append(token_file.read_text().strip())
    e2e.tickets.append(ticket_file.read_text().strip())
    proc.proc.kill()
    assert proc.wait(5) == -signal.SIGKILL
    assert token_file.exists() and ticket_file.exists()
    assert "stale entry removed" in e2e.cli("status", started["id"]).stderr
    assert not token_file.exists() and not ticket_file.exists()


@contextlib.contextmanager
def stopped_sessions(server: SSHD) -> Iterator[list[psutil.Process]]:
    """SIGSTOP sshd's per-connection processes (the listener keeps running); SIGCONT after."""
    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "no sshd session process to stop"
    for child in children:
        child.send_signal(signal.SIGSTOP)
    try:
        yield children
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGCONT)


@pytest.mark.slow
def test_ssh_loss_exits_8_within_the_watchdog_bound(e2e: E2E, sshd: SSHD) -> None:
    service = e2e.service(echo)
    keepalive = 0.5
    argv = ("--keepalive", str(keepalive), "--no-reconnect")
    proc = e2e.share(service.port, *argv, ttl="30s", via=sshd)
    started = e2e.started(proc)
    with stopped_sessions(sshd):
        began = time.monotonic()
        code = proc.wait(10)
        took = time.monotonic() - began
    assert code == 8, proc.stderr
    # The watchdog declares loss ~3 intervals after the last reply, then a bounded teardown.
    assert took < 3 * keepalive + 2.0, f"took {took:.1f}s"
    assert proc.next_event("stopped", 2)["reason"] == "ssh-lost"
    assert "SSH connection" in proc.stderr and "lost" in proc.stderr
    assert e2e.records() == []
    assert started["remote_port"] > 0


def test_max_connections_refuses_a_third_while_two_are_open(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, "--max-connections", "2", ttl="30s", via=via)
    started = e2e.started(proc)
    preamble = f"SAFETUNNEL {started['token']}\n".encode()
    with connect(started["remote_port"]) as first, connect(started["remote_port"]) as second:
        for index, sock in enumerate((first, second)):
            sock.sendall(preamble + b"conn%d" % index)
            assert sock.recv(16) == b"conn%d" % index
        connections = service.connections
        with connect(started["remote_port"]) as third:
            third.sendall(preamble + b"third")
            assert closed_by_peer(third)
        assert service.connections == connections  # never reached the service
        refused = proc.next_event("connection", 5)
        while refused.get("allowed"):
            refused = proc.next_event("connection", 5)
        assert refused["reason"] == "max-connections"
    # Once they are closed, a new connection gets in again.
    assert wait_for(lambda: _echo_once(started["remote_port"], preamble), 5)
    proc.proc.terminate()
    assert proc.wait(10) == 0, proc.stderr
    assert b"third" not in service.received


def _echo_once(port: int, preamble: bytes) -> bool:
    with connect(port) as sock:
        sock.sendall(preamble + b"again")
        sock.settimeout(2)
        try:
            return sock.recv(16) == b"again"
        except OSError:
            return False


def test_max_failures_stops_the_tunnel(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--max-failures", "3", ttl="30s", via=via)
    started = e2e.started(proc)
    port = started["remote_port"]
    for attempt in range(3):
        assert http_get(port, f"/guess{attempt}").status == 401, attempt
    assert proc.wait(10) == 1, proc.stderr
    assert proc.next_event("stopped", 2)["reason"] == "max-failures"
    assert "max-failures" in proc.stderr
    assert_port_released(port)
    assert b"guess" not in service.received


def test_idle_limit_stops_after_no_traffic(e2e: E2E, via: SSHD | None) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--idle", "2s", ttl="30s", via=via)
    started = e2e.started(proc)
    began = time.monotonic()
    assert (
        http_get(started["remote_port"], "/", {"X-Safetunnel-Token": started["token"]}).status
        == 200
    )
    assert proc.wait(10) == 0, proc.stderr
    took = time.monotonic() - began
    assert 1.5 < took < 5, f"stopped after {took:.1f}s"
    assert proc.next_event("stopped", 2)["reason"] == "idle"
    assert_port_released(started["remote_port"])


def test_share_process_has_no_children_left(e2e: E2E) -> None:
    """The built-in gateway runs in-process: nothing outlives the share."""
    service = e2e.service(echo)
    proc = e2e.share(service.port, ttl="2s")
    e2e.started(proc)
    children = psutil.Process(proc.proc.pid).children(recursive=True)
    assert children == []
    assert proc.wait(10) == 0
