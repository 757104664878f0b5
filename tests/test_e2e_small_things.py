"""The small things, each through the real console script: ``log --follow`` on an id that never
existed, ``log | head``, whole summaries and exit codes in ``--help``, usage-type errors exit 2,
shell completion of tunnel ids and hosts, the ``ssh -L`` line naming the host as the sharer did,
and the raw-TCP line without ``nc``."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import Sandbox
from e2e import E2E, SCRIPT, token_from, wait_until
from services import echo, http_keepalive
from sshd import SSHD

from safetunnel.registry.audit import AuditLog

pytestmark = pytest.mark.sshd


def test_log_follow_of_an_id_that_never_existed_is_an_error(e2e: E2E) -> None:
    out = e2e.run("log", "st-ffffff", "--follow", timeout=30)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("Error: no tunnel st-ffffff")
    assert out.stdout == ""


def test_log_into_a_closed_pipe_exits_0_quietly(e2e: E2E, sandbox: Sandbox) -> None:
    audit = AuditLog()
    for n in range(3000):  # far more than a pipe buffer holds, so the write meets a closed pipe
        audit.write("confirmed", "st-aaaaaa", local=f"127.0.0.1:{n}", ssh_host="built-in gateway")
    shell = f"{shlex.quote(SCRIPT)} log 2>{sandbox.home}/err | head -1; echo ${{PIPESTATUS[0]}}"
    out = subprocess.run(
        ["bash", "-c", shell], env=e2e.env, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.splitlines()[-1] == "0", out.stdout
    assert (sandbox.home / "err").read_text() == ""  # no traceback, no "Exception ignored"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_shows_whole_summaries(e2e: E2E) -> None:
    top = e2e.ok("--help").stdout
    assert "..." not in top.split("Commands:")[1]
    assert "List running tunnels (stale entries are cleaned up). CONNS is open/total." in _flat(top)
    hosts = e2e.ok("hosts", "--help").stdout
    assert "..." not in hosts.split("Commands:")[1]


def test_share_help_lists_exit_codes_and_examples(e2e: E2E) -> None:
    text = e2e.ok("share", "--help").stdout
    codes = text.split("Exit codes:")[1].split("Options:")[0]
    assert [line.split()[0] for line in codes.strip().splitlines()] == [
        *map(str, range(9)),
        "130",
    ]
    examples = text.split("Examples:")[1].split("Exit codes:")[0]
    assert len(re.findall(r"^\s+safetunnel share \d+", examples, re.M)) == 2


def test_usage_type_errors_exit_2(e2e: E2E, sandbox: Sandbox) -> None:
    service = e2e.service(http_keepalive)
    port = str(service.port)
    unknown = e2e.run("share", port, "--yes", "--host", "nosuchprofile")
    assert unknown.returncode == 2 and "unknown host 'nosuchprofile'" in unknown.stderr
    too_long = e2e.run("share", port, "--yes", "--ttl", "48h")
    assert too_long.returncode == 2 and "longer than max_ttl" in too_long.stderr
    no_keys = e2e.run("gateway")  # the sandbox's HOME has no ~/.ssh keys to authorize
    assert no_keys.returncode == 2 and "no public key found" in no_keys.stderr
    wide = e2e.run("gateway", "--listen", "0.0.0.0:0")
    assert wide.returncode == 2 and "needs --authorized-keys" in wide.stderr
    for out in (unknown, too_long, no_keys, wide):
        assert out.stderr.startswith("Error: ") and "Traceback" not in out.stderr


def _complete(e2e: E2E, words: str) -> list[str]:
    env = {
        **e2e.env,
        "_SAFETUNNEL_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    out = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if line]


def test_completion_offers_tunnel_ids_and_hosts(e2e: E2E, sandbox: Sandbox) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    (sandbox.config_dir / "config.toml").write_text('[hosts.lab]\nhost = "u@lab.example"\n')
    ssh = sandbox.home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "config").write_text("Host jumpy\n  HostName jumpy.example\nHost *.wild\n  User x\n")
    assert _complete(e2e, "safetunnel share 8000 --host ") == ["lab", "jumpy"]
    assert _complete(e2e, "safetunnel share 8000 --host j") == ["jumpy"]
    service = e2e.service(http_keepalive)
    event = e2e.share_bg(service.port, "2m", via=None)
    for command in ("kill", "status", "log", "extend"):
        assert _complete(e2e, f"safetunnel {command} st-") == [event["id"]], command
    e2e.cli_ok("kill", event["id"])
    assert _complete(e2e, "safetunnel kill st-") == []


def _alias_config(home: Path, server: SSHD) -> None:
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "config").write_text(
        f"Host st-lab\n  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key_path}\n"
    )


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_ssh_l_line_names_the_alias_the_sharer_gave(
    e2e: E2E, sandbox: Sandbox, shared_sshd: SSHD, engine: str
) -> None:
    _alias_config(sandbox.home, shared_sshd)
    service = e2e.service(http_keepalive)
    argv = ("--host", "st-lab", "--known-hosts", str(shared_sshd.known_hosts), "--engine", engine)
    proc = e2e.share(service.port, *argv, ttl="3s", as_json=False)
    assert proc.wait(30) == 0, proc.stderr
    e2e.tokens.append(token_from(proc.stderr))
    line = next(x for x in proc.stderr.splitlines() if "ssh -N" in x)
    assert re.fullmatch(r"\s+ssh -L\s+ssh -N -L (\d+):127\.0\.0\.1:\1 st-lab", line), line
    assert f"@{shared_sshd.host}" not in line  # neither the resolved address nor a user name


def test_raw_tcp_line_works_without_nc(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, "--protocol", "tcp", via=shared_sshd, ttl="30s", as_json=False)
    wait_until(lambda: "without nc" in proc.stderr, timeout=30, what="the started block")
    lines = proc.stderr.splitlines()
    raw = next(x for x in lines if x.lstrip().startswith("raw TCP")).split("raw TCP", 1)[1]
    relay = next(x for x in lines if "without nc" in x).split("in place of nc: ", 1)[1]
    e2e.tokens.append(token_from(raw))
    command = raw.strip().replace("| nc ", f"| {relay} ", 1)
    clean_path = "/usr/bin:/bin"  # whatever is on it, the relay needs only python3
    out = subprocess.run(
        ["bash", "-c", command],
        input="hello through the relay\n",
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": clean_path},
    )
    assert out.stdout == "hello through the relay\n", out.stderr
    proc.proc.terminate()
    assert proc.wait(15) == 0, proc.stderr
