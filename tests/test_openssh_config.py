"""The user's ssh_config reaches the host, but opens nothing beyond it: forwards, agent forwarding
and a LocalCommand declared there take no effect with safetunnel's options (real ssh, real sshd).
The same config without them does open them, so each check can fail."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from conftest import Sandbox
from sshd import SSHD

from safetunnel.ssh.openssh import config
from safetunnel.ssh.target import SSHTarget

READY = "Entering interactive session"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _run_until_ready(args: list[str], started: list[subprocess.Popen[str]]) -> str:
    """Run ssh -v until its session loop starts (forwards and LocalCommand are done by then)."""
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    started.append(process)
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if READY in line:
            break
    return "".join(seen)


def test_config_forwards_agent_and_local_command_take_no_effect(
    sandbox: Sandbox, sshd: SSHD, tmp_path: Path
) -> None:
    local, dynamic, remote = _free_port(), _free_port(), _free_port()
    marker = tmp_path / "local-command-ran"
    user_config = sandbox.home / ".ssh" / "config"
    user_config.parent.mkdir(mode=0o700)
    user_config.write_text(
        f"Host fx\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
        f"  IdentityFile {sshd.client_key_path}\n"
        f"  LocalForward 127.0.0.1:{local} 127.0.0.1:{sshd.port}\n"
        f"  DynamicForward 127.0.0.1:{dynamic}\n"
        f"  RemoteForward 127.0.0.1:{remote} 127.0.0.1:{sshd.port}\n"
        "  ForwardAgent yes\n  PermitLocalCommand yes\n"
        f"  LocalCommand touch {marker}\n  StrictHostKeyChecking no\n  RequestTTY force\n"
    )
    target = SSHTarget("127.0.0.1", sshd.port, sshd.user, label="fx", destination="fx")
    options = config.ssh_options(target, known_hosts=[sshd.known_hosts], keepalive=5)
    ours = ["ssh", "-v", *options, "-o", "ControlPath=none", *config.destination(target)]
    plain = ["ssh", "-v", "-F", str(user_config), "-o", f"UserKnownHostsFile={sshd.known_hosts}"]
    processes: list[subprocess.Popen[str]] = []
    try:
        text = _run_until_ready(ours, processes)
        assert READY in text
        assert "forwarded to" not in text and "agent forwarding" not in text.lower()
        assert not marker.exists()
        assert not any(_listening(port) for port in (local, dynamic, remote))
        control = _run_until_ready([*plain, "-N", "fx"], processes)  # the config opens them
        assert "forwarded to" in control and marker.exists()
        assert _listening(local) and _listening(dynamic)
    finally:
        for process in processes:
            process.kill()
            process.communicate()


def test_wrapper_includes_user_then_system_config_and_is_private(sandbox: Sandbox) -> None:
    target = SSHTarget("h.example", label="h.example", destination="ssh://h.example")
    options = config.ssh_options(target, known_hosts=[], keepalive=7)
    wrapper = Path(options[options.index("-F") + 1])
    assert wrapper.stat().st_mode & 0o777 == 0o600
    text = wrapper.read_text()
    user = text.index(f'Include "{sandbox.home}/.ssh/config"')
    assert (
        text.index("StrictHostKeyChecking yes") < user < text.index('Include "/etc/ssh/ssh_config"')
    )
    assert "accept-new" not in " ".join(options) and "StrictHostKeyChecking=yes" in options
    assert "ServerAliveInterval=7" in options and "ServerAliveCountMax=3" in options


def test_resolve_uses_openssh_own_view_of_the_config(sandbox: Sandbox) -> None:
    ssh_dir = sandbox.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "extra").write_text("Host inc\n  HostName 10.2.3.4\n  User ivy\n  Port 2201\n")
    (ssh_dir / "config").write_text(f"Include {ssh_dir / 'extra'}\nHost inc\n  ProxyJump j\n")
    target = SSHTarget("inc", label="inc", destination="inc")
    options = config.ssh_options(target, known_hosts=[], keepalive=5)
    resolved = config.resolve(target, options)
    assert (resolved.hostname, resolved.user, resolved.port) == ("10.2.3.4", "ivy", 2201)
    assert resolved.proxy == "ProxyJump"
