"""A new user's first runs, end to end through the real console script (a pty where a prompt
is involved), on both SSH engines: the built-in share's next step, ``hosts add`` that checks
the login and pins the key, prompts that forgive a typo, and ``--background`` that keeps what
was typed."""

from __future__ import annotations

import signal
import termios
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Sandbox
from e2e import E2E, Pty, env_without_agent, run, sshd_args, token_from, wait_for
from engine_pin import ENGINES, pin_engine, sshd_accepting
from secrets_check import assert_secret_absent
from services import Service, echo
from sshd import SSHD, SSHDFactory
from test_credentials import make_key

from safetunnel.ssh.hostkeys import fingerprint

pytestmark = pytest.mark.sshd

PASSPHRASE = "first-run phrase ✓"


@pytest.fixture(params=ENGINES)
def engine(sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    return pin_engine(sandbox, request.param)


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    return make_key(tmp_path / "id_enc", PASSPHRASE)


@pytest.fixture
def key_sshd(sshd_factory: SSHDFactory, encrypted_key: Path) -> SSHD:
    return sshd_accepting(sshd_factory, encrypted_key, PASSPHRASE)


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    started: list[Pty] = []
    yield started
    for tty in started:
        tty.close()


def own_known_hosts(sandbox: Sandbox) -> str:
    path = sandbox.config_dir / "known_hosts"
    return path.read_text() if path.exists() else ""


def test_builtin_share_says_in_one_line_how_to_share_with_others(e2e: E2E) -> None:
    service = e2e.service()
    out = e2e.run("share", str(service.port), "--ttl", "1s", "--yes")
    assert out.returncode == 0, out.stderr
    e2e.tokens.append(token_from(out.stderr))
    lines = [line for line in out.stderr.splitlines() if "safetunnel hosts add" in line]
    assert len(lines) == 1 and "NAME user@host --default" in lines[0], out.stderr


def test_hosts_add_checks_login_pins_pasted_fingerprint_and_becomes_default(
    e2e: E2E, engine: str, sshd: SSHD, ptys: list[Pty]
) -> None:
    env = env_without_agent(e2e.sandbox)
    host = f"{sshd.user}@127.0.0.1:{sshd.port}"
    args = ["hosts", "add", "lab", host, "--identity", str(sshd.client_key_path), "--default"]
    tty = Pty(args, env)
    ptys.append(tty)
    tty.expect(fingerprint(sshd.host_key))
    tty.expect("Type 'yes' to trust")
    tty.send("y")  # a typo: asked again, not the end
    tty.expect("Please type 'yes', 'no' or the fingerprint")
    tty.send(fingerprint(sshd.host_key))
    assert tty.wait() == 0, tty.text
    assert "Logged in to" in tty.text and "lab is now the default host" in tty.text
    assert "safetunnel hosts setup-key lab --install" in tty.text
    assert sshd.host_key.get_base64() in own_known_hosts(e2e.sandbox)
    config = tomllib.loads((e2e.sandbox.config_dir / "config.toml").read_text())
    assert config["default_host"] == "lab"
    # The first real share: no --host, no terminal, nothing to ask.
    service = e2e.service(echo)
    proc = e2e.share(service.port, ttl="2s", extra_env={"SSH_AUTH_SOCK": ""})
    event = e2e.started(proc)
    assert event["ssh_host"] == host and event["engine"] == engine
    assert proc.wait() == 0


def test_hosts_add_refuses_what_does_not_resolve_and_default_changes(e2e: E2E) -> None:
    refused = e2e.cli("hosts", "add", "x", "nosuchalias")
    assert refused.returncode == 2 and "neither an ~/.ssh/config alias" in refused.stderr
    assert "--no-check" in refused.stderr
    assert e2e.cli("hosts", "list", "--json").stdout.count('"name"') == 0
    e2e.cli_ok("hosts", "add", "x", "nosuchalias", "--no-check")
    e2e.cli_ok("hosts", "add", "y", "u@other.invalid", "--no-check", "--default")
    changed = e2e.cli_ok("hosts", "default", "x")
    assert "x is now the default host" in changed.stdout
    assert "* x" in e2e.cli_ok("hosts", "list").stdout
    assert e2e.cli("hosts", "default", "nope").returncode == 2


def test_hosts_add_unknown_key_without_terminal_saves_nothing(
    e2e: E2E, engine: str, sshd: SSHD
) -> None:
    host = f"{sshd.user}@127.0.0.1:{sshd.port}"
    out = e2e.run("hosts", "add", "lab", host, "--identity", str(sshd.client_key_path))
    assert out.returncode == 4, out.stderr
    assert f"--fingerprint {fingerprint(sshd.host_key)}" in out.stderr
    assert "host lab not saved" in out.stderr and "--no-check" in out.stderr
    assert "lab" not in e2e.cli_ok("hosts", "list").stdout


def test_three_tries_for_a_passphrase_one_colon_wrong_said_wrong(
    sandbox: Sandbox, engine: str, key_sshd: SSHD, encrypted_key: Path, ptys: list[Pty]
) -> None:
    env = env_without_agent(sandbox)
    args = sshd_args(key_sshd, identity=encrypted_key)
    with Service(echo) as service:
        failing = Pty(["share", str(service.port), "--ttl", "5s", "--yes", *args], env)
        ptys.append(failing)
        for answer in ("wrong 1", "wrong 2", "wrong 3"):
            failing.expect(f"Passphrase for {encrypted_key}: ")
            failing.send(answer)
        assert failing.wait() == 5, failing.text
        assert failing.text.count(f"Passphrase for {encrypted_key}") == 3
        assert ": :" not in failing.text
        assert f"Wrong passphrase for {encrypted_key}" in failing.text
        assert "no passphrase available" not in failing.text

        share = Pty(["share", str(service.port), "--ttl", "2s", "--yes", "--json", *args], env)
        ptys.append(share)
        share.expect(f"Passphrase for {encrypted_key}: ")
        share.send("not it")
        share.expect(f"Passphrase for {encrypted_key}: ")
        share.send(PASSPHRASE)
        share.expect('"event":"started"')
        token = token_from(share.text)
        assert share.wait() == 0, share.text  # the TTL
    assert "Accepted publickey" in key_sshd.log_text()
    outputs = [share.output.replace(token.encode(), b""), failing.output]
    assert_secret_absent(PASSPHRASE, sandbox.dirs, outputs, allow=[sandbox.keyring_file])


def running_with(path: Path) -> list[list[str]]:
    """Command lines that name ``path`` (ssh's, with its key; askpass's, with its prompt)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(path) in part for part in cmdline):
            found.append(cmdline)
    return found


def test_interrupted_at_the_passphrase_prompt_it_leaves_no_helper_and_the_echo_on(
    sandbox: Sandbox, engine: str, key_sshd: SSHD, encrypted_key: Path, ptys: list[Pty]
) -> None:
    args = ["share", "--ttl", "5s", "--yes", *sshd_args(key_sshd, identity=encrypted_key)]
    with Service(echo) as service:
        tty = Pty([*args, str(service.port)], env_without_agent(sandbox))
        ptys.append(tty)
        tty.expect(f"Passphrase for {encrypted_key}: ")
        tty.proc.send_signal(signal.SIGINT)  # as Ctrl-C would (the pty is no controlling one)
        assert tty.wait() == 130, tty.text
    assert wait_for(lambda: not running_with(encrypted_key)), running_with(encrypted_key)
    assert termios.tcgetattr(tty.master)[3] & termios.ECHO, "the terminal was left without echo"


def test_background_keeps_the_typed_passphrase(
    e2e: E2E, engine: str, key_sshd: SSHD, encrypted_key: Path, ptys: list[Pty]
) -> None:
    env = env_without_agent(e2e.sandbox)
    service = e2e.service(echo)
    args = ["share", str(service.port), "--ttl", "1m", "--yes", "--background", "--json"]
    tty = Pty([*args, *sshd_args(key_sshd, identity=encrypted_key)], env)
    ptys.append(tty)
    tty.expect(f"Passphrase for {encrypted_key}: ")
    tty.send(PASSPHRASE)
    tty.expect('"event":"started"')
    assert tty.wait() == 0, tty.text
    e2e.tokens.append(token_from(tty.text))
    [record] = e2e.list_json()
    assert record["ssh_host"] == f"{key_sshd.user}@127.0.0.1:{key_sshd.port}"
    assert key_sshd.log_text().count("Accepted publickey") == 2  # foreground, then the child
    assert run(["kill", "--all"], env).returncode == 0
    assert_secret_absent(
        PASSPHRASE, e2e.sandbox.dirs, [tty.output], allow=[e2e.sandbox.keyring_file]
    )


def test_missing_profile_key_is_a_usage_error_naming_it(e2e: E2E, tmp_path: Path) -> None:
    key = make_key(tmp_path / "id_gone", None)
    e2e.cli_ok("hosts", "add", "lab", "u@lab.invalid", "--identity", str(key), "--no-check")
    key.unlink()
    service = e2e.service(echo)
    out = e2e.run("share", str(service.port), "--host", "lab", "--yes", "--json")
    assert out.returncode == 2 and str(key) in out.stderr, out.stderr
    given = e2e.run("share", str(service.port), "--identity", str(key), "--yes")
    assert given.returncode == 2 and "id_gone" in given.stderr
