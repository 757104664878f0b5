"""config.toml: default host, TTL limits and saved host profiles.

The file is optional: a missing file means the defaults. It is read with tomllib and written with
:mod:`safetunnel.hosts.tomlwrite` through :func:`safetunnel.fsutil.atomic_write` (0600 in a
0700 dir). Nothing secret ever goes in here; secrets live in the keyring
(:mod:`safetunnel.secrets.credentials`).

Host resolution (profile → ~/.ssh/config alias → literal) lives in :mod:`safetunnel.hosts.resolve`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from safetunnel import fsutil, paths
from safetunnel.durations import DurationError, format_duration, parse_duration
from safetunnel.errors import ConfigError, UsageError
from safetunnel.hosts import tomlwrite

DEFAULT_TTL = "30m"
DEFAULT_MAX_TTL = "24h"
# Bare TOML keys only, and no '@', ':' or '.', so a profile name can never be mistaken for a
# literal host and never needs quoting in [hosts.NAME].
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TOP_KEYS = ("default_host", "default_ttl", "max_ttl", "engine", "hosts")
ENGINES = ("auto", "openssh", "paramiko")
_PROFILE_KEYS = ("host", "identity", "user", "port")
T = TypeVar("T")


@dataclass
class HostProfile:
    """A saved host: ``host`` is ``[user@]hostname[:port]`` or an ~/.ssh/config alias."""

    name: str
    host: str
    identity: str | None = None
    user: str | None = None
    port: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "identity": self.identity,
            "user": self.user,
            "port": self.port,
        }


@dataclass
class Config:
    """The effective configuration.

    ``default_host`` is the effective default (``SAFETUNNEL_HOST`` wins); ``file_default_host`` is
    what config.toml says and is the only one :func:`save_config` writes, so an environment
    override never leaks into the file.
    """

    default_host: str | None = None
    default_ttl: str = DEFAULT_TTL
    max_ttl: str = DEFAULT_MAX_TTL
    hosts: dict[str, HostProfile] = field(default_factory=dict)
    file_default_host: str | None = None
    default_host_from_env: bool = False
    engine: str = "auto"  # which SSH engine a share uses when --engine is not given

    def profile(self, name: str) -> HostProfile:
        """The profile called ``name``; ConfigError listing the saved ones otherwise."""
        try:
            return self.hosts[name]
        except KeyError:
            raise UsageError(
                f"no saved host profile {name!r} ({self.known_profiles()})",
                hint="Run `safetunnel hosts list`, or add it with "
                f"`safetunnel hosts add {name} [user@]host[:port]`.",
            ) from None

    def known_profiles(self) -> str:
        return "saved: " + ", ".join(sorted(self.hosts)) if self.hosts else "none saved"

    def add_profile(self, profile: HostProfile, make_default: bool = False) -> None:
        if not PROFILE_NAME.match(profile.name):
            raise ConfigError(
                f"invalid profile name {profile.name!r}",
                hint="Use letters, digits, '-' and '_' (at most 64), "
                "starting with a letter or digit.",
            )
        if profile.name in self.hosts:
            raise ConfigError(
                f"a host profile named {profile.name!r} already exists",
                hint=f"Remove it first: `safetunnel hosts remove {profile.name}`.",
            )
        self.hosts[profile.name] = profile
        if make_default:
            self.set_default_host(profile.name)

    def remove_profile(self, name: str) -> bool:
        """Remove a profile; returns True when it was the saved default (now cleared)."""
        self.profile(name)
        del self.hosts[name]
        if self.file_default_host == name:
            self.set_default_host(None)
            return True
        return False

    def set_default_host(self, name: str | None) -> None:
        self.file_default_host = name
        if not self.default_host_from_env:
            self.default_host = name

    def max_ttl_seconds(self) -> int:
        return parse_duration(self.max_ttl)


def load_config(path: Path | None = None) -> Config:
    """Read config.toml (missing file = defaults) and apply ``SAFETUNNEL_HOST``."""
    path = path or paths.config_file()
    try:
        raw = fsutil.read_trusted(path)
    except FileNotFoundError:
        data: dict[str, Any] = {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    else:
        data = _parse_toml(raw, path)
    config = _from_data(data, path)
    env_host = os.environ.get("SAFETUNNEL_HOST", "").strip()
    if env_host:
        config.default_host = env_host
        config.default_host_from_env = True
    return config


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write config.toml atomically (0600, directory 0700). Returns the path written."""
    path = path or paths.config_file()
    fsutil.ensure_private_dir(path.parent)
    top = {
        "default_host": config.file_default_host,
        "default_ttl": config.default_ttl,
        "max_ttl": config.max_ttl,
        # Written only when chosen, so a default config.toml stays as it was.
        "engine": None if config.engine == "auto" else config.engine,
    }
    tables = {
        "hosts": {
            name: {k: v for k, v in p.as_dict().items() if k != "name"}
            for name, p in sorted(config.hosts.items())
        }
    }
    fsutil.atomic_write(path, tomlwrite.dumps(top, tables).encode("utf-8"))
    return path


