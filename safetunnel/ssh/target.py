"""Where to connect: ``[user@]host[:port]`` strings and ``~/.ssh/config`` aliases."""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConfigError
from safetunnel.ssh._invoke import allow_match_exec
from safetunnel.ssh.hostkeys import glob_match

# Conservative on purpose: a hostname reaches log lines, prompts and known_hosts entries.
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})$")
# '@' may appear inside a user name (user@domain, as OpenSSH splits at the last '@'), never last.
_USER = re.compile(r"^[A-Za-z0-9._](?:[A-Za-z0-9._@+-]{0,62}[A-Za-z0-9._+-])?$")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::(?P<port>[^:]*))?$")
_FORMAT_HINT = "Use [user@]host[:port], e.g. alice@bastion.example.com:2222 or [::1]:2222."


@dataclass(frozen=True)
class SSHTarget:
    """One SSH endpoint. ``label`` is what the user typed (or the profile name)."""

    hostname: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    identity_files: tuple[str, ...] = ()
    label: str = ""
    # What to hand ``ssh`` so that its own config applies exactly as for ``ssh DEST``: an alias,
    # or an ``ssh://`` URI carrying only the user and port that were typed (a port written out
    # would override the config's Port). Empty: built from hostname, user and port.
    destination: str = ""
    # "ProxyJump" or "ProxyCommand" when the ssh_config routes this host through a proxy: an
    # engine that cannot follow it must refuse rather than connect directly.
    proxy: str = ""

    @property
    def display(self) -> str:
        """``user@host:port``, with IPv6 literals bracketed."""
        return f"{self.user}@{format_hostport(self.hostname, self.port)}"

    @property
    def ssh_destination(self) -> str:
        """The destination argument for OpenSSH's ``ssh``."""
        if self.destination:
            return self.destination
        return ssh_uri(self.hostname, self.user, self.port)


def ssh_uri(host: str, user: str | None, port: int | None) -> str:
    """``ssh://[user@]host[:port]``; the URI form keeps IPv6 literals and ports unambiguous."""
    name = f"[{host}]" if ":" in host else host
    return f"ssh://{f'{user}@' if user else ''}{name}{f':{port}' if port else ''}"


def refuse_proxy(target: SSHTarget) -> None:
    """ConfigError when the config routes ``target`` through a proxy the paramiko engine cannot
    follow: connecting directly would reach a different machine, or fail, silently."""
    if target.proxy:
        raise ConfigError(
            f"{target.label or target.display} is reached through {target.proxy} in your "
            "ssh_config, which the paramiko engine cannot follow",
            hint="Use `--engine openssh` (it honours ProxyJump and ProxyCommand), or remove "
            f"{target.proxy} for this host.",
        )


def _parse_port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"Invalid SSH port in {original!r}: {text!r}", hint=_FORMAT_HINT)
    return int(text)


def _check_hostname(host: str, original: str) -> str:
    with contextlib.suppress(ValueError):  # not an IP address: check it as a host name
        return str(ipaddress.ip_address(host))
    if not _HOSTNAME.match(host) or ".." in host:
        raise ConfigError(f"Invalid SSH host in {original!r}: {host!r}", hint=_FORMAT_HINT)
    return host


def _split_host_port(rest: str, original: str) -> tuple[str, int | None]:
    """The host and the port, None when no port was written."""
    bracketed = _BRACKETED.match(rest)
    if bracketed:
        port = bracketed.group("port")
        return bracketed.group("host"), None if port is None else _parse_port(port, original)
    if rest.count(":") > 1:  # a bare IPv6 literal has no room for a port
        return rest, None
    host, sep, port_text = rest.partition(":")
    return host, _parse_port(port_text, original) if sep else None


def parse_target(text: str) -> SSHTarget:
    """Parse ``[user@]host[:port]`` or ``[user@][v6addr]:port``; the user defaults to yours.

    Raises :class:`ConfigError` with a usage hint for anything else.
    """
    original = text
    text = text.strip()
    if not text:
        raise ConfigError("Empty SSH host", hint=_FORMAT_HINT)
    user, at, rest = text.rpartition("@")
    if at and not _USER.match(user):
        raise ConfigError(f"Invalid SSH user in {original!r}: {user!r}", hint=_FORMAT_HINT)
    host, port = _split_host_port(rest, original)
    hostname = _check_hostname(host, original)
    return SSHTarget(
        hostname=hostname,
        user=user if at else getpass.getuser(),
        port=port or 22,
        label=original.strip(),
        destination=ssh_uri(hostname, user if at else None, port),
    )


def _has_own_block(config: paramiko.SSHConfig, alias: str) -> bool:
    """True when a ``Host`` pattern other than a bare catch-all matches ``alias``."""
    for pattern in config.get_hostnames():
        if pattern.startswith("!") or set(pattern) <= {"*", "?"}:
            continue
        if glob_match(pattern, alias):
            return True
    return False


def from_ssh_config(alias: str, path: Path | str | None = None) -> SSHTarget | None:
    """Resolve an OpenSSH config alias (HostName, User, Port, IdentityFile).

    ``path`` defaults to ``~/.ssh/config``. Returns None when the file is missing or no ``Host``
    block of its own matches ``alias`` (a ``Host *`` block alone does not make a name an alias).
    """
    config_path = Path(path).expanduser() if path else Path("~/.ssh/config").expanduser()
    if not config_path.is_file():
        return None
    try:
        text = config_path.read_text()
        allow_match_exec(text)
        config = paramiko.SSHConfig.from_text(text)
        if not _has_own_block(config, alias):
            return None
        entry = config.lookup(alias)
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise ConfigError(f"Cannot read {config_path}: {exc}") from exc
    port_text = str(entry.get("port", "22"))
    hostname = _check_hostname(str(entry.get("hostname", alias)), alias)
    user = str(entry.get("user", getpass.getuser()))
    files = tuple(os.path.expanduser(str(f)) for f in entry.get("identityfile", []))
    return SSHTarget(
        hostname=hostname,
        user=user,
        port=_parse_port(port_text, alias),
        identity_files=files,
        label=alias,
        destination=alias,
        proxy=_proxy_option(entry),
    )


def _proxy_option(entry: paramiko.config.SSHConfigDict) -> str:
    """Which proxy option routes this host, if any (``ProxyCommand none`` means no proxy)."""
    jump = str(entry.get("proxyjump") or "")
    if jump and jump.lower() != "none":
        return "ProxyJump"
    return "ProxyCommand" if entry.get("proxycommand") else ""
