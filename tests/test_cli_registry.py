from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stub_share
from e2e import LIST_KEYS, SCRIPT, CliResult, run_cli

from safetunnel.registry import manage
from safetunnel.registry import records as reg
from safetunnel.registry.audit import AuditLog
from safetunnel.timefmt import parse_iso_z


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state_dir = tmp_path / "state"
    monkeypatch.setenv("SAFETUNNEL_STATE_DIR", str(state_dir))
    monkeypatch.setenv("SAFETUNNEL_CONFIG_DIR", str(tmp_path / "config"))
    return state_dir


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        stub_share.stop_quietly(proc)


def run(*args: str, check_code: int | None = 0) -> CliResult:
    """``safetunnel ARGS`` in-process, checking the exit code unless ``check_code`` is None."""
    out = run_cli(*args)
    if check_code is not None:
        assert out.returncode == check_code, (out.stdout, out.stderr)
    return out


def share(procs: list[subprocess.Popen[str]], *args: str) -> tuple[subprocess.Popen[str], str]:
    """A running share (real Tunnel and bookkeeping over a stub SSH session; stub_share.py)."""
    proc, tunnel_id = stub_share.start(*args)
    procs.append(proc)
    return proc, tunnel_id


def forged_sleep_record(
    state: Path, procs: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], str]:
    """A record naming a live, unrelated `sleep` with the wrong start time (as after pid reuse)."""
    sleeper = subprocess.Popen(["sleep", "30"], text=True)
    procs.append(sleeper)
    record = reg.TunnelRecord(
        id="st-5eeb00",
        pid=sleeper.pid,
        pid_start_time=time.time() - 3600,
        local="127.0.0.1:1",
        ssh_host="h",
        remote_bind="localhost",
        remote_port=1,
        protocol="tcp",
        started_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:30:00Z",
        token_hash_prefix="00000000",
    )
    reg.Registry(state).write(record)
    return sleeper, record.id


def test_list_empty(state: Path) -> None:
    assert run("list").stdout == "No active tunnels.\n"
    assert json.loads(run("list", "--json").stdout) == []


