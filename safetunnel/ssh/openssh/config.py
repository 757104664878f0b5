"""The options that make OpenSSH's ``ssh`` reach a host the user's way but hold safetunnel's line.

*Reaching* follows the user's ssh_config (HostName, User, Port, IdentityFile, ProxyJump,
ProxyCommand, Include, Match, certificates, agents). *Safety* does not: strict host keys against
exactly the two known_hosts files, no forwards other than the one the engine adds, no agent or X11
forwarding, no local command, no TTY, no remote command.

Two mechanisms carry that, because OpenSSH keeps the *first* value it obtains for an option:

- the same options on the command line (``-o``), which beat every config file for the connection
  to the host itself;
- a generated config file given with ``-F``, whose top lines (before any ``Host``) repeat them
  and then ``Include`` the user's file and the system-wide one. ``ssh`` passes ``-F`` on to the
  ``ssh`` it starts for each ProxyJump hop, but not the ``-o`` options, so without this file a
  jump host would be checked, and could forward, as the user's config says.

The generated file is also how OpenSSH reads the *same* user config safetunnel resolved: ``ssh``
finds ``~/.ssh/config`` through the passwd database, safetunnel through ``$HOME``. ``-F`` turns off
the system-wide file, so the wrapper includes it after the user's, in OpenSSH's own order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from safetunnel import fsutil, paths
from safetunnel.errors import ConfigError, SSHError
from safetunnel.ssh.target import SSHTarget

SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")
SERVER_ALIVE_COUNT = 3

# Host-independent safety: written at the top of the generated file (so every ProxyJump hop gets
# it) and repeated on the command line. ControlMaster/ControlPath appear only in the file: the
# engine sets its own on the command line for the real connection, and a hop must neither reuse
# a user's multiplexed connection (its host key would not be checked again) nor become a master
# that outlives the share.
SAFETY: tuple[tuple[str, str], ...] = (
    ("StrictHostKeyChecking", "yes"),  # never "no" or "accept-new": unknown keys are our prompt
    ("KnownHostsCommand", "none"),  # a command's output would be trusted beyond the two files
    ("VerifyHostKeyDNS", "no"),
    ("UpdateHostKeys", "no"),  # these two would write the user's known_hosts
    ("CheckHostIP", "no"),
    ("ClearAllForwardings", "yes"),  # LocalForward/RemoteForward/DynamicForward from the config
    ("Tunnel", "no"),
    ("ForwardAgent", "no"),
    ("ForwardX11", "no"),
    ("ForwardX11Trusted", "no"),
    ("PermitLocalCommand", "no"),
    ("RequestTTY", "no"),
    ("RemoteCommand", "none"),
    ("ForkAfterAuthentication", "no"),
    ("EscapeChar", "none"),
    ("ExitOnForwardFailure", "yes"),
    ("NumberOfPasswordPrompts", "1"),  # a stored password that fails is not sent again
    ("Ciphers", "-*-cbc"),
    ("MACs", "-hmac-sha1*"),
)
# Only for the connection to the host: a ProxyJump hop carries its stream on stdin/stdout and
# runs no session of its own anyway.
MAIN_ONLY: tuple[tuple[str, str], ...] = (("SessionType", "none"), ("StdinNull", "yes"))
HOP_ONLY: tuple[tuple[str, str], ...] = (("ControlMaster", "no"), ("ControlPath", "none"))


def user_config() -> Path:
    """The user's ssh_config as safetunnel reads it (through ``$HOME``)."""
    return Path(os.path.expanduser("~")) / ".ssh" / "config"


def default_known_hosts() -> list[Path]:
    """The user's known_hosts as ``ssh`` would read them by default (through ``$HOME``)."""
    ssh_dir = Path(os.path.expanduser("~")) / ".ssh"
    return [ssh_dir / "known_hosts", ssh_dir / "known_hosts2"]


def quote(value: str) -> str:
    """One ssh_config argument: double-quoted, with ``%`` escaped (ssh expands its tokens)."""
    if '"' in value or "\n" in value:
        raise ConfigError(f"ssh cannot be given the path {value!r} (it contains a quote)")
    return '"' + value.replace("%", "%%") + '"'


