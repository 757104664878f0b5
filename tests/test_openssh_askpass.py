"""An encrypted key unlocked from the keyring through the askpass helper, by a real ssh with no
terminal, against a real sshd; without a stored secret the failure is exit 5 with the creds hint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Sandbox
from sshd import SSHD, SSHDFactory

from safetunnel.errors import AuthFailed
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.openssh import config
from safetunnel.ssh.openssh.askpass import Answer, asking, askpass_env, read_report, secret_for
from safetunnel.ssh.openssh.errors import errors_from_ssh
from safetunnel.ssh.target import SSHTarget

PASSPHRASE = "correct horse battery staple"


def _encrypted_key(tmp_path: Path) -> Path:
    key = tmp_path / "locked_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True
    )
    return key


def _login(sandbox: Sandbox, server: SSHD, key: Path) -> subprocess.CompletedProcess[str]:
    ssh_dir = sandbox.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text("Host *\n  IdentitiesOnly yes\n  IdentityAgent none\n")
    target = SSHTarget(server.host, server.port, server.user, (str(key),), label="fx")
    options = config.ssh_options(target, known_hosts=[server.known_hosts], keepalive=5)
    # SessionType=default and a command: this login runs `true` and ends, with no terminal.
    args = ["ssh", "-o", "SessionType=default", "-o", "ControlPath=none", *options]
    return subprocess.run(
        [*args, *config.destination(target), "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=askpass_env(target),
        start_new_session=True,  # no controlling terminal: only askpass can answer
        timeout=60,
        check=False,
    )


@pytest.fixture
def locked(sandbox: Sandbox, sshd_factory: SSHDFactory, tmp_path: Path) -> tuple[SSHD, Path]:
    key = _encrypted_key(tmp_path)
    server = sshd_factory(extra_authorized_lines=[key.with_suffix(".pub").read_text().strip()])
    return server, key


def test_encrypted_key_unlocks_from_the_keyring(
    sandbox: Sandbox, locked: tuple[SSHD, Path]
) -> None:
    server, key = locked
    KeyringStore().set(SecretName.passphrase(str(key)), PASSPHRASE)
    done = _login(sandbox, server, key)
    assert done.returncode == 0, done.stderr
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(key.with_suffix(".pub"))], capture_output=True, text=True
    ).stdout.split()[1]
    assert f"Accepted publickey for {server.user}" in server.log_text()
    assert fingerprint in server.log_text()  # the encrypted key is what logged in
    env = askpass_env(SSHTarget(server.host, server.port, server.user))
    assert PASSPHRASE not in " ".join(f"{k}={v}" for k, v in env.items())
    assert not any(PASSPHRASE in p.read_text() for p in sandbox.state_dir.rglob("*") if p.is_file())


def test_no_stored_secret_is_auth_failed_with_the_creds_hint(
    sandbox: Sandbox, locked: tuple[SSHD, Path]
) -> None:
    server, key = locked
    done = _login(sandbox, server, key)
    assert done.returncode == 255
    error = errors_from_ssh(done.stderr, SSHTarget(server.host, server.port, label="fx"))
    assert isinstance(error, AuthFailed) and error.exit_code == 5
    assert error.hint is not None and "creds set fx --passphrase-for" in error.hint


def test_prompts_name_the_right_secret() -> None:
    target = SSHTarget("db.example", 2222, "ann")
    assert secret_for("Enter passphrase for key '/k/id':", target) == SecretName.passphrase("/k/id")
    assert secret_for("ann@db.example's password:", target) == SecretName.password(
        "ann", "db.example", 2222
    )
    assert secret_for("(bob@other) Password:", target) == SecretName.password("bob", "other", 22)
    assert secret_for("Are you sure you want to continue connecting?", target) is None


def test_while_the_helper_asks_the_report_says_so_and_its_answers_leave_that_out(
    tmp_path: Path,
) -> None:
    report = tmp_path / "r.report"
    assert not asking(report)  # no helper ran yet
    report.write_text("passphrase\tasking\t/k\n")
    assert asking(report) and read_report(report) == []
    report.write_text("passphrase\tasking\t/k\npassphrase\ttyped\t/k\n")
    assert not asking(report)
    assert read_report(report) == [Answer("passphrase", "typed", "/k")]
