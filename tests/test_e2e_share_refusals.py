"""End to end: shares that must be refused, cleanly and with the right exit code, through the real
console script and a real OpenSSH sshd. A refusal leaves nothing behind: no forward, no record, no
token file, no change to any known_hosts file."""

from __future__ import annotations

import random
import socket
import stat
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from e2e import (
    E2E,
    assert_port_released,
    http_get,
    known_hosts_line,
    port_open,
    sshd_args,
)
from services import http_keepalive
from sshd import SSHD, SSHDFactory

from safetunnel.ssh.hostkeys import fingerprint

pytestmark = pytest.mark.sshd


def free_remote_port() -> int:
    """A port outside the ephemeral range that nothing listens on right now (picked at random,
    so parallel test workers do not all try the same one)."""
    for candidate in random.sample(range(21000, 32000), 300):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", candidate))
            except OSError:
                continue
        if not port_open(candidate):
            return candidate
    raise RuntimeError("no free port")


def settled_log(server: SSHD, quiet: float = 0.3, limit: float = 3.0) -> str:
    """sshd's log once it stopped growing (the fixture's readiness probe is logged late)."""
    text, last_change = server.log_text(), time.monotonic()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet:
        time.sleep(0.05)
        now = server.log_text()
        if now != text:
            text, last_change = now, time.monotonic()
    return text


def share_on_port(
    e2e: E2E, local: int, remote: int, server: SSHD
) -> subprocess.CompletedProcess[str]:
    """A short ``--yes --json`` share asking for ``remote`` on ``server`` (expected refused)."""
    args = ("--ttl", "5s", "--yes", "--json", "--remote-port", str(remote), *sshd_args(server))
    return e2e.run("share", str(local), *args)


def state_files(e2e: E2E) -> list[Path]:
    state = e2e.sandbox.state_dir
    return sorted(p for p in state.rglob("*") if p.is_file()) if state.exists() else []


