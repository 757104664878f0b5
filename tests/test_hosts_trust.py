"""``safetunnel hosts trust`` against a real sshd, and a share that relies on the pin; on both
engines (config.toml's ``engine`` decides, as for a share), with the same rules and messages."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import Sandbox
from e2e import Pty, env_without_agent, known_hosts_line, run, share_started, stop
from engine_pin import ENGINES, pin_engine
from services import Service, echo
from sshd import SSHD

from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.keys import generate_ed25519


@pytest.fixture(autouse=True, params=ENGINES)
def engine(sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    return pin_engine(sandbox, request.param)


def own_known_hosts(sandbox: Sandbox) -> str:
    path = sandbox.config_dir / "known_hosts"
    return path.read_text() if path.exists() else ""


def test_trust_by_profile_with_fingerprint_then_share_uses_the_pin(
    sandbox: Sandbox, sshd: SSHD
) -> None:
    env = env_without_agent(sandbox)
    assert (
        run(
            [
                "hosts",
                "add",
                "lab",
                f"{sshd.user}@127.0.0.1:{sshd.port}",
                "--identity",
                str(sshd.client_key_path),
                "--no-check",
            ],
            env,
        ).returncode
        == 0
    )
    expected = fingerprint(sshd.host_key)
    result = run(["hosts", "trust", "lab", "--fingerprint", expected], env)
    assert result.returncode == 0, result.stderr
    assert f"ssh-ed25519 {expected}" in result.stdout and "Pinned" in result.stdout
    assert own_known_hosts(sandbox) == (
        f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key.get_base64()}\n"
    )
    again = run(["hosts", "trust", "lab"], env)  # no TTY, no --fingerprint: fine when pinned
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert own_known_hosts(sandbox).count("\n") == 1  # append-only, but no duplicate
    # No --known-hosts: the share must find the key in safetunnel's own file, non-interactively.
    with Service(echo) as service:
        started, proc = share_started([str(service.port), "--host", "lab"], env)
        assert started["ssh_host"] == f"{sshd.user}@127.0.0.1:{sshd.port}"
        assert stop(proc, env) == 0


def test_trust_mismatched_fingerprint_exits_4_and_pins_nothing(
    sandbox: Sandbox, sshd: SSHD
) -> None:
    wrong = fingerprint(generate_ed25519())
    result = run(["hosts", "trust", f"127.0.0.1:{sshd.port}", "--fingerprint", wrong], sandbox.env)
    assert result.returncode == 4
    assert fingerprint(sshd.host_key) in result.stdout and wrong in result.stderr
    assert own_known_hosts(sandbox) == ""


def test_trust_without_tty_or_fingerprint_exits_4_and_shows_it(
    sandbox: Sandbox, sshd: SSHD
) -> None:
    result = run(["hosts", "trust", f"127.0.0.1:{sshd.port}"], sandbox.env)
    assert result.returncode == 4
    expected = fingerprint(sshd.host_key)
    assert f"--fingerprint {expected}" in result.stderr
    assert own_known_hosts(sandbox) == ""
    # And share, without the pin, refuses the same way (exit 4, naming hosts trust).
    with Service(echo) as service:
        shared = run(
            [
                "share",
                str(service.port),
                "--host",
                f"127.0.0.1:{sshd.port}",
                "--yes",
                "--identity",
                str(sshd.client_key_path),
            ],
            sandbox.env,
        )
    assert shared.returncode == 4 and "safetunnel hosts trust" in shared.stderr


def test_trust_changed_key_exits_4_without_override(sandbox: Sandbox, sshd: SSHD) -> None:
    sandbox.config_dir.mkdir(mode=0o700, exist_ok=True)
    other = generate_ed25519()
    (sandbox.config_dir / "known_hosts").write_text(known_hosts_line("127.0.0.1", sshd.port, other))
    result = run(
        ["hosts", "trust", f"127.0.0.1:{sshd.port}", "--fingerprint", fingerprint(sshd.host_key)],
        sandbox.env,
    )
    assert result.returncode == 4 and "HOST KEY CHANGED" in result.stderr
    assert own_known_hosts(sandbox).count("\n") == 1


def test_trust_on_a_tty_needs_a_typed_yes(sandbox: Sandbox, sshd: SSHD) -> None:
    with Pty(["hosts", "trust", f"127.0.0.1:{sshd.port}"], sandbox.env) as declined:
        declined.expect("Type 'yes'")
        declined.send("y")  # not "yes": asked again, neither trusted nor the end
        declined.expect("Please type 'yes', 'no' or the fingerprint")
        declined.send("no")
        assert declined.wait() == 4 and own_known_hosts(sandbox) == ""
    with Pty(["hosts", "trust", f"127.0.0.1:{sshd.port}"], sandbox.env) as accepted:
        accepted.expect(fingerprint(sshd.host_key))
        accepted.expect("Type 'yes'")
        accepted.send("yes")
        assert accepted.wait() == 0 and b"Pinned" in accepted.output
    assert sshd.host_key.get_base64() in own_known_hosts(sandbox)


def test_trust_on_a_tty_accepts_the_pasted_fingerprint(sandbox: Sandbox, sshd: SSHD) -> None:
    other = "SHA256:" + "A" * 43
    with Pty(["hosts", "trust", f"127.0.0.1:{sshd.port}"], sandbox.env) as tty:
        tty.expect("Type 'yes'")
        tty.send(other)  # another key's fingerprint: asked again, not trusted
        tty.expect("Please type 'yes', 'no' or the fingerprint")
        assert own_known_hosts(sandbox) == ""
        tty.send(fingerprint(sshd.host_key))
        assert tty.wait() == 0 and b"Pinned" in tty.output, tty.text
    assert sshd.host_key.get_base64() in own_known_hosts(sandbox)


def test_changed_key_prints_the_repin_command_that_works(sandbox: Sandbox, sshd: SSHD) -> None:
    """A share refused for a changed key names the exact command; run after checking, it swaps
    the pinned key, and the share then goes through."""
    env = env_without_agent(sandbox)
    sandbox.config_dir.mkdir(mode=0o700, exist_ok=True)
    old = known_hosts_line("127.0.0.1", sshd.port, generate_ed25519())
    (sandbox.config_dir / "known_hosts").write_text(old)
    host = ["--host", f"{sshd.user}@127.0.0.1:{sshd.port}", "--identity", str(sshd.client_key_path)]
    with Service(echo) as service:
        refused = run(["share", str(service.port), "--yes", "--json", *host], env)
        assert refused.returncode == 4, refused.stderr
        new = fingerprint(sshd.host_key)
        found = re.search(r"`(safetunnel hosts trust [^`]+)`", refused.stderr)
        assert found and f"--fingerprint {new} --replace" in found.group(1), refused.stderr
        command = shlex.split(found.group(1))[1:]

        wrong = [*command[:-2], "SHA256:" + "A" * 43, "--replace"]
        mismatch = run(wrong, env)
        assert mismatch.returncode == 4 and own_known_hosts(sandbox) == old  # put back
        assert run([*command[:-3], "--replace"], env).returncode == 2  # needs --fingerprint

        replaced = run(command, env)
        assert replaced.returncode == 0, replaced.stderr
        assert own_known_hosts(sandbox) == (
            f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key.get_base64()}\n"
        )
        _started, proc = share_started([str(service.port), *host], env)
        assert stop(proc, env) == 0
