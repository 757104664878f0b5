"""Host key pinning: the user's known_hosts (read only) plus safetunnel's own (append only).

A key counts as *changed* when the host has any pinned key, of any type, and the presented key is
not among them. Reading "changed" per key type only would let a man in the middle who lacks the
real host key present a key of another type and fall back to the milder "unknown" prompt. The
client avoids false alarms by preferring the key types already pinned (:meth:`known_types`), the
way OpenSSH does, so a server that still has its old key is never asked for a different one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko

from safetunnel import fsutil
from safetunnel.addresses import format_hostport
from safetunnel.errors import HostKeyChanged

log = logging.getLogger("safetunnel.ssh")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:<base64 without padding>`` of the public key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def host_pattern(hostname: str, port: int) -> str:
    """The known_hosts name: ``host`` on port 22, ``[host]:port`` otherwise."""
    # OpenSSH lowercases the name before matching or hashing it; hashed entries compare exactly.
    name = hostname.lower()
    return name if port == 22 else f"[{name}]:{port}"


@dataclass(frozen=True)
class _Entry:
    names: tuple[str, ...]
    key: paramiko.PKey
    revoked: bool
    source: Path

    def matches(self, name: str) -> bool:
        matched = False
        for pattern in self.names:
            negated = pattern.startswith("!")
            if _name_matches(pattern.lstrip("!"), name):
                if negated:
                    return False  # OpenSSH: a matching negation excludes the line outright
                matched = True
        return matched


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):  # hashed: |1|base64(salt)|base64(hmac-sha1(salt, name))
        try:
            return hmac.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
        except (ValueError, TypeError, AssertionError):
            # A damaged hashed name (bad base64, a salt of the wrong size, non-ASCII) matches
            # nothing, as OpenSSH skips it: one bad line must not stop every host-key check.
            return False
    return glob_match(pattern, name)


def glob_match(pattern: str, name: str) -> bool:
    """OpenSSH patterns: only ``*`` and ``?`` are special; ``[host]:port`` brackets are literal."""
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, name.lower()) is not None


def _parse_line(line: str, source: Path) -> _Entry | None:
    fields = line.split()
    revoked = False
    if fields and fields[0].startswith("@"):
        if fields[0] != "@revoked":
            return None  # @cert-authority: certificates are not supported, so not trusted either
        revoked, fields = True, fields[1:]
    if len(fields) < 3:
        return None
    try:
        key = paramiko.PKey.from_type_string(fields[1], base64.b64decode(fields[2]))
    except Exception:  # unknown key type or corrupt base64: skip like OpenSSH does
        return None
    return _Entry(tuple(fields[0].split(",")), key, revoked, source)


def _load(path: Path, trusted: bool = False) -> list[_Entry]:
    """The entries of a known_hosts file; safetunnel's own (``trusted``) is refused when anyone
    else could have written a pin into it."""
    try:
        data = fsutil.read_trusted(path) if trusted else path.read_bytes()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    entries = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            entry = _parse_line(line, path)
            if entry is not None:
                entries.append(entry)
    return entries


def _same(a: paramiko.PKey, b: paramiko.PKey) -> bool:
    return a.get_name() == b.get_name() and a.asbytes() == b.asbytes()


class HostKeyStore:
    """Checks presented host keys against both known_hosts files; pins into the own file only.

    ``user_known_hosts`` defaults to ``~/.ssh/known_hosts``; pass the ``--known-hosts FILE`` value
    to replace it. Files are re-read on every check so a concurrent ``hosts trust`` is seen.
    """

    def __init__(self, user_known_hosts: Path | None, own_known_hosts: Path) -> None:
        self.user_known_hosts = (
            user_known_hosts
            if user_known_hosts is not None
            else Path("~/.ssh/known_hosts").expanduser()
        )
        self.own_known_hosts = own_known_hosts

    def _entries(self, hostname: str, port: int) -> list[_Entry]:
        name = host_pattern(hostname, port)
        entries = _load(self.user_known_hosts) + _load(self.own_known_hosts, trusted=True)
        return [entry for entry in entries if entry.matches(name)]

    def known_types(self, hostname: str, port: int) -> tuple[str, ...]:
        """Key types pinned for this host, in file order (the client prefers these)."""
        types: list[str] = []
        for entry in self._entries(hostname, port):
            if not entry.revoked and entry.key.get_name() not in types:
                types.append(entry.key.get_name())
        return tuple(types)

    def check(self, hostname: str, port: int, key: paramiko.PKey) -> Literal["known", "unknown"]:
        """``known`` when pinned, ``unknown`` when the host has no key; else HostKeyChanged."""
        entries = self._entries(hostname, port)
        if any(entry.revoked and _same(entry.key, key) for entry in entries):
            raise HostKeyChanged(
                f"The host key of {host_pattern(hostname, port)} ({fingerprint(key)}) is marked"
                " @revoked in your known_hosts.",
                hint="Do not connect; ask the host's administrator for its current key.",
            )
        pinned = [entry for entry in entries if not entry.revoked]
        if any(_same(entry.key, key) for entry in pinned):
            return "known"
        if not pinned:
            return "unknown"
        raise _changed(hostname, port, key, pinned)

    def pin(self, hostname: str, port: int, key: paramiko.PKey) -> None:
        """Append the key to safetunnel's own known_hosts (0600 file in a 0700 directory)."""
        fsutil.ensure_private_dir(self.own_known_hosts.parent)
        line = f"{host_pattern(hostname, port)} {key.get_name()} {key.get_base64()}"
        fsutil.append_line(self.own_known_hosts, line)
        log.info(
            "pinned %s key %s for %s",
            key.get_name(),
            fingerprint(key),
            host_pattern(hostname, port),
        )


def _changed(hostname: str, port: int, key: paramiko.PKey, pinned: list[_Entry]) -> HostKeyChanged:
    expected = "; ".join(
        f"{entry.key.get_name()} {fingerprint(entry.key)} (in {entry.source})" for entry in pinned
    )
    return HostKeyChanged(
        f"HOST KEY CHANGED for {host_pattern(hostname, port)}: expected {expected}, "
        f"got {key.get_name()} {fingerprint(key)}. Someone may be intercepting the connection.",
        hint=repin_hint(format_hostport(hostname, port), fingerprint(key)),
    )


def repin_hint(host: str, new_fingerprint: str) -> str:
    """What to do about a changed key: check it first, then the one command that re-pins it."""
    return (
        "safetunnel will not connect. Verify the new key with the host's administrator; only if "
        "it is right (the host was really reinstalled), re-pin it with `safetunnel hosts trust "
        f"{host} --fingerprint {new_fingerprint} --replace`."
    )