def test_list_table_and_json(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    proc, tunnel_id = share(procs)
    out = run("list").stdout.splitlines()
    header = ["ID", "LOCAL", "VIA", "REMOTE", "STATE", "EXPIRES", "IN", "CONNS", "PID"]
    assert out[0].split() == header
    row = out[1].split()
    assert row[:5] == [
        tunnel_id,
        "127.0.0.1:62893",
        "alice@bastion:22",
        "127.0.0.1:40123",
        "serving",
    ]
    assert row[-1] == str(proc.pid)
    (entry,) = json.loads(run("list", "--json").stdout)
    assert set(LIST_KEYS) <= set(entry), entry
    assert entry["id"] == tunnel_id and entry["pid"] == proc.pid
    assert "token" not in entry


def dead_record(tunnel_id: str) -> reg.TunnelRecord:
    """A record whose process has exited."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return reg.TunnelRecord(
        id=tunnel_id,
        pid=dead.pid,
        pid_start_time=time.time(),
        local="l",
        ssh_host="h",
        remote_bind="localhost",
        remote_port=1,
        protocol="tcp",
        started_at="x",
        expires_at="y",
        token_hash_prefix="0",
    )


def test_stale_dead_pid_is_pruned_and_counted(state: Path) -> None:
    registry = reg.Registry(state)
    for tunnel_id in ("st-000001", "st-000002"):
        registry.write(dead_record(tunnel_id))
    out = run("list")
    assert out.stdout == "No active tunnels.\nCleaned 2 stale entries.\n"
    assert list(registry.dir.iterdir()) == []
    assert "Cleaned" not in run("list").stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["kill"], 0),
        (["status"], 1),
        (["extend", "--by", "1m"], 1),
        (["ticket", "--for", "x"], 1),
        (["revoke", "default"], 1),
    ],
)
def test_every_command_that_prunes_a_dead_tunnel_audits_its_end(
    state: Path, args: list[str], code: int
) -> None:
    record = dead_record("st-0dead1")
    registry = reg.Registry(state)
    registry.write(record)
    out = run(args[0], record.id, *args[1:], check_code=code)
    assert "stale entry removed" in out.stdout + out.stderr
    assert list(registry.dir.glob("st-*")) == []
    ends = [e for e in AuditLog(state / "audit.jsonl").read(record.id) if e["event"] == "stopped"]
    assert [e["reason"] for e in ends] == ["lost"]


def test_list_json_reports_cleanup_on_stderr(state: Path) -> None:
    (reg.Registry(state).dir / "st-00000a.json").write_text("junk")
    out = run("list", "--json")
    assert json.loads(out.stdout) == []
    assert "Cleaned 1 stale entry." in out.stderr


def test_forged_record_with_live_unrelated_pid_is_pruned_never_signalled(
    state: Path, procs: list[subprocess.Popen[str]]
) -> None:
    sleeper, tunnel_id = forged_sleep_record(state, procs)
    out = run("kill", tunnel_id)
    assert "was not running" in out.stdout
    time.sleep(0.2)
    assert sleeper.poll() is None
    sleeper2, _ = forged_sleep_record(state, procs)
    assert "Cleaned 1 stale entry." in run("list").stdout
    run("kill", "--all")
    assert sleeper2.poll() is None


def test_kill_via_control_socket(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    proc, tunnel_id = share(procs)
    registry = reg.Registry(state)
    assert registry.socket_path(tunnel_id).exists()
    out = run("kill", tunnel_id)
    assert out.stdout == f"{tunnel_id}: stopped\n"
    assert proc.wait(timeout=5) == 0
    assert not registry.record_path(tunnel_id).exists()
    assert not registry.socket_path(tunnel_id).exists()
    stopped = [
        e for e in AuditLog(state / "audit.jsonl").read(tunnel_id) if e["event"] == "stopped"
    ]
    assert stopped[0]["reason"] == "killed"


def test_kill_falls_back_to_sigterm_when_socket_is_gone(
    state: Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc, tunnel_id = share(procs, "--no-control")
    out = run("kill", tunnel_id)
    assert out.stdout.startswith(f"{tunnel_id}: stopped with SIGTERM")
    assert proc.wait(timeout=5) == 0
    assert list(reg.Registry(state).dir.iterdir()) == []
    assert [
        e["reason"] for e in AuditLog(state / "audit.jsonl").read() if e["event"] == "stopped"
    ] == ["signal"]


def test_stop_escalates_when_tunnel_ignores_stop(
    state: Path, procs: list[subprocess.Popen[str]]
) -> None:
    proc, tunnel_id = share(procs, "--ignore-stop")
    result = manage.stop(reg.Registry(state), tunnel_id, timeout=2.0)
    assert result.method == "sigterm"
    assert proc.wait(timeout=5) == 0


def test_kill_all_and_usage_errors(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    first, id1 = share(procs)
    second, id2 = share(procs)
    out = run("kill", "--all")
    assert sorted(out.stdout.splitlines()) == sorted([f"{id1}: stopped", f"{id2}: stopped"])
    assert first.wait(timeout=5) == 0 and second.wait(timeout=5) == 0
    assert run("kill", "--all").stdout == "No active tunnels.\n"
    assert "--all" in run("kill", check_code=2).stderr
    run("kill", id1, "--all", check_code=2)


def test_kill_unknown_id_exits_1_with_hint(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    out = run("kill", "st-abcdef", check_code=1)
    assert "Error: no tunnel with id st-abcdef" in out.stderr
    assert "hint: Run `safetunnel list`" in out.stderr
    proc, tunnel_id = share(procs)
    out = run("kill", tunnel_id, "st-abcdef", check_code=1)
    assert f"{tunnel_id}: stopped" in out.stdout
    assert "st-abcdef: not stopped" in out.stderr
    assert proc.wait(timeout=5) == 0


def test_status_text_and_json(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    proc, tunnel_id = share(procs)
    info = json.loads(run("status", tunnel_id, "--json").stdout)
    assert info["id"] == tunnel_id and info["live"] is True and info["pid"] == proc.pid
    assert info["local"] == "127.0.0.1:62893" and info["ssh_host"] == stub_share.SSH_HOST
    assert info["remote_port"] == stub_share.REMOTE_PORT
    assert (info["total_connections"], info["recent"]) == (0, [])  # the stub delivers none
    assert "token" not in info
    text = run("status", tunnel_id).stdout
    assert "Tunnel:" in text and tunnel_id in text and "Recent connections:\n  (none yet)" in text
    run("status", "st-abcdef", check_code=1)


def test_extend_moves_expiry_exactly_and_refuses_past_max(
    state: Path, procs: list[subprocess.Popen[str]]
) -> None:
    _, tunnel_id = share(procs, "--ttl", "60", "--max-ttl", "1000")
    registry = reg.Registry(state)
    before = parse_iso_z(registry.get(tunnel_id).expires_at)
    out = run("extend", tunnel_id, "--by", "10m")
    assert "extended by 10m" in out.stdout
    after = parse_iso_z(registry.get(tunnel_id).expires_at)
    assert (after - before).total_seconds() == 600
    refused = run("extend", tunnel_id, "--by", "10m", check_code=2)  # a usage error
    assert "max_ttl" in refused.stderr
    assert (
        "Invalid value for '--by'" in run("extend", tunnel_id, "--by", "10x", check_code=2).stderr
    )
    events = [e["event"] for e in AuditLog(state / "audit.jsonl").read(tunnel_id)]
    assert events == ["started", "extended"]


def test_log_table_json_and_filter(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    assert run("log").stdout == "No audit entries.\n"
    _, id1 = share(procs)
    _, id2 = share(procs)
    run("kill", id1)
    lines = run("log").stdout.splitlines()
    assert lines[0].split() == ["TIME", "ID", "EVENT", "DETAILS"]
    assert len(lines) == 4
    entries = [json.loads(line) for line in run("log", id1, "--json").stdout.splitlines()]
    assert [e["event"] for e in entries] == ["started", "stopped"]
    assert {e["id"] for e in entries} == {id1}
    assert id2 not in run("log", id1).stdout
    run("log", "../etc", check_code=1)


def test_log_follow_prints_new_entries(state: Path, procs: list[subprocess.Popen[str]]) -> None:
    follower = subprocess.Popen(
        [SCRIPT, "log", "--follow", "--json"], stdout=subprocess.PIPE, text=True
    )
    procs.append(follower)
    _, tunnel_id = share(procs)
    assert follower.stdout is not None
    line = json.loads(follower.stdout.readline())
    assert line["event"] == "started" and line["id"] == tunnel_id


def test_log_follow_of_one_tunnel_ends_with_its_stopped_entry(
    state: Path, procs: list[subprocess.Popen[str]]
) -> None:
    _, tunnel_id = share(procs)
    follower = subprocess.Popen(
        [SCRIPT, "log", tunnel_id, "--follow", "--json"], stdout=subprocess.PIPE, text=True
    )
    procs.append(follower)
    assert follower.stdout is not None
    assert json.loads(follower.stdout.readline())["event"] == "started"
    run("kill", tunnel_id)
    assert follower.wait(10) == 0
    assert json.loads(follower.stdout.read())["event"] == "stopped"
    after = subprocess.run(
        [SCRIPT, "log", tunnel_id, "--follow", "--json"], capture_output=True, text=True, timeout=10
    )  # already over: shows it all and ends
    assert [json.loads(line)["event"] for line in after.stdout.splitlines()][-1] == "stopped"


def test_group_writable_state_dir_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    state.chmod(0o777)
    out = run("list", check_code=1)
    assert "writable by group or others" in out.stderr and "hint:" in out.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a foreign-owned dir")
def test_foreign_owned_state_dir_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    out = run("kill", "st-abcdef", check_code=1)
    assert "not by you" in out.stderr


PROBE = """
import sys
from safetunnel.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("paramiko", "cryptography"))
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json"],
        ["kill", "--all"],
        ["status", "st-abcdef"],
        ["log"],
        ["extend", "st-abcdef", "--by", "1m"],
    ],
)
def test_registry_commands_do_not_import_paramiko(state: Path, args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=30
    )
    assert "HEAVY:\n" in out.stderr, out.stderr
