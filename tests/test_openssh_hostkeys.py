"""Host keys on the OpenSSH engine, decided by OpenSSH against a real sshd: pinned, unknown with and
without someone to ask, changed, certified by a CA the user trusts, and through a jump host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Sandbox
from sshd import SSHD, SSHDFactory

from safetunnel import paths
from safetunnel.errors import HostKeyChanged, HostKeyUnknown
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.openssh import config
from safetunnel.ssh.openssh.hostkeys import verify
from safetunnel.ssh.target import SSHTarget


def _target(server: SSHD, client_key: Path | None = None) -> SSHTarget:
    key = client_key or server.client_key_path
    return SSHTarget(server.host, server.port, server.user, (str(key),), label="fx")


def _verify(target: SSHTarget, known: Path, prompt: object = None) -> tuple[str, str, str]:
    options = config.ssh_options(target, known_hosts=[known], keepalive=5)
    return verify(target, known_hosts=[known], on_unknown_key=prompt, options=options)  # type: ignore[arg-type]


def test_pinned_key_is_accepted(sandbox: Sandbox, shared_sshd: SSHD) -> None:
    state, fp, key_type = _verify(_target(shared_sshd), shared_sshd.known_hosts)
    assert (state, fp, key_type) == ("pinned", fingerprint(shared_sshd.host_key), "ssh-ed25519")


def test_unknown_without_prompt_is_exit_4_with_the_trust_command(
    sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown) as caught:
        _verify(_target(shared_sshd), empty)
    assert caught.value.exit_code == 4
    assert fingerprint(shared_sshd.host_key) in caught.value.message
    assert caught.value.hint is not None and "safetunnel hosts trust fx" in caught.value.hint
    assert not paths.own_known_hosts().exists()


def test_unknown_and_yes_pins_in_own_file_only(
    sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path
) -> None:
    user_file = tmp_path / "known_hosts"
    user_file.write_bytes(b"# mine\n")
    asked: list[tuple[str, str]] = []

    def prompt(target: SSHTarget, key_type: str, fp: str) -> bool:
        asked.append((key_type, fp))
        return True

    state, fp, _ = _verify(_target(shared_sshd), user_file, prompt)
    assert state == "newly-trusted" and asked == [("ssh-ed25519", fp)]
    assert fp == fingerprint(shared_sshd.host_key)
    assert user_file.read_bytes() == b"# mine\n"
    own = paths.own_known_hosts().read_text()
    assert (
        own == f"[127.0.0.1]:{shared_sshd.port} ssh-ed25519 {shared_sshd.host_key.get_base64()}\n"
    )
    assert _verify(_target(shared_sshd), user_file)[0] == "pinned"  # no prompt the second time


def test_declined_key_is_not_pinned(sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown):
        _verify(_target(shared_sshd), empty, lambda *_: False)
    assert not paths.own_known_hosts().exists()


def test_changed_key_is_exit_4(sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    public = other.with_suffix(".pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{shared_sshd.port} {public[0]} {public[1]}\n")
    with pytest.raises(HostKeyChanged) as caught:
        _verify(_target(shared_sshd), known, lambda *_: True)
    assert caught.value.exit_code == 4
    assert not paths.own_known_hosts().exists()
    # One way out, safetunnel's: ssh's own advice (edit known_hosts by hand) is left out.
    assert "ssh-keygen" not in caught.value.message and "remove with" not in caught.value.message
    assert caught.value.hint is not None and "--replace" in caught.value.hint


def test_key_of_another_type_pinned_is_changed_not_unknown(
    sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    public = other.with_suffix(".pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{shared_sshd.port} {public[0]} {public[1]}\n")
    with pytest.raises(HostKeyChanged):
        _verify(_target(shared_sshd), known, lambda *_: True)


def test_certificate_from_a_trusted_ca_is_accepted(
    sandbox: Sandbox, sshd_factory: SSHDFactory, sshd_key_dir: Path, tmp_path: Path
) -> None:
    ca = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    host_pub = tmp_path / "host_ed25519.pub"
    host_pub.write_text((sshd_key_dir / "host_ed25519.pub").read_text())
    sign = ["ssh-keygen", "-q", "-s", str(ca), "-I", "fx", "-h", "-n", "127.0.0.1", str(host_pub)]
    subprocess.run(sign, check=True, capture_output=True)
    cert = tmp_path / "host_ed25519-cert.pub"
    server = sshd_factory(extra_config=[f"HostCertificate {cert}"])
    known = tmp_path / "known_hosts"
    known.write_text(
        f"@cert-authority [127.0.0.1]:{server.port} {ca.with_suffix('.pub').read_text()}"
    )
    result = verify(
        _target(server),
        known_hosts=[known],
        on_unknown_key=None,
        options=config.ssh_options(_target(server), known_hosts=[known], keepalive=5),
    )
    assert result.state == "pinned" and result.certified
    assert result.fingerprint == fingerprint(server.host_key)
    assert not paths.own_known_hosts().exists()


def test_jump_host_and_target_are_each_asked_and_the_hop_is_logged(
    sandbox: Sandbox, sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    jump, target_sshd = sshd_factory(), sshd_factory()
    ssh_dir = sandbox.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(
        f"Host inner\n  HostName 127.0.0.1\n  Port {target_sshd.port}\n"
        f"  ProxyJump {jump.user}@127.0.0.1:{jump.port}\n"
        f"Host *\n  IdentityFile {jump.client_key_path}\n  IdentitiesOnly yes\n"
    )
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    asked: list[str] = []

    def prompt(target: SSHTarget, key_type: str, fp: str) -> bool:
        asked.append(f"{target.hostname}:{target.port}")
        return True

    target = SSHTarget("127.0.0.1", target_sshd.port, target_sshd.user, label="inner")
    target = SSHTarget(**{**target.__dict__, "destination": "inner"})
    state, _, _ = _verify(target, empty, prompt)
    assert state == "newly-trusted"
    assert asked == [f"127.0.0.1:{jump.port}", f"127.0.0.1:{target_sshd.port}"]
    assert f"port {target_sshd.port}" in jump.log_text()  # the jump host carried the hop
    assert "direct-tcpip" in jump.log_text()
