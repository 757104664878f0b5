from __future__ import annotations

import threading
from pathlib import Path

from safetunnel.registry import records as reg
from safetunnel.registry.publish import RecordPublisher


def make_record() -> reg.TunnelRecord:
    return reg.TunnelRecord(
        id="st-abc123",
        pid=1,
        pid_start_time=0.0,
        local="l",
        ssh_host="h",
        remote_bind="localhost",
        remote_port=1,
        protocol="tcp",
        started_at="s",
        expires_at="e",
        token_hash_prefix="0",
    )


def test_publishes_at_start_refreshes_and_removes_on_close(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    record = make_record()
    refreshed = threading.Event()
    calls = 0

    def snapshot() -> reg.TunnelRecord:
        nonlocal calls
        calls += 1
        record.total_connections = calls
        if calls >= 3:
            refreshed.set()
        return record

    publisher = RecordPublisher(registry, snapshot, interval=0.01)
    publisher.start()
    assert registry.record_path(record.id).exists()
    assert refreshed.wait(5)
    assert registry.get(record.id).total_connections >= 2
    publisher.close()
    publisher.close()
    assert not registry.record_path(record.id).exists()
    assert publisher._thread is not None and not publisher._thread.is_alive()
    publisher.publish_now()  # after close: must not bring the record back
    assert not registry.record_path(record.id).exists()


def test_write_errors_do_not_kill_the_thread(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    record = make_record()
    calls = 0
    recovered = threading.Event()

    def flaky() -> reg.TunnelRecord:
        nonlocal calls
        calls += 1
        if calls in (2, 3):
            raise OSError(28, "No space left on device")
        if calls >= 5:
            recovered.set()
        return record

    publisher = RecordPublisher(registry, flaky, interval=0.01)
    publisher.start()
    try:
        assert recovered.wait(5)
        assert isinstance(publisher.last_error, OSError)
        assert publisher._thread is not None and publisher._thread.is_alive()
    finally:
        publisher.close()
