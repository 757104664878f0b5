"""``share`` uses secrets stored with ``creds set``: end to end, through the real console script.

Every case runs on both SSH engines. Servers: the real sshd (key passphrases) and the built-in
gateway run in this process with password auth (passwords; creating a system user for sshd would
change the machine). The
gateway's paramiko transport logs every password attempt, which is how "one attempt, no loop"
is counted.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Sandbox
from e2e import (
    Pty,
    ShareProcess,
    env_without_agent,
    known_hosts_line,
    run,
    share_argv,
    share_started,
    stop,
)
from engine_pin import ENGINES, pin_engine, sshd_accepting
from secrets_check import assert_secret_absent
from services import Service, echo
from sshd import SSHD, SSHDFactory
from test_credentials import make_key

from safetunnel.ssh.gateway import Gateway

PASSPHRASE = 'stored passphrase ✓ "q"'
PASSWORD = "gateway pw & spaces ✓"
USER = "tester"
ENGINE = "ST_TEST_ENGINE"  # which engine the case asked for, so a started share can prove it


@dataclass
class Target:
    """Where a share goes: ``host`` (user@127.0.0.1:port) and the flags that reach it."""

    host: str
    args: list[str]


@pytest.fixture(params=ENGINES)
def env(sandbox: Sandbox, request: pytest.FixtureRequest) -> dict[str, str]:
    """Each case on both engines: OpenSSH reaches the keyring through its askpass helper,
    paramiko in this process; the messages and exit codes must be the same."""
    pin_engine(sandbox, request.param)
    return {**env_without_agent(sandbox), ENGINE: request.param}


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    return make_key(tmp_path / "id_enc", PASSPHRASE)


@pytest.fixture
def key_sshd(sshd_factory: SSHDFactory, encrypted_key: Path) -> SSHD:
    return sshd_accepting(sshd_factory, encrypted_key, PASSPHRASE)


@pytest.fixture
def key_target(key_sshd: SSHD, encrypted_key: Path) -> Target:
    """The real sshd, logged into with the passphrase-protected key."""
    host = f"{key_sshd.user}@127.0.0.1:{key_sshd.port}"
    return Target(
        host,
        [
            "--host",
            host,
            "--identity",
            str(encrypted_key),
            "--known-hosts",
            str(key_sshd.known_hosts),
        ],
    )


@pytest.fixture
def pw_target(tmp_path: Path) -> Iterator[Target]:
    """The built-in gateway with password auth, its host key pinned."""
    with Gateway(passwords={USER: PASSWORD}) as gateway:
        gateway.start()
        known = tmp_path / "gw_known_hosts"
        known.write_text(known_hosts_line("127.0.0.1", gateway.address[1], gateway.host_key))
        host = f"{USER}@127.0.0.1:{gateway.address[1]}"
        yield Target(host, ["--host", host, "--known-hosts", str(known)])


def password_attempts(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        1
        for r in caplog.records
        if r.getMessage().startswith("Auth rejected (password)")
        or r.getMessage().startswith("Auth granted (password)")
    )


def assert_not_leaked(secret: str, sandbox: Sandbox, outputs: list[Any]) -> None:
    """Nowhere on disk (except the test keyring's own file) and in none of ``outputs``."""
    assert_secret_absent(secret, sandbox.dirs, outputs, allow=[sandbox.keyring_file])


def store_then_share(
    env: dict[str, str],
    target: Target,
    secret: str,
    *creds_args: str,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], ShareProcess]:
    """``creds set HOST …`` with ``secret`` on stdin, then a share that must start and stop."""
    stored = run(["creds", "set", target.host, *creds_args], env, input_text=secret + "\n")
    assert stored.returncode == 0, stored.stderr
    with Service(echo) as service:
        started, proc = share_started([str(service.port), *target.args], env)
        assert started["engine"] == env[ENGINE]
        assert stop(proc, env) == 0
    return stored, started, proc


