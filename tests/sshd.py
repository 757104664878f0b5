"""A real OpenSSH sshd for tests.

``start_sshd(workdir, ...)`` starts ``/usr/sbin/sshd -D -f <config> -E <log>`` on 127.0.0.1 with an
Ed25519 host key and a client key pair (copied from ``key_dir`` when given, so a test session
generates them once; fresh otherwise), waits until the port accepts, and returns an :class:`SSHD`
whose ``stop()`` is idempotent. The pytest fixtures in ``conftest.py`` wrap this and always stop
the daemon at teardown.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest

SSHD_BIN = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"

# Outside Linux's ephemeral range (32768-60999), so an outgoing connection cannot take the port
# between our probe and sshd's bind; a collision with another engineer's test is retried.
_PORT_RANGE = (20000, 32000)


def require_sshd() -> None:
    """Skip when sshd is missing, unless SAFETUNNEL_REQUIRE_SSHD=1 makes that a failure."""
    if SSHD_BIN.exists():
        return
    if os.environ.get("SAFETUNNEL_REQUIRE_SSHD") == "1":
        pytest.fail(f"{SSHD_BIN} is missing and SAFETUNNEL_REQUIRE_SSHD=1")
    pytest.skip(f"{SSHD_BIN} is not installed")


@dataclass
class SSHD:
    """A running sshd. ``known_hosts`` holds its host key under ``[127.0.0.1]:port``."""

    host: str
    port: int
    user: str
    client_key_path: Path
    client_key: paramiko.PKey
    host_key: paramiko.PKey
    known_hosts: Path
    log_path: Path
    config_path: Path
    process: subprocess.Popen[bytes]
    # A second AuthorizedKeysFile that starts out absent: `hosts setup-key --install
    # --remote-file` appends here, because %h/.ssh/authorized_keys would be the real root's.
    installed_keys: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop sshd and every per-connection child (they may be SIGSTOPped by a test)."""
        if self._stopped:
            return
        self._stopped = True
        _kill_tree(self.process)


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGCONT)
                child.kill()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


KEY_FILES = ("host_ed25519", "client_ed25519", "client_ed25519.pub")


def make_keys(key_dir: Path) -> Path:
    """Generate the host key and the client key pair into ``key_dir`` (for ``start_sshd``)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    _keygen(key_dir / "host_ed25519", "safetunnel-test-host")
    _keygen(key_dir / "client_ed25519", "safetunnel-test-client")
    return key_dir


def _install_keys(workdir: Path, key_dir: Path | None) -> None:
    if key_dir is None:
        make_keys(workdir)
        return
    for name in KEY_FILES:
        shutil.copyfile(key_dir / name, workdir / name)
        (workdir / name).chmod(0o600)


def _free_port() -> int:
    for _ in range(50):
        port = random.randint(*_PORT_RANGE)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found for sshd")


def _gateway_ports(value: bool | str) -> str:
    """True is ``yes``, False ``no``; a string (``clientspecified``) is used as it is."""
    if isinstance(value, str):
        return value
    return "yes" if value else "no"


def _config(
    workdir: Path, port: int, gateway_ports: bool | str, log_level: str, extra: Sequence[str] = ()
) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {workdir / 'host_ed25519'}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'} {workdir / 'installed_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AllowTcpForwarding yes",
            f"GatewayPorts {_gateway_ports(gateway_ports)}",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "PrintMotd no",
            f"LogLevel {log_level}",
            *extra,
            "",
        ]
    )


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # e.g. the port was taken after all
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def _daemon_env() -> dict[str, str]:
    """This process's environment without safetunnel's variables: the e2e harness finds a test's
    leftover processes by its state dir in their environment, and sshd is not one of them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SAFETUNNEL_")}


def start_sshd(
    workdir: Path,
    *,
    gateway_ports: bool | str = False,
    authorized_options: str = "",
    log_level: str = "DEBUG1",
    extra_authorized_lines: Sequence[str] = (),
    key_dir: Path | None = None,
    extra_config: Sequence[str] = (),
) -> SSHD:
    """Start sshd in ``workdir``. ``authorized_options`` prefixes the authorized_keys line.

    ``extra_authorized_lines`` are appended verbatim (other keys, with their own options);
    ``extra_config`` lines go at the end of sshd_config (e.g. ``HostCertificate FILE``).

    DEBUG1 is the default log level so tests can read what sshd did with a forward request.
    """
    require_sshd()
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    _install_keys(workdir, key_dir)
    host_key_path, client_key_path = workdir / "host_ed25519", workdir / "client_ed25519"
    public = client_key_path.with_suffix(".pub").read_text().strip()
    prefix = f"{authorized_options} " if authorized_options else ""
    lines = [prefix + public, *extra_authorized_lines]
    (workdir / "authorized_keys").write_text("\n".join(lines) + "\n")
    host_key = paramiko.Ed25519Key.from_private_key_file(str(host_key_path))
    for _attempt in range(5):
        sshd = _launch(workdir, gateway_ports, log_level, host_key, client_key_path, extra_config)
        if sshd is not None:
            return sshd
    raise RuntimeError(f"sshd did not start; see {workdir / 'sshd.log'}")


def _launch(
    workdir: Path,
    gateway_ports: bool | str,
    log_level: str,
    host_key: paramiko.PKey,
    client: Path,
    extra: Sequence[str] = (),
) -> SSHD | None:
    port = _free_port()
    config_path, log_path = workdir / "sshd_config", workdir / "sshd.log"
    config_path.write_text(_config(workdir, port, gateway_ports, log_level, extra))
    process = subprocess.Popen(
        [str(SSHD_BIN), "-D", "-f", str(config_path), "-E", str(log_path)],
        stdin=subprocess.DEVNULL,
        env=_daemon_env(),
    )
    if not _wait_listening(process, port, timeout=10):
        _kill_tree(process)
        return None
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    return SSHD(
        host="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        client_key_path=client,
        client_key=paramiko.Ed25519Key.from_private_key_file(str(client)),
        host_key=host_key,
        known_hosts=known_hosts,
        log_path=log_path,
        config_path=config_path,
        process=process,
        installed_keys=workdir / "installed_keys",
    )


SSHDFactory = Callable[..., SSHD]
