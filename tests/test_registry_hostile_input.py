"""Hostile or unlucky input to the registry, the audit log and tickets: one clear answer, never
a traceback, and each tunnel's end audited once.

1. A ticket whose JSON nests deeply (about 1000 ``[`` fit in a 1400-character ticket) is a
   damaged ticket (exit 2): ``json.loads`` raises RecursionError for it, not ValueError.
2. So is one audit line: ``safetunnel log`` skips it, as it skips every unreadable line.
3. A record whose ``pid_start_time`` is not a number is an unreadable record, not a TypeError
   in ``list`` (or ``kill``).
4. A share that ends cleanly between ``list`` reading its record and checking its process is
   not audited a second time as ``stopped``/``lost``: whoever removes a record audits it.
5. A FIFO named like a record (or like config.toml) is not opened for reading: that would wait
   for a writer that never comes, and ``list``, ``kill`` and every share with it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
from conftest import Sandbox
from e2e import run

from safetunnel.registry import records as reg
from safetunnel.registry.audit import AuditLog


def _nested_ticket(depth: int = 1020) -> str:
    raw = b'{"h":' + b"[" * depth
    return "stt1_" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def test_a_deeply_nested_ticket_is_a_damaged_ticket_not_a_traceback(sandbox: Sandbox) -> None:
    ticket = _nested_ticket()
    assert len(ticket) < 2048  # within tickets.MAX_LENGTH
    result = run(["connect", "-"], sandbox.env, input_text=ticket + "\n")
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    assert result.returncode == 2, result.stderr[-400:]
    assert "damaged" in result.stderr


def test_a_deeply_nested_audit_line_is_skipped_by_log(sandbox: Sandbox) -> None:
    audit = AuditLog(sandbox.state_dir / "audit.jsonl")
    audit.write("started", "st-abcdef", local="127.0.0.1:8000")
    with (sandbox.state_dir / "audit.jsonl").open("a") as handle:
        handle.write("[" * 1200 + "\n")
    result = run(["log"], sandbox.env)
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    assert result.returncode == 0
    assert "st-abcdef" in result.stdout


def _record(tunnel_id: str, pid: int, start: object) -> dict[str, object]:
    return {
        "id": tunnel_id,
        "pid": pid,
        "pid_start_time": start,
        "local": "127.0.0.1:8000",
        "ssh_host": "example",
        "remote_bind": "127.0.0.1",
        "remote_port": 40000,
        "protocol": "tcp",
        "started_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T00:30:00Z",
        "token_hash_prefix": "abcd1234",
    }


def _write_record(registry: reg.Registry, data: dict[str, object]) -> Path:
    path = registry.dir / f"{data['id']}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    return path


def test_a_record_with_a_non_numeric_start_time_is_no_traceback(sandbox: Sandbox) -> None:
    registry = reg.Registry(sandbox.state_dir)
    # Our own live pid: the record passes the pid, uid and zombie checks and reaches the compare.
    _write_record(registry, _record("st-abcdef", os.getpid(), "1700000000"))
    result = run(["list"], sandbox.env)
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    assert result.returncode in (0, 1)


def test_a_share_that_stops_cleanly_while_listed_is_not_audited_as_lost(
    sandbox: Sandbox, monkeypatch: object
) -> None:
    registry = reg.Registry(sandbox.state_dir)
    audit = AuditLog(sandbox.state_dir / "audit.jsonl")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = psutil.Process(child.pid).create_time()
        path = _write_record(registry, _record("st-abcdef", child.pid, start))
        original = reg.fsutil.read_trusted

        def read_then_share_ends(p: Path) -> bytes:
            data = original(p)
            if p == path:
                # The share's own clean teardown, right after list read its record: its
                # `stopped` line, its record removed, its process gone.
                audit.write("stopped", "st-abcdef", reason="killed")
                registry.remove("st-abcdef")
                child.kill()
                child.wait()
            return data

        monkeypatch.setattr(reg.fsutil, "read_trusted", read_then_share_ends)  # type: ignore[attr-defined]
        loaded = registry.load_all()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stops = [e for e in audit.read("st-abcdef") if e.get("event") == "stopped"]
    assert [e.get("reason") for e in stops] == ["killed"], stops
    assert loaded.pruned == 0  # nothing stale was cleaned: the share removed its own record


def test_a_fifo_named_like_a_record_does_not_hang_list(sandbox: Sandbox) -> None:
    registry = reg.Registry(sandbox.state_dir)
    fifo = registry.dir / "st-abcdef.json"
    os.mkfifo(fifo, 0o600)
    try:
        for args in (["list"], ["status", "st-abcdef"], ["kill", "st-abcdef"]):
            result = run(args, sandbox.env, timeout=20)
            assert "Traceback" not in result.stderr, result.stderr[-400:]
            assert result.returncode in (0, 1), (args, result.stderr)
    finally:
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()


def test_a_fifo_for_config_toml_is_a_clear_error(sandbox: Sandbox) -> None:
    config = sandbox.config_dir / "config.toml"
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(config, 0o600)
    result = run(["hosts", "list"], sandbox.env, timeout=20)
    assert "Traceback" not in result.stderr, result.stderr[-400:]
    assert result.returncode == 1, result.stderr
    assert "not a regular file" in result.stderr
