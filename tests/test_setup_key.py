"""``hosts setup-key`` against a real sshd: the line it prints allows safetunnel's remote forward
and nothing else. The first test is the evidence for the permitlisten forms setupkey.py emits."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import paramiko
import pytest
from conftest import Sandbox
from e2e import env_without_agent, public_line, run, share_started, stop
from secrets_check import assert_secret_absent
from services import Service, echo
from sshd import SSHD, SSHDFactory

from safetunnel.errors import ForwardRefused
from safetunnel.hosts import setupkey
from safetunnel.ssh.client import SSHSession, open_session
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.keys import generate_ed25519
from safetunnel.ssh.target import SSHTarget

FIXED_PORT = 23456  # below the ephemeral range, so port-0 binds of other tests never take it


def session(server: SSHD, key: paramiko.PKey, tmp: Path) -> SSHSession:
    target = SSHTarget("127.0.0.1", server.port, server.user)
    return open_session(
        target,
        hostkeys=HostKeyStore(server.known_hosts, tmp / "own"),
        on_unknown_key=None,
        auth=None,
        client_key=key,
    )


def forward_ok(server: SSHD, key: paramiko.PKey, tmp: Path, bind: str, port: int) -> bool:
    with session(server, key, tmp) as ssh:
        try:
            ssh.forward(bind, port, lambda *_: None, allow_wildcard=True)
        except ForwardRefused:
            return False
        return True


@pytest.mark.parametrize("allow_public", [False, True])
def test_emitted_permitlisten_forms_match_the_binds_safetunnel_requests(
    sshd_factory: SSHDFactory, tmp_path: Path, allow_public: bool
) -> None:
    key = generate_ed25519()
    line = setupkey.authorized_line(public_line(key, "t"), allow_public)
    server = sshd_factory(extra_authorized_lines=[line])
    assert forward_ok(server, key, tmp_path, "127.0.0.1", 0)  # the default share
    assert forward_ok(server, key, tmp_path, "127.0.0.1", FIXED_PORT)  # --remote-port N
    assert forward_ok(server, key, tmp_path, "0.0.0.0", 0) is allow_public  # --public
    # OpenSSH compares the host literally: the same loopback, spelled otherwise, is refused.
    assert not forward_ok(server, key, tmp_path, "localhost", 0)
    assert not forward_ok(server, key, tmp_path, "::1", 0)


def keyring(sandbox: Sandbox) -> dict[str, str]:
    raw: dict[str, str] = json.loads(sandbox.keyring_file.read_text())
    return {k.split("\0", 1)[1]: v for k, v in raw.items()}


def setup_lab(sandbox: Sandbox, server: SSHD, *extra: str) -> tuple[str, dict[str, str]]:
    """Profile `lab` on the old (unrestricted) key, host key pinned; then setup-key --install."""
    env = env_without_agent(sandbox)
    assert (
        run(
            [
                "hosts",
                "add",
                "lab",
                f"{server.user}@127.0.0.1:{server.port}",
                "--identity",
                str(server.client_key_path),
                "--no-check",
            ],
            env,
        ).returncode
        == 0
    )
    assert (
        run(
            ["hosts", "trust", "lab", "--fingerprint", fingerprint(server.host_key)], env
        ).returncode
        == 0
    )
    assert server.installed_keys is not None
    result = run(
        [
            "hosts",
            "setup-key",
            "lab",
            "--install",
            "--yes",
            "--remote-file",
            str(server.installed_keys),
            *extra,
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), env


def test_setup_key_installs_a_forward_only_key_that_share_uses(
    sandbox: Sandbox, sshd: SSHD, tmp_path: Path
) -> None:
    line, env = setup_lab(sandbox, sshd)
    key_path = sandbox.config_dir / "keys" / "lab_ed25519"
    assert line.startswith(
        'restrict,port-forwarding,permitlisten="127.0.0.1:*",'
        'permitopen="invalid.invalid:1",command="/bin/false" ssh-ed25519 '
    )
    assert line.endswith(" safetunnel-lab")
    assert sshd.installed_keys is not None and sshd.installed_keys.read_text() == line + "\n"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    passphrase = keyring(sandbox)[f"passphrase:{key_path}"]
    key = paramiko.Ed25519Key.from_private_key_file(str(key_path), passphrase)
    with pytest.raises(paramiko.PasswordRequiredException):
        paramiko.Ed25519Key.from_private_key_file(str(key_path))
    shown = run(["hosts", "show", "lab"], env).stdout
    assert f"identity:  {key_path}" in shown
    # The share now logs in with the new key only (the profile's identity) and gets its forward.
    with Service(echo) as service:
        _, proc = share_started([str(service.port), "--host", "lab"], env)
        assert stop(proc, env) == 0
        public = run(["share", str(service.port), "--host", "lab", "--yes", "--public"], env)
    assert public.returncode == 6, public.stderr  # 0.0.0.0 is not permitted for this key
    assert f"Accepted publickey for {sshd.user}" in sshd.log_text()
    assert fingerprint(key) in sshd.log_text()
    assert_refuses_everything_else(sshd, key, tmp_path)
    outputs = [line, proc.stdout, proc.stderr, public.stdout, public.stderr]
    assert_secret_absent(passphrase, sandbox.dirs, outputs, allow=[sandbox.keyring_file])


def assert_refuses_everything_else(server: SSHD, key: paramiko.PKey, tmp: Path) -> None:
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen(1)
        with session(server, key, tmp) as ssh:
            with pytest.raises(paramiko.ChannelException):  # no local forward (-L)
                ssh.transport.open_channel(
                    "direct-tcpip", target.getsockname(), ("127.0.0.1", 1), timeout=5
                )
            channel = ssh.transport.open_session(timeout=5)
            channel.exec_command("echo MARKER-RAN")
            output = channel.makefile("rb").read()
            assert channel.recv_exit_status() != 0 and b"MARKER" not in output
    assert "forced command" in server.log_text()
    assert not forward_ok(server, key, tmp, "localhost", FIXED_PORT)


def test_setup_key_again_reuses_the_key_and_installs_once(sandbox: Sandbox, sshd: SSHD) -> None:
    line, env = setup_lab(sandbox, sshd)
    key_path = sandbox.config_dir / "keys" / "lab_ed25519"
    before = key_path.read_bytes()
    assert sshd.installed_keys is not None
    # The profile now names the forward-only key, which cannot run the install: log in with
    # the old one.
    again = run(
        [
            "hosts",
            "setup-key",
            "lab",
            "--install",
            "--yes",
            "--remote-file",
            str(sshd.installed_keys),
            "--identity",
            str(sshd.client_key_path),
        ],
        env,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == line and "Reusing" in again.stderr
    assert "already in" in again.stderr
    assert key_path.read_bytes() == before
    assert sshd.installed_keys.read_text().count("safetunnel-lab") == 1


def test_setup_key_refuses_without_keyring_unless_unencrypted(sandbox: Sandbox) -> None:
    env = dict(sandbox.env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    assert run(["hosts", "add", "lab", "u@bastion.example", "--no-check"], env).returncode == 0
    refused = run(["hosts", "setup-key", "lab"], env)
    assert refused.returncode == 1 and "backend: fail.Keyring" in refused.stderr
    assert "--unencrypted" in refused.stderr
    key_path = sandbox.config_dir / "keys" / "lab_ed25519"
    assert not key_path.exists()
    plain = run(["hosts", "setup-key", "lab", "--unencrypted"], env)
    assert plain.returncode == 0 and "UNENCRYPTED" in plain.stderr
    paramiko.Ed25519Key.from_private_key_file(str(key_path))  # loads without a passphrase


def test_setup_key_install_needs_a_confirmation(sandbox: Sandbox, sshd: SSHD) -> None:
    assert (
        run(["hosts", "add", "lab", f"127.0.0.1:{sshd.port}", "--no-check"], sandbox.env).returncode
        == 0
    )
    result = run(["hosts", "setup-key", "lab", "--install"], sandbox.env)
    assert result.returncode == 3 and "--yes" in result.stderr
    assert sshd.installed_keys is not None and not sshd.installed_keys.exists()


def test_setup_key_needs_a_saved_profile(sandbox: Sandbox) -> None:
    result = run(["hosts", "setup-key", "nosuch"], sandbox.env)
    assert result.returncode == 2 and "no saved host profile 'nosuch'" in result.stderr