def known_hosts_files(known_hosts: Sequence[Path]) -> list[Path]:
    """The user's files (``--known-hosts`` or the defaults), then safetunnel's own; no repeats."""
    files: list[Path] = []
    for path in [*(known_hosts or default_known_hosts()), paths.own_known_hosts()]:
        if path.absolute() not in files:
            files.append(path.absolute())
    return files


def _host_options(known_hosts: Sequence[Path], keepalive: float) -> list[tuple[str, str]]:
    files = " ".join(quote(str(path)) for path in known_hosts_files(known_hosts))
    interval = str(max(1, round(keepalive)))
    return [
        *SAFETY,
        ("UserKnownHostsFile", files),
        ("ServerAliveInterval", interval),
        ("ServerAliveCountMax", str(SERVER_ALIVE_COUNT)),
    ]


def wrapper_text(known_hosts: Sequence[Path], keepalive: float) -> str:
    """The generated config: safety first (first value wins), then user, then system file."""
    lines = ["# Generated by safetunnel for each ssh it runs; rewritten as needed."]
    lines += [
        f"{key} {value}" for key, value in (*_host_options(known_hosts, keepalive), *HOP_ONLY)
    ]
    # ssh's own level, so its refusals ("Host key verification failed") reach the engine's stderr
    # whatever LogLevel the user's config sets; a -v on the command line still raises it.
    lines.append("LogLevel INFO")
    lines.append(f"Include {quote(str(user_config()))}")  # a missing file includes nothing
    lines.append(f"Include {quote(str(SYSTEM_CONFIG))}")
    return "\n".join(lines) + "\n"


def write_wrapper(known_hosts: Sequence[Path], keepalive: float) -> Path:
    """Write the generated config (0600, in the 0700 state dir) and return its path.

    Named by its content, so concurrent shares with different options never overwrite each
    other's file and the same options reuse one.
    """
    text = wrapper_text(known_hosts, keepalive)
    directory = fsutil.ensure_private_dir(paths.state_dir() / "openssh")
    path = directory / f"config-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not path.exists() or path.read_text() != text:
        fsutil.atomic_write(path, text.encode())
    return path


def ssh_options(target: SSHTarget, *, known_hosts: Sequence[Path], keepalive: float) -> list[str]:
    """The ``ssh`` arguments that go before :func:`destination`.

    ``known_hosts`` are the user's files (empty: ``~/.ssh/known_hosts`` and ``known_hosts2``);
    safetunnel's own file is always added. ``keepalive`` is the ServerAliveInterval in seconds.
    ControlMaster and ControlPath are the engine's to set (after these, before the destination).
    """
    args = ["-F", str(write_wrapper(known_hosts, keepalive))]
    for key, value in (*_host_options(known_hosts, keepalive), *MAIN_ONLY):
        args += ["-o", f"{key}={value}"]
    for identity in target.identity_files:
        args += ["-o", f"IdentityFile={quote(identity)}"]
    return args


def destination(target: SSHTarget) -> list[str]:
    """The destination, after ``--`` so that no host name is ever read as an option."""
    return ["--", target.ssh_destination]


def resolve(target: SSHTarget, options: Sequence[str], *, ssh: str = "ssh") -> SSHTarget:
    """``target`` with the host name, user, port and proxy that OpenSSH itself will use (``ssh
    -G``), so that the confirmation names exactly what the connection reaches."""
    try:
        done = subprocess.run(
            [ssh, "-G", *options, *destination(target)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SSHError(f"cannot run {ssh} -G: {err}") from err
    if done.returncode != 0:
        raise ConfigError(
            f"ssh cannot read its config for {target.label or target.display}: "
            f"{done.stderr.strip()}"
        )
    settings: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), value)
    proxy = "ProxyJump" if settings.get("proxyjump", "none") != "none" else ""
    if not proxy and settings.get("proxycommand", "none") != "none":
        proxy = "ProxyCommand"
    return dataclasses.replace(
        target,
        hostname=settings.get("hostname", target.hostname),
        user=settings.get("user", target.user),
        port=int(settings.get("port", target.port)),
        proxy=proxy,
    )
