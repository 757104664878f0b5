from __future__ import annotations

import json
import subprocess
from pathlib import Path

import e2e
import pytest
from click.testing import CliRunner
from conftest import Sandbox
from e2e import Pty
from secrets_check import assert_secret_absent
from test_credentials import PASSPHRASE, make_key

from safetunnel.cli import cli

PASSWORD = 'pw with spaces & "quotes" ✓'


def run(sandbox: Sandbox, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real console script, stdin a pipe (never a TTY), env from the sandbox."""
    return e2e.run(list(args), sandbox.env, input_text=stdin)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def keyring_data(sandbox: Sandbox) -> dict[str, str]:
    if not sandbox.keyring_file.exists():
        return {}
    raw: dict[str, str] = json.loads(sandbox.keyring_file.read_text())
    return {key.split("\0", 1)[1]: value for key, value in raw.items()}


# --- hosts (CliRunner) ---


def test_hosts_add_list_show_remove(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path / "id_bastion", None)
    code, out = invoke(
        "hosts",
        "add",
        "bastion",
        "alice@bastion.example:2222",
        "--identity",
        str(key),
        "--default",
        "--no-check",
    )
    assert code == 0 and "default host" in out
    assert invoke("hosts", "add", "db", "db.example", "--no-check")[0] == 0
    code, out = invoke("hosts", "list")
    assert "* bastion  alice@bastion.example:2222" in out and "  db " in out
    data = json.loads(invoke("hosts", "list", "--json")[1])
    assert data["default_host"] == "bastion" and data["default_source"] == "config"
    assert [h["name"] for h in data["hosts"]] == ["bastion", "db"]
    assert data["hosts"][0]["identity"] == str(key)
    code, out = invoke("hosts", "show", "bastion")
    assert "connects:  alice@bastion.example:2222" in out and str(key) in out
    code, out = invoke("hosts", "remove", "bastion")
    assert code == 0 and "was the default" in out
    assert json.loads(invoke("hosts", "list", "--json")[1])["default_host"] is None


def test_hosts_errors_through_the_real_script(sandbox: Sandbox) -> None:
    assert run(sandbox, "hosts", "add", "a", "u@a.example", "--no-check").returncode == 0
    for args, message, code in [
        # An unknown profile is a usage error (2), as is every unknown host.
        (("hosts", "show", "nope"), "no saved host profile 'nope' (saved: a)", 2),
        (("hosts", "remove", "nope"), "(saved: a)", 2),
        (("hosts", "add", "a", "u@b.example", "--no-check"), "already exists", 1),
        (("hosts", "add", "b", "u@@b", "--no-check"), "'u@@b'", 1),
    ]:
        result = run(sandbox, *args)
        assert result.returncode == code, args
        assert message in result.stderr and result.stderr.startswith("Error: ")


def test_hosts_list_shows_env_default(sandbox: Sandbox) -> None:
    sandbox.env["SAFETUNNEL_HOST"] = "x@env.example:2200"
    result = run(sandbox, "hosts", "list")
    assert "Default host: x@env.example:2200 (from SAFETUNNEL_HOST)." in result.stdout


def test_config_file_is_private(sandbox: Sandbox) -> None:
    invoke("hosts", "add", "a", "u@a.example", "--no-check")
    assert (sandbox.config_dir / "config.toml").stat().st_mode & 0o777 == 0o600
    assert sandbox.config_dir.stat().st_mode & 0o777 == 0o700


# --- creds (real console script; the file keyring is shared across processes) ---


def test_creds_set_status_delete_password(sandbox: Sandbox) -> None:
    run(sandbox, "hosts", "add", "bastion", "alice@bastion.example:2222", "--no-check")
    stored = run(sandbox, "creds", "set", "bastion", stdin=PASSWORD + "\nignored second line\n")
    assert stored.returncode == 0, stored.stderr
    assert keyring_data(sandbox) == {"password:alice@bastion.example:2222": PASSWORD}
    status = run(sandbox, "creds", "status", "bastion")
    assert "keyring: st_test_keyrings.FileKeyring" in status.stdout
    assert "password for alice@bastion.example:2222: stored" in status.stdout
    deleted = run(sandbox, "creds", "delete", "alice@bastion.example:2222")
    assert "Deleted" in deleted.stdout and keyring_data(sandbox) == {}
    outputs = [p.stdout for p in (stored, status, deleted)] + [p.stderr for p in (stored, status)]
    assert_secret_absent(PASSWORD, sandbox.dirs, outputs)


def test_creds_host_through_ssh_config_alias(sandbox: Sandbox) -> None:
    ssh = sandbox.home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "config").write_text(
        "Host jump\n  HostName jump.example.org\n  User carol\n  Port 2022\n"
    )
    assert run(sandbox, "creds", "set", "jump", stdin="pw\n").returncode == 0
    assert list(keyring_data(sandbox)) == ["password:carol@jump.example.org:2022"]
    unknown = run(sandbox, "creds", "set", "jmup", stdin="pw\n")
    assert unknown.returncode == 2 and "alias (jump)" in unknown.stderr  # unknown host: usage


def test_creds_passphrase_verified_before_storing(sandbox: Sandbox) -> None:
    (sandbox.home / ".ssh").mkdir(mode=0o700)
    key = make_key(sandbox.home / ".ssh" / "id_ed25519", PASSPHRASE)
    wrong = run(
        sandbox, "creds", "set", "u@h.example", "--passphrase-for", str(key), stdin="not it\n"
    )
    assert wrong.returncode == 1 and "does not unlock" in wrong.stderr
    assert keyring_data(sandbox) == {}
    right = run(
        sandbox,
        "creds",
        "set",
        "u@h.example",
        "--passphrase-for",
        str(key),
        stdin=PASSPHRASE + "\n",
    )
    assert right.returncode == 0, right.stderr
    assert keyring_data(sandbox) == {f"passphrase:{key}": PASSPHRASE}
    status = run(sandbox, "creds", "status", "u@h.example")
    assert f"passphrase for {key}: stored" in status.stdout  # a default key is listed
    plain = make_key(sandbox.home / "plain", None)
    refused = run(
        sandbox, "creds", "set", "u@h.example", "--passphrase-for", str(plain), stdin="x\n"
    )
    assert refused.returncode == 1 and "not encrypted" in refused.stderr
    outputs = [p.stdout + p.stderr for p in (wrong, right, status, refused)]
    assert_secret_absent(PASSPHRASE, sandbox.dirs, outputs)


@pytest.mark.parametrize(
    ("backend", "name"),
    [
        ("keyring.backends.fail.Keyring", "backend: fail.Keyring"),
        ("st_test_keyrings.PlaintextKeyring", "backend: st_test_keyrings.PlaintextKeyring"),
    ],
)
def test_creds_set_refuses_non_keyrings(sandbox: Sandbox, backend: str, name: str) -> None:
    sandbox.env["PYTHON_KEYRING_BACKEND"] = backend
    result = run(sandbox, "creds", "set", "u@h.example", stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert name in result.stderr and "install a keyring backend" in result.stderr
    assert not sandbox.keyring_file.exists()
    status = run(sandbox, "creds", "status", "u@h.example")
    assert status.returncode == 0 and "(not usable)" in status.stdout
    assert_secret_absent(PASSWORD, sandbox.dirs, [result.stdout, result.stderr])


def test_creds_hanging_keyring_times_out(sandbox: Sandbox) -> None:
    sandbox.env["PYTHON_KEYRING_BACKEND"] = "st_test_keyrings.HangingKeyring"
    sandbox.env["SAFETUNNEL_KEYRING_TIMEOUT"] = "1"
    # A backend that never answers would hang `creds set` for good; getting the message back
    # at all is the proof that safetunnel stopped waiting.
    result = run(sandbox, "creds", "set", "u@h.example", stdin="pw\n")
    assert result.returncode == 1
    assert "keyring did not answer within 1 s" in result.stderr


def test_creds_empty_stdin_stores_nothing(sandbox: Sandbox) -> None:
    result = run(sandbox, "creds", "set", "u@h.example", stdin="")
    assert result.returncode == 1 and "no secret given" in result.stderr
    assert keyring_data(sandbox) == {}


def test_creds_set_hidden_prompt_on_a_tty(sandbox: Sandbox) -> None:
    """On a TTY the secret is asked twice without echo; the terminal never shows it."""
    with Pty(["creds", "set", "u@tty.example"], sandbox.env) as tty:
        for _ in range(2):  # password, then its confirmation
            tty.expect(": ")
            tty.send(PASSWORD)
        assert tty.wait() == 0
    seen = tty.output
    assert b"Stored the SSH password for u@tty.example:22" in seen
    assert keyring_data(sandbox) == {"password:u@tty.example:22": PASSWORD}
    assert_secret_absent(PASSWORD, sandbox.dirs, [seen])
