"""The audit trail fails closed: a state dir that turns read-only or full under a running share.

The state dir is a small tmpfs of its own (``mount -t tmpfs -o size=64k``): tests run as root,
where a chmod does not stop a write, so only a read-only mount or a full one can make the audit
line fail for real. Where mounting is not allowed the tests are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox
from e2e import E2E, connect, http_get, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.sshd]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_state_dir(sandbox: Sandbox) -> Iterator[Path]:
    """The sandbox's state dir on a 64 KiB tmpfs (mode 0700); unmounted at the end."""
    state = sandbox.state_dir
    state.mkdir(mode=0o700, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the state dir: {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        _mount("-o", "remount,rw", str(state))
        subprocess.run(["umount", "-l", str(state)], check=False)


def make_read_only(state: Path) -> None:
    out = _mount("-o", "remount,ro", str(state))
    assert out.returncode == 0, out.stderr


def make_writable(state: Path) -> None:
    out = _mount("-o", "remount,rw", str(state))
    assert out.returncode == 0, out.stderr


def fill(state: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file."""
    filler = state / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_connection_that_cannot_be_audited_is_refused_and_the_share_stops(
    small_state_dir: Path, e2e: E2E, fault: str
) -> None:
    service = e2e.service()
    proc = e2e.share(service.port, ttl="60s")
    started = e2e.started(proc)
    token, port = started["token"], started["remote_port"]
    assert http_get(port, headers={"X-Safetunnel-Token": token}).status == 200  # audited fine
    # Its line is written when it ends: wait for it, so the fault hits the next connection only.
    wait_until(lambda: [e["event"] for e in e2e.audit()][-1:] == ["connection"], what="audit")
    received = bytes(service.received)
    filler = None
    if fault == "read-only":
        make_read_only(small_state_dir)
    else:
        filler = fill(small_state_dir)
    with connect(port) as sock:  # the token checks out, but the line could not be written
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: " + token.encode())
        sock.sendall(b"\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    assert proc.wait(30) == 1
    assert bytes(service.received) == received  # not one byte of the refused request
    events = [json.loads(line) for line in proc.stdout_lines if line.strip()]
    refused = [e for e in events if e["event"] == "connection" and not e["allowed"]]
    assert refused and refused[-1]["reason"] == "audit-failed", (events, proc.stderr)
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "audit-failed"
    assert "the audit log" in proc.stderr and "cannot be written" in proc.stderr
    assert "Error: the tunnel stopped: audit-failed" in proc.stderr
    no_traceback(proc.stderr)
    # Read-only or full, the commands that read the state dir say so in one line at most.
    for argv in (["list"], ["list", "--json"], ["log"], ["status", started["id"]]):
        out = e2e.cli(*argv)
        no_traceback(out.stdout, out.stderr)
    if filler is not None:
        filler.unlink()
    make_writable(small_state_dir)
    e2e.cli_ok("list")  # prunes the record the share could not remove


def test_kill_of_a_share_whose_state_dir_turned_read_only_ends_it_cleanly(
    small_state_dir: Path, e2e: E2E
) -> None:
    service = e2e.service()
    proc = e2e.share(service.port, ttl="60s")
    tunnel_id = e2e.started(proc)["id"]
    make_read_only(small_state_dir)
    killed = e2e.cli("kill", tunnel_id)
    no_traceback(killed.stdout, killed.stderr)
    assert killed.returncode == 0, killed.stderr
    assert f"{tunnel_id}: stopped" in killed.stdout
    assert proc.wait(20) == 0  # killed, not SIGTERM's 143
    no_traceback(proc.stderr)
    make_writable(small_state_dir)
    wait_until(lambda: e2e.cli("list").returncode == 0, what="list after remount")


@pytest.mark.parametrize(
    "command", [("extend", "--by", "10m"), ("ticket", "--for", "bob")], ids=["extend", "ticket"]
)
def test_a_change_that_cannot_be_audited_is_not_made_and_the_share_stops(
    small_state_dir: Path, e2e: E2E, command: tuple[str, ...]
) -> None:
    """An extension or a new recipient's token is recorded before it takes effect: on a full
    disk neither happens, the command says why in one line, and the share stops as it does
    for a connection it cannot record."""
    service = e2e.service()
    proc = e2e.share(service.port, ttl="60s")
    started = e2e.started(proc)
    tunnel_id = started["id"]
    filler = fill(small_state_dir)
    out = e2e.cli(command[0], tunnel_id, *command[1:])
    no_traceback(out.stdout, out.stderr)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "audit log" in out.stderr and "cannot be written" in out.stderr, out.stderr
    assert not out.stdout.strip()  # no ticket, no token was handed out
    assert proc.wait(30) == 1
    events = [json.loads(line) for line in proc.stdout_lines if line.strip()]
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "audit-failed", events
    assert not [e for e in events if e["event"] in ("extended", "recipient")], events
    no_traceback(proc.stderr)
    filler.unlink()
    make_writable(small_state_dir)
