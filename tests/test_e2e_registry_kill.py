"""End to end: `kill`, `kill --all` and `extend` on real background shares through a real sshd."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from e2e import http_status, port_open, wait_until
from e2e_registry_kit import Kit, pid_running
from sshd import SSHD

from safetunnel.timefmt import parse_iso_z, utc_now

pytestmark = pytest.mark.sshd


def test_kill_id_ends_the_process_frees_the_port_and_removes_record_and_socket(
    kit: Kit, sshd: SSHD
) -> None:
    kit.sshd = sshd
    event = kit.share_bg(kit.service().port)
    tunnel_id, pid, port = event["id"], event["pid"], event["remote_port"]
    assert kit.record_path(tunnel_id).exists() and kit.socket_path(tunnel_id).exists()
    assert http_status(port, event["token"]) == 200

    out = kit.ok("kill", tunnel_id)
    assert out.stdout.strip() == f"{tunnel_id}: stopped"
    # `kill` returns only once the share has exited and cleaned up after itself.
    assert not pid_running(pid)
    assert not kit.record_path(tunnel_id).exists()
    assert not kit.socket_path(tunnel_id).exists()
    wait_until(lambda: not port_open(port), what="the remote port to be released")
    assert kit.ok("list").stdout.strip() == "No active tunnels."  # nothing stale either
    stopped = [e for e in kit.audit(tunnel_id) if e["event"] == "stopped"]
    assert [e["reason"] for e in stopped] == ["killed"]

    again = kit.run("kill", tunnel_id)
    assert again.returncode == 1
    assert f"no tunnel with id {tunnel_id}" in again.stderr


def test_kill_all_stops_both_tunnels(kit: Kit, sshd: SSHD) -> None:
    kit.sshd = sshd
    events = [kit.share_bg(kit.service().port) for _ in range(2)]
    assert len(kit.list_json()) == 2

    out = kit.ok("kill", "--all")
    assert sorted(out.stdout.splitlines()) == sorted(f"{e['id']}: stopped" for e in events)
    for event in events:
        assert not pid_running(event["pid"])
        assert not kit.record_path(event["id"]).exists()
        assert not kit.socket_path(event["id"]).exists()
    assert kit.list_json() == []
    assert kit.ok("kill", "--all").stdout.strip() == "No active tunnels."


def test_extend_moves_expiry_by_exactly_the_amount_and_the_tunnel_honours_it(
    kit: Kit, sshd: SSHD
) -> None:
    kit.sshd = sshd
    event = kit.share_bg(kit.service().port, "6s")
    tunnel_id = event["id"]
    before = kit.list_json()[0]["expires_at"]
    assert before == event["expires_at"]

    out = kit.ok("extend", tunnel_id, "--by", "1m")
    assert out.stdout.startswith(f"{tunnel_id}: extended by 1m; now expires at ")
    after_record = kit.list_json()[0]["expires_at"]  # the record is rewritten at once
    after_status = kit.status(tunnel_id)["expires_at"]
    assert after_record == after_status
    assert parse_iso_z(after_record) - parse_iso_z(before) == timedelta(seconds=60)
    assert after_record in out.stdout

    # Wait past the old expiry: a tunnel that kept its old timer would be gone by now.
    old_expiry = parse_iso_z(before)
    while utc_now() < old_expiry + timedelta(seconds=2):
        time.sleep(0.2)
    assert pid_running(event["pid"])
    assert [r["id"] for r in kit.list_json()] == [tunnel_id]
    assert http_status(event["remote_port"], event["token"]) == 200
    extended = [e for e in kit.audit(tunnel_id) if e["event"] == "extended"]
    assert len(extended) == 1 and extended[0]["by"] == 60
    assert extended[0]["expires_at"] == after_record
    assert not [e for e in kit.audit(tunnel_id) if e["event"] == "stopped"]


def test_extend_past_max_ttl_is_refused(kit: Kit, sshd: SSHD) -> None:
    kit.sshd = sshd
    kit.sandbox.config_dir.mkdir(mode=0o700)
    (kit.sandbox.config_dir / "config.toml").write_text('default_ttl = "1m"\nmax_ttl = "2m"\n')
    event = kit.share_bg(kit.service().port, "90s")
    tunnel_id = event["id"]

    out = kit.run("extend", tunnel_id, "--by", "1m")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "max_ttl" in out.stderr and out.stderr.startswith("Error: ")
    assert kit.status(tunnel_id)["expires_at"] == event["expires_at"]
    assert kit.list_json()[0]["expires_at"] == event["expires_at"]
    assert not [e for e in kit.audit(tunnel_id) if e["event"] == "extended"]

    # Up to max_ttl exactly is still fine.
    kit.ok("extend", tunnel_id, "--by", "30s")
    moved = parse_iso_z(kit.status(tunnel_id)["expires_at"])
    assert moved - parse_iso_z(event["started_at"]) == timedelta(minutes=2)