def test_no_tty_and_no_yes_exits_3_before_any_connection(e2e: E2E, sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    log_before = settled_log(sshd)
    result = e2e.run("share", str(service.port), "--ttl", "5s", *sshd_args(sshd))
    assert result.returncode == 3, result.stderr
    assert "Error:" in result.stderr and "--yes" in result.stderr  # the hint says what to do
    assert result.stdout == ""
    log_after = settled_log(sshd)
    assert log_after == log_before, "the share touched sshd: " + log_after[len(log_before) :]
    assert "tcpip-forward" not in log_after
    assert e2e.records() == []
    assert not any(p.name.endswith((".json", ".sock")) for p in state_files(e2e))


def test_no_tty_and_no_yes_exits_3_with_the_builtin_gateway_too(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    result = e2e.run("share", str(service.port), "--ttl", "5s", "--json")
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert e2e.records() == []


def _hostkey_refused(e2e: E2E, sshd: SSHD, known_hosts: Path) -> str:
    service = e2e.service(http_keepalive)
    own = e2e.sandbox.config_dir / "known_hosts"
    own_before = own.read_bytes() if own.exists() else None
    before = known_hosts.read_bytes()
    result = e2e.run(
        "share",
        str(service.port),
        "--ttl",
        "5s",
        "--yes",
        "--json",
        *sshd_args(sshd, known_hosts=known_hosts),
    )
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert known_hosts.read_bytes() == before
    assert (own.read_bytes() if own.exists() else None) == own_before  # --yes never trusts
    assert "tcpip-forward" not in sshd.log_text()
    assert e2e.records() == []
    return result.stderr


def test_unknown_host_key_exits_4_with_fingerprint_and_trust_command(
    e2e: E2E, sshd: SSHD, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_bytes(b"")
    stderr = _hostkey_refused(e2e, sshd, empty)
    assert fingerprint(sshd.host_key) in stderr
    assert fingerprint(sshd.host_key).startswith("SHA256:")
    assert "safetunnel hosts trust" in stderr


def test_changed_host_key_exits_4(e2e: E2E, sshd: SSHD, tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.client_key_path))  # any other key
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(known_hosts_line("127.0.0.1", sshd.port, other))
    stderr = _hostkey_refused(e2e, sshd, changed)
    assert "Error:" in stderr
    assert "changed" in stderr.lower() or "does not match" in stderr.lower()


def test_nothing_listening_exits_7_with_a_hint(e2e: E2E, sshd: SSHD) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    log_before = settled_log(sshd)
    result = e2e.run("share", str(port), "--ttl", "5s", "--yes", "--json", *sshd_args(sshd))
    assert result.returncode == 7, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "hint:" in result.stderr
    assert settled_log(sshd) == log_before  # pre-flight fails before any connection


def test_gatewayports_yes_without_public_exits_6_and_unbinds(
    e2e: E2E, sshd_factory: SSHDFactory
) -> None:
    server = sshd_factory(gateway_ports=True)
    service = e2e.service(http_keepalive)
    remote = free_remote_port()
    result = share_on_port(e2e, service.port, remote, server)
    assert result.returncode == 6, result.stderr
    assert "ALL interfaces" in result.stderr and "--public" in result.stderr
    assert result.stdout == ""  # never announced as started
    assert_port_released(remote)
    assert "tcpip-forward" in server.log_text()  # it really was requested, and then cancelled


def test_gatewayports_yes_with_public_and_yes_starts(e2e: E2E, sshd_factory: SSHDFactory) -> None:
    server = sshd_factory(gateway_ports=True)
    service = e2e.service(http_keepalive)
    # Plain HTTP on purpose (this is about the bind): without TLS it needs the port confirmed.
    plain = ("--no-tls", "--confirm-port", str(service.port))
    proc = e2e.share(service.port, "--public", *plain, via=server)
    started = e2e.started(proc)
    assert started["remote_bind"] == "0.0.0.0"
    ok = http_get(started["remote_port"], "/pub", {"X-Safetunnel-Token": started["token"]})
    assert ok.status == 200
    assert http_get(started["remote_port"], "/pub").status == 401
    proc.proc.terminate()
    assert proc.wait(15) == 0
    assert_port_released(started["remote_port"])


def test_permitlisten_restricted_key_refuses_another_port(
    e2e: E2E, sshd_factory: SSHDFactory
) -> None:
    allowed, other = free_remote_port(), None
    server = sshd_factory(
        authorized_options=f'restrict,port-forwarding,permitlisten="127.0.0.1:{allowed}"'
    )
    other = allowed + 1 if not port_open(allowed + 1) else allowed + 2
    service = e2e.service(http_keepalive)
    result = share_on_port(e2e, service.port, other, server)
    assert result.returncode == 6, result.stderr
    assert "refused" in result.stderr
    assert not port_open(other)
    # The restriction is what refused it: the permitted port works with the same key.
    proc = e2e.share(service.port, "--remote-port", str(allowed), via=server)
    started = e2e.started(proc)
    assert started["remote_port"] == allowed
    assert http_get(allowed, "/", {"X-Safetunnel-Token": started["token"]}).status == 200
    proc.proc.terminate()
    assert proc.wait(15) == 0


def test_token_file_is_private_never_overwritten_and_not_in_events(
    e2e: E2E, sshd: SSHD, tmp_path: Path
) -> None:
    service = e2e.service(http_keepalive)
    token_file = tmp_path / "token"
    e2e.token_files.append(token_file)
    # Long enough that it cannot expire (and remove its file) before the second share runs.
    proc = e2e.share(service.port, "--token-file", str(token_file), via=sshd, ttl="60s")
    started = proc.started()
    assert "token" not in started
    assert "safetunnel_token" not in started["url"]
    mode = token_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    content = token_file.read_bytes()
    token = content.decode().strip()
    assert token.startswith("st_") and len(token) == 46
    e2e.tokens.append(token)
    ok = http_get(started["remote_port"], "/tf", {"X-Safetunnel-Token": token})
    assert (ok.status, ok.body) == (200, b"hello /tf")

    second = e2e.run(
        "share",
        str(service.port),
        "--ttl",
        "5s",
        "--yes",
        "--json",
        "--token-file",
        str(token_file),
        *sshd_args(sshd),
    )
    assert second.returncode == 1, second.stderr
    assert "already exists" in second.stderr and "never overwritten" in second.stderr
    assert second.stdout == ""
    assert token_file.read_bytes() == content
    proc.proc.terminate()
    assert proc.wait(15) == 0
    assert proc.stdout.count(token) == 0  # not even in the started event
    assert token not in proc.stderr


def test_remote_port_taken_on_ipv4_loopback_is_refused_not_half_bound(e2e: E2E, sshd: SSHD) -> None:
    # Another program holds 127.0.0.1:N on the SSH host. Asking sshd for "localhost:N" used to
    # succeed on [::1]:N alone, while the printed link (127.0.0.1/localhost) reached the other
    # program, token and all. The explicit 127.0.0.1 bind is refused instead.
    port = free_remote_port()
    impostor = socket.socket()
    impostor.bind(("127.0.0.1", port))
    impostor.listen(1)
    try:
        service = e2e.service(http_keepalive)
        result = share_on_port(e2e, service.port, port, sshd)
        assert result.returncode == 6, result.stderr
        assert '"event":"started"' not in result.stdout.replace(" ", "")
        impostor.settimeout(0.2)
        with pytest.raises(TimeoutError):
            impostor.accept()  # nobody was sent here
    finally:
        impostor.close()
