"""End to end: `kill`, `kill --all` and `extend` on real background shares through a real sshd."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from e2e import E2E, http_status, pid_running, port_open, wait_until
from sshd import SSHD

from safetunnel.timefmt import parse_iso_z, utc_now

pytestmark = pytest.mark.sshd


def test_kill_id_ends_the_process_frees_the_port_and_removes_record_and_socket(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    event = e2e.share_bg(e2e.service().port, via=shared_sshd)
    tunnel_id, pid, port = event["id"], event["pid"], event["remote_port"]
    assert e2e.record_path(tunnel_id).exists() and e2e.socket_path(tunnel_id).exists()
    assert http_status(port, event["token"]) == 200

    out = e2e.cli_ok("kill", tunnel_id)
    assert out.stdout.strip() == f"{tunnel_id}: stopped"
    # `kill` returns only once the share has exited and cleaned up after itself.
    assert not pid_running(pid)
    assert not e2e.record_path(tunnel_id).exists()
    assert not e2e.socket_path(tunnel_id).exists()
    wait_until(lambda: not port_open(port), what="the remote port to be released")
    assert e2e.cli_ok("list").stdout.strip() == "No active tunnels."  # nothing stale either
    stopped = [e for e in e2e.audit(tunnel_id) if e["event"] == "stopped"]
    assert [e["reason"] for e in stopped] == ["killed"]

    again = e2e.cli("kill", tunnel_id)
    assert again.returncode == 1
    assert f"no tunnel with id {tunnel_id}" in again.stderr


def test_kill_all_stops_both_tunnels(e2e: E2E, shared_sshd: SSHD) -> None:
    events = [e2e.share_bg(e2e.service().port, via=shared_sshd) for _ in range(2)]
    assert len(e2e.list_json()) == 2

    out = e2e.cli_ok("kill", "--all")
    assert sorted(out.stdout.splitlines()) == sorted(f"{e['id']}: stopped" for e in events)
    for event in events:
        assert not pid_running(event["pid"])
        assert not e2e.record_path(event["id"]).exists()
        assert not e2e.socket_path(event["id"]).exists()
    assert e2e.list_json() == []
    assert e2e.cli_ok("kill", "--all").stdout.strip() == "No active tunnels."


@pytest.mark.slow
def test_extend_moves_expiry_by_exactly_the_amount_and_the_tunnel_honours_it(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    event = e2e.share_bg(e2e.service().port, "6s", via=shared_sshd)
    tunnel_id = event["id"]
    before = e2e.list_json()[0]["expires_at"]
    assert before == event["expires_at"]

    out = e2e.cli_ok("extend", tunnel_id, "--by", "1m")
    assert out.stdout.startswith(f"{tunnel_id}: extended by 1m; now expires at ")
    after_record = e2e.list_json()[0]["expires_at"]  # the record is rewritten at once
    after_status = e2e.status(tunnel_id)["expires_at"]
    assert after_record == after_status
    assert parse_iso_z(after_record) - parse_iso_z(before) == timedelta(seconds=60)
    assert after_record in out.stdout

    # Wait past the old expiry: a tunnel that kept its old timer would be gone by now.
    old_expiry = parse_iso_z(before)
    while utc_now() < old_expiry + timedelta(seconds=2):
        time.sleep(0.2)
    assert pid_running(event["pid"])
    assert [r["id"] for r in e2e.list_json()] == [tunnel_id]
    assert http_status(event["remote_port"], event["token"]) == 200
    extended = [e for e in e2e.audit(tunnel_id) if e["event"] == "extended"]
    assert len(extended) == 1 and extended[0]["by"] == 60
    assert extended[0]["expires_at"] == after_record
    assert not [e for e in e2e.audit(tunnel_id) if e["event"] == "stopped"]
    e2e.cli_ok("kill", tunnel_id)


def test_extend_past_max_ttl_is_refused(e2e: E2E, shared_sshd: SSHD) -> None:
    e2e.sandbox.config_dir.mkdir(mode=0o700)
    (e2e.sandbox.config_dir / "config.toml").write_text('default_ttl = "1m"\nmax_ttl = "2m"\n')
    event = e2e.share_bg(e2e.service().port, "90s", via=shared_sshd)
    tunnel_id = event["id"]

    out = e2e.cli("extend", tunnel_id, "--by", "1m")
    assert out.returncode == 2, (out.stdout, out.stderr)  # a usage error, across the socket too
    assert "max_ttl" in out.stderr and out.stderr.startswith("Error: ")
    assert e2e.status(tunnel_id)["expires_at"] == event["expires_at"]
    assert e2e.list_json()[0]["expires_at"] == event["expires_at"]
    assert not [e for e in e2e.audit(tunnel_id) if e["event"] == "extended"]

    # Up to max_ttl exactly is still fine.
    e2e.cli_ok("extend", tunnel_id, "--by", "30s")
    moved = parse_iso_z(e2e.status(tunnel_id)["expires_at"])
    assert moved - parse_iso_z(event["started_at"]) == timedelta(minutes=2)
    e2e.cli_ok("kill", tunnel_id)