def validate_ttl(ttl_seconds: int, config: Config) -> int:
    """Refuse a TTL above ``max_ttl``: a share is never unlimited, and never silently capped,
    because a user who asked for more must learn that it will end sooner."""
    limit = config.max_ttl_seconds()
    if ttl_seconds > limit:
        raise UsageError(
            f"TTL {format_duration(ttl_seconds)} is longer than max_ttl {config.max_ttl}",
            hint=f"Use a shorter --ttl, or raise max_ttl in {paths.config_file()} "
            f'(for example max_ttl = "{format_duration(ttl_seconds)}").',
        )
    return ttl_seconds


def _parse_toml(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start})") from err
    except tomllib.TOMLDecodeError as err:
        # tomllib's message already says "(at line N, column M)".
        raise ConfigError(
            f"{path} is not valid TOML: {err}",
            hint="Fix the file by hand, or move it away to start over.",
        ) from err


def _from_data(data: dict[str, Any], path: Path) -> Config:
    # Unknown keys are refused so that a typo such as `max_tll` is not silently ignored.
    _check_keys(data, _TOP_KEYS, str(path))
    config = Config(
        default_ttl=_duration(data, "default_ttl", DEFAULT_TTL, path),
        max_ttl=_duration(data, "max_ttl", DEFAULT_MAX_TTL, path),
    )
    # Only a default_ttl written in the file contradicts max_ttl; the built-in 30m default must
    # not make a short max_ttl unusable when --ttl is given (validate_ttl checks the TTL used).
    if "default_ttl" in data and (
        parse_duration(config.default_ttl) > parse_duration(config.max_ttl)
    ):
        raise ConfigError(
            f"{path}: default_ttl {config.default_ttl} is longer than max_ttl {config.max_ttl}"
        )
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ConfigError(f"{path}: 'hosts' must be a table of [hosts.NAME] sections")
    for name, fields in hosts.items():
        config.hosts[name] = _profile(name, fields, path)
    default = _optional(data, "default_host", str, str(path))
    config.file_default_host = config.default_host = default
    config.engine = _engine(data, path)
    return config


def _engine(data: dict[str, Any], path: Path) -> str:
    engine = _optional(data, "engine", str, str(path)) or "auto"
    if engine not in ENGINES:
        raise ConfigError(f"{path}: engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return engine


def _profile(name: str, fields: Any, path: Path) -> HostProfile:
    where = f"{path} [hosts.{name}]"
    if not isinstance(fields, dict):
        raise ConfigError(f"{where} must be a table")
    if not PROFILE_NAME.match(name):
        raise ConfigError(f"{where}: invalid profile name")
    _check_keys(fields, _PROFILE_KEYS, where)
    host = _optional(fields, "host", str, where)
    if not host:
        raise ConfigError(f'{where} needs host = "[user@]hostname[:port]"')
    port = _optional(fields, "port", int, where)
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} is out of range")
    return HostProfile(
        name=name,
        host=host,
        identity=_optional(fields, "identity", str, where),
        user=_optional(fields, "user", str, where),
        port=port,
    )


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint=f"Known keys here: {', '.join(allowed)}.",
        )


def _optional(data: dict[str, Any], name: str, kind: type[T], where: str) -> T | None:
    value = data.get(name)
    # bool is an int subclass; `port = true` must not pass as port 1.
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    wanted = {int: "an integer", str: "a string"}.get(kind, kind.__name__)
    raise ConfigError(f"{where}: {name} must be {wanted}, not {type(value).__name__}")


def _duration(data: dict[str, Any], name: str, default: str, path: Path) -> str:
    value = _optional(data, name, str, str(path)) or default
    try:
        parse_duration(value)
    except DurationError as err:
        raise ConfigError(f"{path}: {name}: {err}") from err
    return value
