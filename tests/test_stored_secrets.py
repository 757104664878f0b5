"""``share`` uses secrets stored with ``creds set``: end to end, through the real console script.

Servers: the real sshd (key passphrases) and the built-in gateway run in this process with
password auth (passwords; creating a system user for sshd would change the machine). The
gateway's paramiko transport logs every password attempt, which is how "one attempt, no loop"
is counted.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import Sandbox
from issue5kit import (
    PtyRun,
    echo_service,
    env_without_agent,
    known_hosts_line,
    public_line,
    share_started,
    stop,
)
from secrets_check import assert_secret_absent
from shareproc import run
from sshd import SSHD, SSHDFactory
from test_credentials import make_key

from safetunnel.ssh.gateway import Gateway

PASSPHRASE = "stored passphrase ✓ \"q\""
PASSWORD = "gateway pw & spaces ✓"
USER = "tester"


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    return make_key(tmp_path / "id_enc", PASSPHRASE)


@pytest.fixture
def key_sshd(sshd_factory: SSHDFactory, encrypted_key: Path) -> SSHD:
    key = paramiko.Ed25519Key.from_private_key_file(str(encrypted_key), PASSPHRASE)
    return sshd_factory(extra_authorized_lines=[public_line(key)])


@pytest.fixture
def pw_gateway(tmp_path: Path) -> Iterator[tuple[Gateway, Path]]:
    with Gateway(passwords={USER: PASSWORD}) as gateway:
        gateway.start()
        known = tmp_path / "gw_known_hosts"
        known.write_text(known_hosts_line("127.0.0.1", gateway.address[1], gateway.host_key))
        yield gateway, known


def password_attempts(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("Auth rejected (password)")
               or r.getMessage().startswith("Auth granted (password)"))


def test_stored_passphrase_unlocks_key_for_non_interactive_share(
        sandbox: Sandbox, key_sshd: SSHD, encrypted_key: Path) -> None:
    env = env_without_agent(sandbox)
    host = f"{key_sshd.user}@127.0.0.1:{key_sshd.port}"
    stored = run(["creds", "set", host, "--passphrase-for", str(encrypted_key)], env,
                 input_text=PASSPHRASE + "\n")
    assert stored.returncode == 0, stored.stderr
    with echo_service() as service:
        _, proc = share_started([str(service.port), "--host", host, "--identity",
                                 str(encrypted_key), "--known-hosts",
                                 str(key_sshd.known_hosts)], env)
        assert stop(proc, env) == 0
    assert "Accepted publickey" in key_sshd.log_text()
    outputs = [stored.stdout, stored.stderr, proc.stdout, proc.stderr, key_sshd.log_text()]
    assert_secret_absent(PASSPHRASE, sandbox.dirs, outputs, allow=[sandbox.keyring_file])


def test_stored_password_for_gateway_share(
        sandbox: Sandbox, pw_gateway: tuple[Gateway, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paramiko.transport")
    gateway, known = pw_gateway
    env = env_without_agent(sandbox)
    host = f"{USER}@127.0.0.1:{gateway.address[1]}"
    stored = run(["creds", "set", host], env, input_text=PASSWORD + "\n")
    assert stored.returncode == 0, stored.stderr
    with echo_service() as service:
        started, proc = share_started([str(service.port), "--host", host, "--known-hosts",
                                       str(known)], env)
        assert started["ssh_host"] == host
        assert stop(proc, env) == 0
    assert password_attempts(caplog) == 1
    outputs = [stored.stdout, stored.stderr, proc.stdout, proc.stderr, caplog.text]
    assert_secret_absent(PASSWORD, sandbox.dirs, outputs, allow=[sandbox.keyring_file])


def test_wrong_stored_password_exit_5_after_one_attempt(
        sandbox: Sandbox, pw_gateway: tuple[Gateway, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paramiko.transport")
    gateway, known = pw_gateway
    env = env_without_agent(sandbox)
    host = f"{USER}@127.0.0.1:{gateway.address[1]}"
    wrong = "not the password"
    assert run(["creds", "set", host], env, input_text=wrong + "\n").returncode == 0
    with echo_service() as service:
        result = run(["share", str(service.port), "--host", host, "--known-hosts", str(known),
                      "--yes", "--json"], env)
    assert result.returncode == 5, result.stderr
    assert f"The stored password for {host} was rejected." in result.stderr
    assert f"safetunnel creds set {host}" in result.stderr
    assert result.stdout == ""
    assert password_attempts(caplog) == 1
    assert_secret_absent(wrong, sandbox.dirs, [result.stdout, result.stderr],
                         allow=[sandbox.keyring_file])


def test_wrong_stored_passphrase_exit_5_names_it(
        sandbox: Sandbox, key_sshd: SSHD, encrypted_key: Path) -> None:
    env = env_without_agent(sandbox)
    username = "passphrase:" + str(encrypted_key)
    sandbox.keyring_file.write_text(json.dumps({f"safetunnel\0{username}": "wrong phrase"}))
    host = f"{key_sshd.user}@127.0.0.1:{key_sshd.port}"
    with echo_service() as service:
        result = run(["share", str(service.port), "--host", host, "--identity",
                      str(encrypted_key), "--known-hosts", str(key_sshd.known_hosts), "--yes"],
                     env)
    assert result.returncode == 5, result.stderr
    assert f"The stored passphrase for {encrypted_key} was rejected." in result.stderr
    assert result.stderr.count("was rejected") == 1
    assert "safetunnel creds set" in result.stderr
    assert "Accepted publickey" not in key_sshd.log_text()


@pytest.mark.parametrize(("backend", "why"), [
    ("keyring.backends.fail.Keyring", "backend: fail.Keyring"),
    ("st_test_keyrings.PlaintextKeyring", "it stores secrets unencrypted"),
])
def test_unusable_keyring_is_not_used_and_said_once(
        sandbox: Sandbox, pw_gateway: tuple[Gateway, Path], backend: str, why: str) -> None:
    gateway, known = pw_gateway
    env = env_without_agent(sandbox)
    host = f"{USER}@127.0.0.1:{gateway.address[1]}"
    # The right password sits in the (plaintext) file: a refused backend must not be read.
    sandbox.keyring_file.write_text(json.dumps({f"safetunnel\0password:{host}": PASSWORD}))
    env["PYTHON_KEYRING_BACKEND"] = backend
    with echo_service() as service:
        result = run(["share", str(service.port), "--host", host, "--known-hosts", str(known),
                      "--yes"], env)
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("No OS keyring is available") == 1 and why in result.stderr
    assert f"safetunnel creds set {host}" in result.stderr
    assert_secret_absent(PASSWORD, sandbox.dirs, [result.stdout, result.stderr],
                         allow=[sandbox.keyring_file])


def test_unusable_keyring_falls_back_to_a_prompt_on_a_tty(
        sandbox: Sandbox, pw_gateway: tuple[Gateway, Path]) -> None:
    gateway, known = pw_gateway
    env = env_without_agent(sandbox)
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    host = f"{USER}@127.0.0.1:{gateway.address[1]}"
    with echo_service() as service:
        share = PtyRun(["share", str(service.port), "--host", host, "--known-hosts", str(known),
                        "--yes", "--json", "--ttl", "30s"], env)
        try:
            share.expect(b"Password for " + host.encode())
            share.send(PASSWORD)
            share.expect(b'"event":"started"')
        finally:
            run(["kill", "--all"], env)
            try:
                code = share.finish(10)
            except subprocess.TimeoutExpired:
                share.proc.kill()
                raise
    assert code == 0
    assert share.seen.count(b"No OS keyring is available (backend: fail.Keyring") == 1
    assert_secret_absent(PASSWORD, sandbox.dirs, [share.seen])
