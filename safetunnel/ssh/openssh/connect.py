"""Connecting with OpenSSH: the host-key check, then a control master that authenticates.

Nothing is forwarded here: the forward is added only after the user confirmed the share.
Secrets typed earlier (``remembered``) reach the askpass helper once each from a socket that
exists only during the login; what is typed during it is added to them.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from safetunnel import fsutil, paths
from safetunnel.errors import SafetunnelError
from safetunnel.secrets.handoff import SecretBroker
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.engine import HostKeyState
from safetunnel.ssh.openssh import askpass, config, hostkeys
from safetunnel.ssh.openssh.engine import OpenSSHSession, remove_temporary
from safetunnel.ssh.openssh.errors import login_failure
from safetunnel.ssh.openssh.forward import socket_name
from safetunnel.ssh.openssh.master import SSH, Master
from safetunnel.ssh.target import SSHTarget

# sun_path holds 108 bytes on Linux (104 on the BSDs) with the final NUL, and ssh binds its
# control socket under a name 17 characters longer before renaming it into place.
_SUN_PATH = (107 if sys.platform.startswith("linux") else 103) - 17
_STALE = re.compile(r"[mgra]-(\d+)-[0-9a-f]+\.(?:sock|report)")


def socket_dir() -> Path:
    """A private (0700) directory for the control and gate sockets: the state dir's ``ssh/``,
    or a fresh private temporary directory when that path is too long for a unix socket."""
    wanted = paths.state_dir() / "ssh"
    if len(str(wanted / "m-4194304-00000000.sock")) > _SUN_PATH:
        _sweep_temporary(Path(tempfile.gettempdir()))
        return Path(tempfile.mkdtemp(prefix="safetunnel-"))
    fsutil.ensure_private_dir(wanted)
    _sweep(wanted)
    return wanted


def _sweep(directory: Path) -> int:
    """Remove the sockets of sessions whose process is gone (killed with -9: nothing else
    removes them); returns how many entries are left."""
    left = 0
    for entry in directory.iterdir():
        owner = _STALE.fullmatch(entry.name)
        if owner is not None and not psutil.pid_exists(int(owner.group(1))):
            entry.unlink(missing_ok=True)
        else:
            left += 1
    return left


def _sweep_temporary(base: Path) -> None:
    """The temporary socket directories of ours that hold only the sockets of sessions that
    are gone. An empty one may be another session's, made a moment ago: it stays."""
    uid = os.getuid()
    for directory in base.glob("safetunnel-*"):
        try:
            info = directory.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            if any(directory.iterdir()) and _sweep(directory) == 0:
                directory.rmdir()
        except OSError:
            continue  # another session's sweep got there first, or it is not ours to read


def master_argv(
    target: SSHTarget,
    control: Path,
    known_hosts: Sequence[Path],
    keepalive: float,
    *,
    tries: int = 1,
) -> list[str]:
    """``ssh -M -S CTL -N …``; DEBUG1 so that the server's debug messages reach the log.

    The keepalive options and ``tries`` come first because ssh keeps the first value it is
    given. ``tries``: answers per secret; more than one only where someone can type them, as
    ssh sends an empty password when askpass has nothing to give."""
    argv = [SSH, "-M", "-S", str(control), "-N", "-o", "ControlPersist=no"]
    interval, count = keepalive_options(keepalive)
    argv += ["-o", f"ServerAliveInterval={interval}", "-o", f"ServerAliveCountMax={count}"]
    argv += ["-o", f"NumberOfPasswordPrompts={tries}"]
    argv += config.ssh_options(target, known_hosts=known_hosts, keepalive=keepalive)
    argv += ["-o", "LogLevel=DEBUG1"]
    return [*argv, *config.destination(target)]


def keepalive_options(keepalive: float) -> tuple[int, int]:
    """(ServerAliveInterval, ServerAliveCountMax) that declare the server lost about three
    keepalive periods after it went silent, as the paramiko engine's watchdog does.

    ssh counts whole seconds, and gives up at the interval *after* CountMax unanswered
    probes: (CountMax + 1) intervals in all."""
    interval = max(1, math.ceil(keepalive))
    return interval, max(1, round(3 * keepalive / interval) - 1)


