"""``share`` and ``hosts trust`` through a real jump host: two sshd on loopback, the user's
ssh_config routing an alias through ``ProxyJump``. The forward must be opened by the *target*
sshd, and the jump host must have carried the hop; the paramiko engine, which cannot follow a
proxy, must refuse by name instead of connecting directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Sandbox
from e2e import E2E, http_status, known_hosts_line
from services import http_keepalive
from sshd import SSHD, SSHDFactory

from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.keys import generate_ed25519

pytestmark = pytest.mark.sshd


def route_through(sandbox: Sandbox, jump: SSHD, target: SSHD) -> None:
    """``inner`` is the target, reached only through ``jump``."""
    ssh_dir = sandbox.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text(
        f"Host inner\n  HostName 127.0.0.1\n  Port {target.port}\n  User {target.user}\n"
        f"  ProxyJump {jump.user}@127.0.0.1:{jump.port}\n"
        f"Host *\n  IdentityFile {jump.client_key_path}\n  IdentitiesOnly yes\n"
    )


def _known(tmp_path: Path, *servers: SSHD) -> Path:
    known = tmp_path / "known_hosts"
    known.write_text("".join(known_hosts_line("127.0.0.1", s.port, s.host_key) for s in servers))
    return known


def test_share_through_a_jump_host_listens_on_the_target(
    e2e: E2E, sandbox: Sandbox, sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    jump, target = sshd_factory(), sshd_factory()
    route_through(sandbox, jump, target)
    known = _known(tmp_path, jump, target)
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--host", "inner", "--known-hosts", str(known), ttl="30s")
    started = e2e.started(proc)
    assert started["engine"] == "openssh"
    port = started["remote_port"]
    assert http_status(port, None) == 401
    assert http_status(port, started["token"]) == 200
    # The target's sshd opened the listener; the jump host only carried the hop to it.
    assert "tcpip-forward" in target.log_text()
    assert "tcpip-forward" not in jump.log_text()
    assert "direct-tcpip" in jump.log_text() and f"port {target.port}" in jump.log_text()
    assert e2e.run("kill", "--all").returncode == 0
    assert proc.wait(15) == 0, proc.stderr


def test_the_paramiko_engine_refuses_the_jump_host_by_name(
    e2e: E2E, sandbox: Sandbox, sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    jump, target = sshd_factory(), sshd_factory()
    route_through(sandbox, jump, target)
    known = _known(tmp_path, jump, target)
    service = e2e.service(http_keepalive)
    args = ["--host", "inner", "--known-hosts", str(known), "--engine", "paramiko"]
    out = e2e.run("share", str(service.port), "--yes", "--ttl", "5s", *args)
    assert out.returncode == 1, out.stderr
    assert "ProxyJump" in out.stderr and "--engine openssh" in out.stderr
    assert "Accepted publickey" not in jump.log_text() + target.log_text()


def test_hosts_trust_through_a_jump_host_pins_each_hop_once_confirmed(
    e2e: E2E, sandbox: Sandbox, sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    jump, target = sshd_factory(), sshd_factory()
    route_through(sandbox, jump, target)
    own = sandbox.config_dir / "known_hosts"
    wanted = fingerprint(target.host_key)
    # The jump host's key is unknown too: --fingerprint vouches for the target only.
    refused = e2e.run("hosts", "trust", "inner", "--fingerprint", wanted)
    assert refused.returncode == 4, refused.stderr
    assert fingerprint(jump.host_key) in refused.stderr
    assert f"hosts trust 127.0.0.1:{jump.port} --fingerprint" in refused.stderr
    assert not own.exists() or own.read_text() == ""
    jump_fp = fingerprint(jump.host_key)
    assert (
        e2e.run("hosts", "trust", f"127.0.0.1:{jump.port}", "--fingerprint", jump_fp).returncode
        == 0
    )
    trusted = e2e.run("hosts", "trust", "inner", "--fingerprint", wanted)
    assert trusted.returncode == 0, trusted.stderr
    assert f"ssh-ed25519 {wanted}" in trusted.stdout and "Pinned" in trusted.stdout
    pins = own.read_text().splitlines()
    assert [line.split()[0] for line in pins] == [
        f"[127.0.0.1]:{p}" for p in (jump.port, target.port)
    ]
    other = fingerprint(generate_ed25519())
    mismatch = e2e.run("hosts", "trust", "inner", "--fingerprint", other)
    assert mismatch.returncode == 4 and "not the expected" in mismatch.stderr