def share_once(
    env: dict[str, str], target: Target, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``share PORT --yes … HOST-FLAGS`` to completion (the refusals), with an echo service."""
    with Service(echo) as service:
        return run(share_argv(service.port, *target.args, *extra, ttl=None, as_json=False), env)


def test_stored_passphrase_unlocks_key_for_non_interactive_share(
    sandbox: Sandbox, env: dict[str, str], key_sshd: SSHD, key_target: Target, encrypted_key: Path
) -> None:
    stored, _, proc = store_then_share(
        env, key_target, PASSPHRASE, "--passphrase-for", str(encrypted_key)
    )
    assert "Accepted publickey" in key_sshd.log_text()
    outputs = [stored.stdout, stored.stderr, proc.stdout, proc.stderr, key_sshd.log_text()]
    assert_not_leaked(PASSPHRASE, sandbox, outputs)


def test_stored_password_for_gateway_share(
    sandbox: Sandbox, env: dict[str, str], pw_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paramiko.transport")
    stored, started, proc = store_then_share(env, pw_target, PASSWORD)
    assert started["ssh_host"] == pw_target.host
    assert password_attempts(caplog) == 1
    outputs = [stored.stdout, stored.stderr, proc.stdout, proc.stderr, caplog.text]
    assert_not_leaked(PASSWORD, sandbox, outputs)


def test_wrong_stored_password_exit_5_after_one_attempt(
    sandbox: Sandbox, env: dict[str, str], pw_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paramiko.transport")
    host = pw_target.host
    wrong = "not the password"
    assert run(["creds", "set", host], env, input_text=wrong + "\n").returncode == 0
    result = share_once(env, pw_target, "--json")
    assert result.returncode == 5, result.stderr
    assert f"The stored password for {host} was rejected." in result.stderr
    assert f"safetunnel creds set {host}" in result.stderr
    assert result.stdout == ""
    assert password_attempts(caplog) == 1
    assert_not_leaked(wrong, sandbox, [result.stdout, result.stderr])


def test_wrong_stored_passphrase_exit_5_names_it(
    sandbox: Sandbox, env: dict[str, str], key_sshd: SSHD, key_target: Target, encrypted_key: Path
) -> None:
    username = "passphrase:" + str(encrypted_key)
    sandbox.keyring_file.write_text(json.dumps({f"safetunnel\0{username}": "wrong phrase"}))
    result = share_once(env, key_target)
    assert result.returncode == 5, result.stderr
    assert f"The stored passphrase for {encrypted_key} was rejected." in result.stderr
    assert result.stderr.count("was rejected") == 1
    assert "safetunnel creds set" in result.stderr
    assert "Accepted publickey" not in key_sshd.log_text()


def test_an_encrypted_key_with_nothing_stored_is_named_as_such(
    env: dict[str, str], key_target: Target, encrypted_key: Path
) -> None:
    result = share_once(env, key_target)  # the keyring works but holds nothing; no terminal
    assert result.returncode == 5, result.stderr
    assert f"{encrypted_key} (encrypted, no passphrase available)" in result.stderr
    assert "--passphrase-for" in result.stderr or "safetunnel creds set" in result.stderr


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        ("keyring.backends.fail.Keyring", "backend: fail.Keyring"),
        ("st_test_keyrings.PlaintextKeyring", "it stores secrets unencrypted"),
    ],
)
def test_unusable_keyring_is_not_used_and_said_once(
    sandbox: Sandbox,
    env: dict[str, str],
    pw_target: Target,
    backend: str,
    why: str,
) -> None:
    host = pw_target.host
    # The right password sits in the (plaintext) file: a refused backend must not be read.
    sandbox.keyring_file.write_text(json.dumps({f"safetunnel\0password:{host}": PASSWORD}))
    env["PYTHON_KEYRING_BACKEND"] = backend
    result = share_once(env, pw_target)
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("No OS keyring is available") == 1 and why in result.stderr
    assert f"safetunnel creds set {host}" in result.stderr
    assert_not_leaked(PASSWORD, sandbox, [result.stdout, result.stderr])


def test_unusable_keyring_falls_back_to_a_prompt_on_a_tty(
    sandbox: Sandbox, env: dict[str, str], pw_target: Target
) -> None:
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    with (
        Service(echo) as service,
        Pty(share_argv(service.port, *pw_target.args, ttl="30s"), env) as share,
    ):
        try:
            share.expect("Password for " + pw_target.host)
            share.send(PASSWORD)
            share.expect('"event":"started"')
        finally:
            run(["kill", "--all"], env)
            code = share.wait(10)  # TimeoutExpired: the pty's close() kills it
    assert code == 0
    assert share.output.count(b"No OS keyring is available (backend: fail.Keyring") == 1
    assert_secret_absent(PASSWORD, sandbox.dirs, [share.output])
