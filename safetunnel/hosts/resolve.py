"""Which SSH host a ``--host`` text means.

Order: a saved profile, then an ``~/.ssh/config`` alias, then a literal ``[user@]hostname[:port]``;
with no ``--host``, the default host (``SAFETUNNEL_HOST`` or config.toml), and with none of those
the built-in loopback gateway. :func:`locate_host` decides and returns a plain :class:`HostRef`,
so the decision is testable without the SSH layer; :func:`resolve_host` turns it into the SSH
layer's ``SSHTarget``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConfigError, UsageError
from safetunnel.hosts.config import Config, HostProfile
from safetunnel.ssh._invoke import allow_match_exec
from safetunnel.ssh.target import SSHTarget, from_ssh_config, parse_target, ssh_uri

_WILDCARD = re.compile(r"[*?!]")


class MissingKeyFile(UsageError):
    """A key file the user named (a profile's identity) does not exist."""


@dataclass(frozen=True)
class HostRef:
    """Where ``--host`` points. ``kind`` says which rule matched; "builtin" has no address."""

    kind: Literal["profile", "alias", "literal", "builtin"]
    label: str = ""
    hostname: str = ""
    port: int = 22
    user: str = ""
    identity_files: tuple[str, ...] = ()
    destination: str = ""  # what ``ssh`` is given (see SSHTarget.destination)
    proxy: str = ""  # "ProxyJump"/"ProxyCommand" when the ssh_config routes the host through one

    @property
    def display(self) -> str:
        """``user@host:port`` (IPv6 in brackets), the form the keyring usernames use."""
        return f"{self.user}@{format_hostport(self.hostname, self.port)}"


AliasLookup = Callable[[str], HostRef | None]


def parse_literal(text: str, label: str | None = None) -> HostRef:
    """Parse ``[user@]hostname[:port]`` or ``[user@][v6addr]:port``; default user is you."""
    target = parse_target(text)
    return HostRef(
        "literal",
        label=label if label is not None else text,
        hostname=target.hostname,
        port=target.port,
        user=target.user,
        destination=target.destination,
    )


def ssh_config_path() -> Path:
    return Path(os.path.expanduser("~")) / ".ssh" / "config"


def ssh_aliases(path: Path | None = None) -> list[str]:
    """Literal ``Host`` names in ~/.ssh/config (patterns with wildcards are not aliases)."""
    config = _read_ssh_config(path or ssh_config_path())
    if config is None:
        return []
    return sorted(h for h in config.get_hostnames() if not _WILDCARD.search(h))


def ssh_config_alias(alias: str, path: Path | None = None) -> HostRef | None:
    """The alias as ssh would resolve it (HostName, User, Port, IdentityFile), or None."""
    target = from_ssh_config(alias, path or ssh_config_path())
    if target is None:
        return None
    # OpenSSH skips an IdentityFile that does not exist (a config shared between machines
    # often names keys that only some of them have); so does safetunnel, on both engines.
    existing = tuple(f for f in target.identity_files if os.path.exists(f))
    return HostRef(
        "alias",
        label=alias,
        hostname=target.hostname,
        port=target.port,
        user=target.user,
        identity_files=existing,
        destination=target.destination,
        proxy=target.proxy,
    )


def locate_host(
    text: str | None,
    config: Config,
    *,
    alias: AliasLookup = ssh_config_alias,
    aliases: Callable[[], list[str]] = ssh_aliases,
) -> HostRef:
    """Decide what ``--host text`` means. ``alias``/``aliases`` are injectable for tests."""
    if text is None:
        text = config.default_host
        if text is None:
            return HostRef("builtin", label="built-in loopback gateway")
    text = text.strip()
    if text in config.hosts:
        return _from_profile(config.hosts[text], alias)
    found = alias(text)
    if found is not None:
        return found
    if _looks_like_a_name(text):
        # A bare word that is neither a profile nor an alias is far more often a typo of one than
        # a single-label hostname; connecting (and offering secrets) to it would be the wrong
        # guess. user@name or name:22 still reach such a host.
        raise UsageError(
            f"unknown host {text!r}: not a saved profile ({config.known_profiles()}) and not an "
            f"~/.ssh/config alias ({', '.join(aliases()) or 'none found'})",
            hint=f"Add it with `safetunnel hosts add NAME {text}`, or write a literal host as "
            f"user@{text} or {text}:22.",
        )
    return parse_literal(text)


def resolve_host(
    text: str | None, config: Config, *, alias: AliasLookup = ssh_config_alias
) -> SSHTarget | None:
    """``--host`` text → the SSH layer's ``SSHTarget``; None means the built-in gateway."""
    ref = locate_host(text, config, alias=alias)
    if ref.kind == "builtin":
        return None
    target = SSHTarget(
        hostname=ref.hostname,
        port=ref.port,
        user=ref.user,
        identity_files=ref.identity_files,
        label=ref.label,
        destination=ref.destination,
        proxy=ref.proxy,
    )
    return target


def _from_profile(profile: HostProfile, alias: AliasLookup) -> HostRef:
    # A profile's host may itself be an ssh alias; it is never another profile (no chains).
    base = alias(profile.host) or parse_literal(profile.host)
    identity = (os.path.expanduser(profile.identity),) if profile.identity else ()
    if identity and not os.path.isfile(identity[0]):
        raise MissingKeyFile(
            f"the key file of host {profile.name} does not exist: {identity[0]}",
            hint=f"Restore the file, or `safetunnel hosts remove {profile.name}` and add it "
            "again with the key you use now.",
        )
    destination = base.destination
    if profile.user or profile.port:  # the profile's own user and port beat the ssh_config's
        aliased = base.kind == "alias"
        destination = ssh_uri(
            profile.host if aliased else base.hostname,
            profile.user or (None if aliased else base.user),
            profile.port or (None if aliased else base.port),
        )
    return HostRef(
        "profile",
        label=profile.name,
        hostname=base.hostname,
        port=profile.port or base.port,
        user=profile.user or base.user,
        identity_files=identity + base.identity_files,
        destination=destination,
        proxy=base.proxy,
    )


def _looks_like_a_name(text: str) -> bool:
    return text != "localhost" and not any(c in text for c in "@:.[")


def _read_ssh_config(path: Path) -> paramiko.SSHConfig | None:
    try:
        text = path.read_text()
        allow_match_exec(text)
        return paramiko.SSHConfig.from_text(text)
    except FileNotFoundError:
        return None
    except (OSError, paramiko.SSHException) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
