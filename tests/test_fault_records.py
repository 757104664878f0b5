"""A damaged record of a running tunnel: reported as corrupt, never pruned with its socket.

``list`` used to delete an unreadable record together with the control socket of the tunnel that
was still serving ("Cleaned 1 stale entry"); ``kill --all`` then found nothing, and ``extend``
was impossible for good. Here the share is frozen (SIGSTOP) while its record is truncated, so its
2-second refresh cannot repair the record before ``list`` reads it.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from e2e import E2E, wait_until

from safetunnel.registry import control, manage
from safetunnel.registry import records as reg

pytestmark = pytest.mark.fault


def readable(path: Path) -> bool:
    try:
        reg.TunnelRecord.from_json(path.read_bytes())
    except (reg.StateError, OSError):
        return False
    return True


def test_a_truncated_record_of_a_live_share_is_corrupt_not_stale(e2e: E2E) -> None:
    service = e2e.service()
    proc = e2e.share(service.port, ttl="60s")
    tunnel_id = e2e.started(proc)["id"]
    record, sock = e2e.record_path(tunnel_id), e2e.socket_path(tunnel_id)
    os.kill(proc.proc.pid, signal.SIGSTOP)
    try:
        record.write_bytes(b"")
        listed = e2e.cli("list")
        assert listed.returncode == 0, listed.stderr
        assert "Cleaned" not in listed.stdout + listed.stderr
        assert f"{tunnel_id}: running, but its record is corrupt" in listed.stderr
        assert "No active tunnels." not in listed.stdout
        assert record.exists() and sock.exists()
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    wait_until(lambda: readable(record), what="the share to rewrite its record")
    assert [r["id"] for r in e2e.list_json()] == [tunnel_id]
    e2e.cli_ok("kill", "--all")
    assert proc.wait(20) == 0
    assert not record.exists() and not sock.exists()


def own_torn_record(tunnel_id: str) -> bytes:
    """The first half of a record naming this (live) process, as a torn write would leave it."""
    record = reg.TunnelRecord(
        id=tunnel_id,
        pid=os.getpid(),
        pid_start_time=reg.current_process_start_time(),
        local="127.0.0.1:1",
        ssh_host="h",
        remote_bind="127.0.0.1",
        remote_port=1,
        protocol="auto",
        started_at="2024-01-01T00:00:00Z",
        expires_at="2024-01-01T00:00:00Z",
        token_hash_prefix="00000000",
    )
    text = record.to_json().encode()
    return text[: len(text) // 2 + 40]


def test_a_torn_record_naming_a_live_process_is_kept(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    path = registry.dir / "st-abcdef.json"
    path.write_bytes(own_torn_record("st-abcdef"))
    assert b'"pid": ' in path.read_bytes()
    result = registry.load_all()
    assert result == ([], 0, ("st-abcdef",))
    assert path.exists()


def test_kill_stops_a_tunnel_with_an_unreadable_record_over_its_socket(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    tunnel_id = "st-fedcba"
    registry.record_path(tunnel_id).write_bytes(b"{torn")
    asked = threading.Event()

    def stop(_args: dict[str, object]) -> dict[str, object]:
        asked.set()  # a tunnel tears down on its own thread, then removes its files
        threading.Thread(target=server.close).start()
        return {}

    server = control.ControlServer(registry.socket_path(tunnel_id), {"stop": stop})
    server.start()
    try:
        assert registry.load_all().corrupt == (tunnel_id,)
        result = manage.stop(registry, tunnel_id, timeout=10)
    finally:
        server.close()
    assert asked.is_set()
    assert (result.method, result.detail) == ("control", "its record was unreadable")
    assert not registry.socket_path(tunnel_id).exists()


def test_an_unreadable_record_with_nobody_behind_it_is_still_pruned(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    registry.record_path("st-123456").write_bytes(b"")
    registry.socket_path("st-123456").write_bytes(b"")  # a leftover socket file, nobody listening
    assert registry.load_all() == ([], 1, ())
    assert list(registry.dir.iterdir()) == []
