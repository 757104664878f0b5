"""End to end: `share --background` against a real sshd, then `list` and `status`.

Everything goes through the real console script; shares run detached, and the ``e2e`` fixture
kills whatever a failing test leaves running.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from datetime import timedelta

import psutil
import pytest
from e2e import E2E, LIST_KEYS, bg_share_argv, http_status, pid_running, port_open, wait_until
from sshd import SSHD

from safetunnel.registry.records import Registry, TunnelRecord
from safetunnel.timefmt import parse_iso_z

pytestmark = pytest.mark.sshd


def _parse_human_started(stderr: str) -> tuple[str, int, int, str]:
    """(id, pid, remote_port, token) from the human started block of `share --background`."""
    sharing = re.search(
        r"^Sharing \S+ at 127\.0\.0\.1:(\d+) on .*\(tunnel (st-[0-9a-f]{6})\)$", stderr, re.M
    )
    token = re.search(r"^\s+token\s+(st_\S{43})\s", stderr, re.M)
    running = re.search(r"^Running in the background \(pid (\d+)\); log: (\S+)$", stderr, re.M)
    assert sharing and token and running, stderr
    assert f"Stop it with: safetunnel kill {sharing.group(2)}" in stderr
    return sharing.group(2), int(running.group(1)), int(sharing.group(1)), token.group(1)


def test_two_background_shares_are_listed_with_correct_fields(e2e: E2E, shared_sshd: SSHD) -> None:
    first, second = e2e.service(), e2e.service()

    human = e2e.ok(*bg_share_argv(first.port, "2m", via=shared_sshd), timeout=60)
    id1, pid1, rport1, token1 = _parse_human_started(human.stderr)
    e2e.tokens.append(token1)
    event2 = e2e.share_bg(second.port, "3m", via=shared_sshd)
    id2, pid2, rport2 = event2["id"], event2["pid"], event2["remote_port"]
    assert id1 != id2
    for pid in (pid1, pid2):  # detached: alive after the foreground returned
        assert pid_running(pid)
    assert port_open(rport1) and port_open(rport2)

    records = {r["id"]: r for r in e2e.list_json()}
    assert set(records) == {id1, id2}
    expected = {
        id1: (pid1, first.port, rport1, token1, 120),
        id2: (pid2, second.port, rport2, event2["token"], 180),
    }
    for tunnel_id, (pid, port, rport, token, ttl) in expected.items():
        record = records[tunnel_id]
        assert set(LIST_KEYS) <= set(record), record
        assert record["pid"] == pid
        assert record["local"] == f"127.0.0.1:{port}"
        assert record["ssh_host"] == f"{shared_sshd.user}@127.0.0.1:{shared_sshd.port}"
        assert record["remote_bind"] == "127.0.0.1"
        assert record["remote_port"] == rport
        started, expires = parse_iso_z(record["started_at"]), parse_iso_z(record["expires_at"])
        assert expires - started == timedelta(seconds=ttl)
        assert (record["connections"], record["total_connections"]) == (0, 0)
        assert (record["bytes_in"], record["bytes_out"]) == (0, 0)
        assert record["token_hash_prefix"] == hashlib.sha256(token.encode()).hexdigest()[:8]
        assert "token" not in record
    for key in (
        "pid",
        "local",
        "ssh_host",
        "remote_bind",
        "remote_port",
        "started_at",
        "expires_at",
    ):
        assert records[id2][key] == event2[key], key

    table = e2e.cli_ok("list").stdout
    lines = table.splitlines()
    header = ["ID", "LOCAL", "VIA", "REMOTE", "STATE", "EXPIRES", "IN", "CONNS", "PID"]
    assert lines[0].split() == header
    for tunnel_id, (pid, port, rport, _token, _ttl) in expected.items():
        row = next(line for line in lines if line.startswith(tunnel_id))
        cells = row.split()
        assert cells[1:5] == [
            f"127.0.0.1:{port}",
            f"{shared_sshd.user}@127.0.0.1:{shared_sshd.port}",
            f"127.0.0.1:{rport}",
            "serving",
        ]
        assert cells[-2:] == ["0/0", str(pid)]
    assert "Cleaned" not in table
    e2e.assert_no_token_on_disk(table)
    e2e.cli_ok("kill", "--all")


def test_list_does_not_import_paramiko_or_cryptography(e2e: E2E, shared_sshd: SSHD) -> None:
    """`list` must start fast: the whole command path stays clear of the SSH stack."""
    # A live record, so rendering runs too.
    event = e2e.share_bg(e2e.service().port, via=shared_sshd)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "safetunnel", "list"],
        env=e2e.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert event["id"] in out.stdout
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "psutil" in modules and "click" in modules  # importtime output was really parsed
    heavy = sorted(m for m in modules if m.split(".")[0] in {"paramiko", "cryptography", "nacl"})
    assert heavy == [], f"`safetunnel list` imports {heavy}"
    e2e.cli_ok("kill", "--all")


def test_status_counters_move_after_requests(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service()
    event = e2e.share_bg(service.port, via=shared_sshd)
    tunnel_id, port, token = event["id"], event["remote_port"], event["token"]
    before = e2e.status(tunnel_id)
    assert before["live"] is True
    assert (before["total_connections"], before["bytes_in"], before["bytes_out"]) == (0, 0, 0)
    assert before["recent"] == []

    assert http_status(port, token, "/counted") == 200
    assert http_status(port, None, "/refused") == 401
    wait_until(
        lambda: (
            e2e.status(tunnel_id)["total_connections"] == 2
            and len(e2e.status(tunnel_id)["recent"]) == 2
        ),
        what="both connections counted",
    )
    after = e2e.status(tunnel_id)
    assert after["denied"] == 1 and after["connections"] == 0
    assert after["bytes_in"] > 0 and after["bytes_out"] > 0
    allowed, denied = sorted(after["recent"], key=lambda c: not c["allowed"])
    assert allowed["allowed"] is True and allowed["bytes_out"] > 0
    assert denied["allowed"] is False and denied["reason"] == "unauthorized"
    assert denied["bytes_out"] == 0  # the 401 comes from the gate, not the service
    assert b"/counted" in service.received and b"/refused" not in service.received

    text = e2e.cli_ok("status", tunnel_id).stdout
    assert "0 open, 2 total, 1 denied" in text
    assert re.search(r"^127\.0\.0\.1:\d+\s+http\s+allowed\s", text, re.M), text
    assert re.search(r"^127\.0\.0\.1:\d+\s+http\s+denied\s+unauthorized", text, re.M), text
    # The record (what `list` reads) catches up on its own within its refresh interval.
    wait_until(
        lambda: e2e.list_json()[0]["total_connections"] == 2,
        timeout=8,
        what="the record to be refreshed",
    )
    e2e.assert_no_token_on_disk(text, bytes(service.received).decode(errors="replace"))
    e2e.cli_ok("kill", "--all")


def test_kill_9_is_pruned_by_the_next_list(e2e: E2E, shared_sshd: SSHD) -> None:
    event = e2e.share_bg(e2e.service().port, via=shared_sshd)
    tunnel_id, pid = event["id"], event["pid"]
    assert e2e.record_path(tunnel_id).exists() and e2e.socket_path(tunnel_id).exists()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_running(pid), what="the share to die")

    out = e2e.cli_ok("list")
    assert out.stdout.splitlines() == ["No active tunnels.", "Cleaned 1 stale entry."]
    assert not e2e.record_path(tunnel_id).exists()
    assert not e2e.socket_path(tunnel_id).exists()
    assert "Cleaned" not in e2e.cli_ok("list").stdout  # pruned once, not on every call
    # The killed tunnel could not write its own end; the audit log still says how it ended.
    stops = [e for e in e2e.audit(tunnel_id) if e["event"] == "stopped"]
    assert [e["reason"] for e in stops] == ["lost"]
    # sshd notices the dead client and releases the forward.
    wait_until(lambda: not port_open(event["remote_port"]), what="the remote port to close")


def _forge(e2e: E2E, pid: int) -> str:
    """A well-formed record for a live process that is not a share (start time does not match)."""
    start = psutil.Process(pid).create_time()
    forged = TunnelRecord(
        id="st-f0f0f0",
        pid=pid,
        pid_start_time=start - 3600.0,
        local="127.0.0.1:1",
        ssh_host="mallory@127.0.0.1:22",
        remote_bind="localhost",
        remote_port=1,
        protocol="auto",
        started_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:30:00Z",
        token_hash_prefix="00000000",
    )
    Registry(e2e.sandbox.state_dir).write(forged)
    e2e.socket_path(forged.id).touch(mode=0o600)
    return forged.id


def test_forged_record_with_a_live_unrelated_pid_is_pruned_and_never_signalled(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    real = e2e.share_bg(e2e.service().port, via=shared_sshd)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        forged = _forge(e2e, sleeper.pid)
        out = e2e.cli_ok("kill", forged)
        assert out.stdout.strip() == f"{forged}: was not running; stale entry removed"
        assert sleeper.poll() is None, "kill signalled a process that is not a share"
        assert not e2e.record_path(forged).exists() and not e2e.socket_path(forged).exists()

        _forge(e2e, sleeper.pid)
        listing = e2e.cli("list", "--json")
        assert listing.returncode == 0
        assert [r["id"] for r in e2e.list_json()] == [real["id"]]
        assert listing.stderr.strip() == "Cleaned 1 stale entry."
        assert not e2e.record_path(forged).exists()

        _forge(e2e, sleeper.pid)
        out = e2e.cli_ok("kill", "--all")
        assert out.stdout.strip() == f"{real['id']}: stopped"
        assert sleeper.poll() is None, "kill --all signalled a process that is not a share"
        assert not pid_running(real["pid"])
        assert e2e.cli_ok("list").stdout.strip() == "No active tunnels."
    finally:
        sleeper.kill()
        sleeper.wait(5)
