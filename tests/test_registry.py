from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from safetunnel.errors import StateError, TunnelNotFound
from safetunnel.registry import manage
from safetunnel.registry import records as reg


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_record(
    tunnel_id: str | None = None, pid: int | None = None, start: float | None = None
) -> reg.TunnelRecord:
    return reg.TunnelRecord(
        id=tunnel_id or reg.new_tunnel_id(),
        pid=pid or os.getpid(),
        pid_start_time=reg.current_process_start_time() if start is None else start,
        local="127.0.0.1:62893",
        ssh_host="alice@bastion:22",
        remote_bind="localhost",
        remote_port=40123,
        protocol="auto",
        started_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:30:00Z",
        token_hash_prefix="0badc0de",
    )


def test_new_tunnel_id_shape_and_uniqueness() -> None:
    ids = {reg.new_tunnel_id() for _ in range(200)}
    assert len(ids) > 190
    assert all(reg.ID_RE.fullmatch(i) for i in ids)


@pytest.mark.parametrize("bad", ["../etc", "st-ABCDEF", "st-12345", "st-1234567", "x"])
def test_ids_that_could_escape_the_dir_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(TunnelNotFound, match="not a tunnel id"):
        reg.Registry(tmp_path / "state").record_path(bad)


def test_record_json_round_trip_ignores_unknown_keys() -> None:
    record = make_record()
    record.add_recent({"origin": "x", "allowed": False})
    data = json.loads(record.to_json())
    assert "token" not in data
    data["added_by_a_newer_version"] = 1
    assert reg.TunnelRecord.from_json(json.dumps(data)) == record


def test_recent_keeps_the_last_twenty() -> None:
    record = make_record()
    for n in range(25):
        record.add_recent({"n": n})
    assert [c["n"] for c in record.recent] == list(range(5, 25))


def test_dirs_0700_records_0600_and_atomic(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path / "state")
    record = make_record()
    registry.write(record)
    record.connections = 3
    registry.write(record)
    assert mode(tmp_path / "state") == 0o700
    assert mode(registry.dir) == 0o700
    assert mode(registry.record_path(record.id)) == 0o600
    assert registry.get(record.id).connections == 3
    assert sorted(p.name for p in registry.dir.iterdir()) == [f"{record.id}.json"]


def test_group_writable_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    state.chmod(0o770)
    with pytest.raises(StateError, match="writable by group or others"):
        reg.Registry(state)


def test_get_unknown_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(TunnelNotFound):
        reg.Registry(tmp_path).get("st-000000")


def test_load_all_keeps_live_and_prunes_dead_pid(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    live = make_record()
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    dead = make_record(pid=dead_proc.pid, start=time.time() - 5)
    registry.write(live)
    registry.write(dead)
    registry.socket_path(dead.id).write_bytes(b"")  # stands in for its leftover socket
    records, pruned, _ = registry.load_all()
    assert [r.id for r in records] == [live.id]
    assert pruned == 1
    assert not registry.record_path(dead.id).exists()
    assert not registry.socket_path(dead.id).exists()


def test_reused_pid_with_other_start_time_is_pruned(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    forged = make_record(start=reg.current_process_start_time() - 3600)
    registry.write(forged)
    assert registry.load_all() == ([], 1, ())


def test_junk_and_misnamed_records_are_pruned(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    (registry.dir / "st-aaaaaa.json").write_text("{not json")
    (registry.dir / "st-bbbbbb.json").write_text('{"id": "st-bbbbbb"}')
    other = make_record("st-cccccc")
    (registry.dir / "st-dddddd.json").write_text(other.to_json())
    assert registry.load_all() == ([], 3, ())
    assert list(registry.dir.iterdir()) == []


def test_remove_is_idempotent(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    record = make_record()
    registry.write(record)
    registry.remove(record.id)
    registry.remove(record.id)
    assert not registry.record_path(record.id).exists()


WRITER = """
import sys
from safetunnel.registry import records as reg
from pathlib import Path
r = reg.Registry(Path(sys.argv[1]))
rec = reg.TunnelRecord.from_json(Path(sys.argv[2]).read_text())
for n in range(400):
    rec.total_connections = n
    rec.recent = [{"origin": "x" * (n % 50)}] * (n % 20)
    r.write(rec)
"""


def test_concurrent_writer_never_shows_a_torn_record(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    record = make_record()
    registry.write(record)
    seed = tmp_path / "seed.json"
    seed.write_text(record.to_json())
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(seed)])
    reads = 0
    seen = set()
    try:
        while writer.poll() is None:
            records, pruned, _ = registry.load_all()
            assert pruned == 0
            seen.update(r.total_connections for r in records)
            seen.add(registry.get(record.id).total_connections)
            reads += 1
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert reads > 5
    assert len(seen) > 2  # the reader really saw the writer's progress
    assert [p.name for p in registry.dir.iterdir()] == [f"{record.id}.json"]


def test_zombie_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    proc = psutil.Process(child.pid)
    start = proc.create_time()
    # Not reaped yet: the pid still names a process, but a zombie must not look alive.
    while proc.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.02)
    assert not reg.process_matches(child.pid, start)
    child.wait()


@pytest.mark.parametrize("listed", [True, False])
def test_a_listed_tunnel_that_ended_meanwhile_is_no_failure_of_kill_all(
    tmp_path: Path, listed: bool
) -> None:
    """``kill --all`` stops what it listed; one that reached its end by itself in between is
    not a failure. An id the user named that runs nowhere still is."""
    outcomes: list[object] = []
    failed = manage.stop_many(
        reg.Registry(tmp_path),
        ["st-abcdef"],
        lambda _id, outcome: outcomes.append(outcome),
        listed=listed,
    )
    if listed:
        assert failed == 0
        assert isinstance(outcomes[0], manage.StopResult) and outcomes[0].method == "stale"
    else:
        assert failed == 1
        assert isinstance(outcomes[0], TunnelNotFound)