def open_openssh_session(
    target: SSHTarget,
    *,
    known_hosts: Sequence[Path],
    on_unknown_key: hostkeys.HostKeyPrompt | None,
    keepalive: float,
    timeout: float = 30.0,
    remembered: dict[SecretName, str] | None = None,
) -> OpenSSHSession:
    """Check the host key, start the master and wait until it is logged in (``remembered``:
    see the module). Raises HostKeyUnknown/HostKeyChanged (4), AuthFailed (5), SSHError (1)."""
    options = config.ssh_options(target, known_hosts=known_hosts, keepalive=keepalive)
    verified = hostkeys.verify(
        target, known_hosts=known_hosts, on_unknown_key=on_unknown_key, options=options
    )
    state: HostKeyState = "certified" if verified.certified else verified.state
    sockets = socket_dir()
    control = socket_name(sockets, "m")
    report = sockets / f"r-{os.getpid()}-{secrets.token_hex(4)}.report"
    known = {} if remembered is None else remembered
    with SecretBroker(socket_name(sockets, "a"), known) as broker:
        # A terminal to ask on exists exactly when host keys may be asked about.
        env = askpass.askpass_env(
            target, interactive=on_unknown_key is not None, report=report, broker=broker.path
        )
        master = Master(_argv(target, control, known_hosts, keepalive, env), control, env)
        try:
            _wait_logged_in(master, target, report, timeout)
            session = OpenSSHSession(master, target, state, sockets)
            session.check_key(verified.fingerprint)
        except BaseException:
            master.close()
            remove_temporary(sockets)
            raise
        finally:
            report.unlink(missing_ok=True)
        known.update(broker.typed)
    return session


def start_master(
    target: SSHTarget,
    argv: Sequence[str],
    control: Path,
    sockets: Path,
    *,
    interactive: bool = False,
    timeout: float = 30.0,
    last_words: list[str] | None = None,
    remembered: dict[SecretName, str] | None = None,
    on_started: Callable[[Master], None] | None = None,
) -> Master:
    """Start ``argv`` (a :func:`master_argv`, perhaps with options of the caller's ahead of the
    engine's) and wait until it is logged in; no host-key probe runs first, so those options
    must decide the host key. ``interactive``: askpass may ask on this terminal. Raises as
    :func:`open_openssh_session` does; ``last_words`` then gets the master's log, which tells
    what key the host showed. ``remembered``: as for :func:`open_openssh_session`.
    ``on_started`` gets the master before its login: closing it (any thread) ends the wait."""
    report = sockets / f"r-{os.getpid()}-{secrets.token_hex(4)}.report"
    known = {} if remembered is None else remembered
    with SecretBroker(socket_name(sockets, "a"), known) as broker:
        env = askpass.askpass_env(
            target, interactive=interactive, report=report, broker=broker.path
        )
        master = Master(argv, control, env)
        try:
            if on_started is not None:
                on_started(master)
            _wait_logged_in(master, target, report, timeout)
        except BaseException:
            master.close()
            if last_words is not None:
                last_words.extend(master.log.tail(400))
            raise
        finally:
            report.unlink(missing_ok=True)
        known.update(broker.typed)
    return master


def _argv(
    target: SSHTarget,
    control: Path,
    known_hosts: Sequence[Path],
    keepalive: float,
    env: dict[str, str],
) -> list[str]:
    """The master's command line: three tries per secret where someone can type them."""
    tries = askpass.MAX_ANSWERS if askpass.TTY_ENV in env else 1
    return master_argv(target, control, known_hosts, keepalive, tries=tries)


def _wait_logged_in(master: Master, target: SSHTarget, report: Path, timeout: float) -> None:
    """The master's own wait, with its failure told from everything ssh and askpass said."""
    try:
        master.wait_ready(timeout, asking=lambda: askpass.asking(report))
    except SafetunnelError:
        if master.alive():
            raise
        lines = master.log.tail(400)
        raise login_failure(lines, target, askpass.read_report(report)) from None
