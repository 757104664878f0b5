"""End to end: the audit log and `log`, file modes, and the refusal of an unsafe state dir."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from e2e import E2E, ShareProcess, http_status, share_argv, wait_until
from sshd import SSHD

pytestmark = pytest.mark.sshd


class Follower(ShareProcess):
    """`safetunnel log ID --follow` in a subprocess, its stdout collected line by line."""

    def __init__(self, e2e: E2E, *args: str) -> None:
        super().__init__(["log", *args, "--follow"], e2e.env, json_events=False)

    @property
    def lines(self) -> list[str]:
        return [line.rstrip("\n") for line in self.stdout_lines]

    def wait_for(self, *words: str) -> str:
        def found() -> bool:
            return any(all(w in line for w in words) for line in self.lines)

        wait_until(found, what=f"`log --follow` to print a line with {words}; got {self.lines}")
        return next(line for line in self.lines if all(w in line for w in words))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.wait(5)


def test_audit_log_records_a_tunnels_life_and_log_shows_it(e2e: E2E, shared_sshd: SSHD) -> None:
    event = e2e.share_bg(e2e.service().port, via=shared_sshd)
    tunnel_id, port, token = event["id"], event["remote_port"], event["token"]
    follower = Follower(e2e, tunnel_id)
    try:
        follower.wait_for(tunnel_id, "started")
        assert http_status(port, token) == 200
        follower.wait_for(tunnel_id, "connection", "allowed=True")
        assert http_status(port, None) == 401
        follower.wait_for(tunnel_id, "connection", "allowed=False", "reason=unauthorized")
        e2e.cli_ok("extend", tunnel_id, "--by", "1m")
        follower.wait_for(tunnel_id, "extended", "by=60")
        e2e.cli_ok("kill", tunnel_id)
        follower.wait_for(tunnel_id, "stopped", "reason=killed")
        assert follower.wait(10) == 0  # --follow ID ends with the tunnel's stopped entry
    finally:
        follower.stop()
    assert follower.lines[0].split() == ["TIME", "ID", "EVENT", "DETAILS"]

    entries = e2e.audit(tunnel_id)
    kinds = [e["event"] for e in entries]
    assert kinds == [
        "confirmed",
        "started",
        "request",
        "connection",
        "connection",
        "extended",
        "stopped",
    ]
    for entry in entries:
        assert entry["ts"].endswith("Z") and entry["id"] == tunnel_id
    confirmed, started = entries[0], entries[1]
    assert confirmed["local"] == event["local"] and confirmed["ssh_host"] == event["ssh_host"]
    assert confirmed["remote_bind"] == "127.0.0.1" and confirmed["ttl"] == 120
    assert confirmed["risks"] == []
    assert started["remote_port"] == port and started["pid"] == event["pid"]
    request, allowed, denied = entries[2], entries[3], entries[4]
    assert (request["method"], request["path"], request["status"]) == ("GET", "/", 200)
    assert request["bytes_out"] > 0 and isinstance(request["duration"], float)
    assert allowed["allowed"] is True and allowed["bytes_out"] > 0
    assert denied["allowed"] is False and denied["reason"] == "unauthorized"
    assert entries[6]["reason"] == "killed"

    table = e2e.cli_ok("log", tunnel_id).stdout.splitlines()
    assert table[0].split() == ["TIME", "ID", "EVENT", "DETAILS"]
    assert [line.split()[2] for line in table[1:]] == kinds
    assert all(line.split()[1] == tunnel_id for line in table[1:])
    as_json = [json.loads(line) for line in e2e.cli_ok("log", "--json").stdout.splitlines()]
    assert as_json == e2e.audit()  # every tunnel's lines, verbatim
    assert e2e.cli_ok("log", "st-000000").stdout.strip() == "No audit entries for st-000000."
    e2e.assert_no_token_on_disk("\n".join(follower.lines), "\n".join(table))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_files_and_dirs_are_private(e2e: E2E, shared_sshd: SSHD) -> None:
    event = e2e.share_bg(e2e.service().port, via=shared_sshd)
    state = e2e.sandbox.state_dir
    for directory in (state, state / "tunnels", state / "logs"):
        assert _mode(directory) == 0o700, directory
    record, sock = e2e.record_path(event["id"]), e2e.socket_path(event["id"])
    logs = list((state / "logs").iterdir())
    assert logs, "share --background wrote no log"
    for path in (record, state / "audit.jsonl", *logs):
        assert _mode(path) == 0o600, path
    assert stat.S_ISSOCK(sock.lstat().st_mode) and _mode(sock) & 0o077 == 0
    leftovers = [p.name for p in (state / "tunnels").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temp files of atomic writes were left behind"
    e2e.cli_ok("kill", event["id"])
    e2e.assert_no_token_on_disk()


def _connections_seen(sshd: SSHD) -> int:
    return sshd.log_text().count("Connection from 127.0.0.1")


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_group_writable_state_dir_is_refused_before_any_network(
    e2e: E2E, sshd: SSHD, background: bool
) -> None:
    service = e2e.service()
    state = e2e.sandbox.state_dir
    state.mkdir(mode=0o700)
    os.chmod(state, 0o770)  # the unsafe mode under test
    args = share_argv(service.port, ttl="1m", via=sshd)
    if background:
        args.append("--background")

    # The fixture's own readiness probe is one connection; wait for it so the count is stable.
    wait_until(lambda: _connections_seen(sshd) >= 1, what="sshd to log the readiness probe")
    seen = _connections_seen(sshd)

    out = e2e.run(*args, timeout=60)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert f"Error: {state} is writable by group or others (mode 770)" in out.stderr
    assert f"chmod 700 {state}" in out.stderr
    assert _connections_seen(sshd) == seen, "share reached the SSH host before refusing"
    assert service.connections == 0, "share probed the local service before refusing"
    assert sorted(p.name for p in state.iterdir()) == []
    assert list(e2e.own_processes()) == []

    # Control: with a private state dir the same command does reach sshd (and sshd logs it).
    os.chmod(state, 0o700)
    e2e.started_from(
        e2e.ok(*args, "--background", timeout=60) if not background else e2e.ok(*args, timeout=60)
    )
    wait_until(lambda: _connections_seen(sshd) > seen, what="sshd to log the connection")
    e2e.cli_ok("kill", "--all")
