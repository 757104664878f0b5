"""Append-only audit log: ``audit.jsonl`` in the state dir, one JSON object per line, 0600.

Lines look like ``{"ts": "...Z", "event": "connection", "id": "st-1a2b3c", ...fields}``. Events
written by a tunnel: confirmed, started, connection, extended, warning, stopped.

The log must never hold a secret. Callers should not pass one in the first place; as defence in
depth, fields named like a secret are dropped and token-shaped values are redacted here.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safetunnel import fsutil, jsontext, paths
from safetunnel.tickets import TICKET_RE
from safetunnel.tokens import PREFIX as TOKEN_PREFIX
from safetunnel.tokens import TOKEN_RE

EVENTS = frozenset({"confirmed", "started", "connection", "extended", "warning", "stopped"})
REDACTED = "[redacted]"
_EVENT_RE = re.compile(r"[a-z][a-z_-]{0,31}")
_SECRET_WORDS = ("password", "passphrase", "secret", "ticket")  # a ticket holds the token
_RESERVED = frozenset({"ts", "event", "id"})
_NONE: frozenset[str] = frozenset()
# json.dumps's own encoder, but without the check for a container that holds itself: a line is
# one flat dict (which scrub has rebuilt), and the check costs a fifth of its encoding.
_ENCODER = json.JSONEncoder(check_circular=False)
# Room a share wants before it admits a connection: a few of its lines, with a margin.
MIN_FREE_BYTES = 16 * 1024


# The last whole second stamped and its text: a share writes several lines a second (one per
# HTTP request), and formatting a datetime took a sixth of a line's cost (measured).
_last_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """Now as ``2026-11-29T03:14:15Z`` (whole seconds, UTC), formatted once per second."""
    global _last_stamp
    second = int(time.time())
    stamp = _last_stamp
    if stamp[0] != second:
        stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
        _last_stamp = stamp  # one assignment: threads see the old pair or the new one
    return stamp[1]


# A share writes the same few field names on every connection: each is judged once.
@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """Names that can only carry a secret (``token_hash_prefix`` is fine, ``token`` is not)."""
    lowered = name.lower()
    return lowered.endswith("token") or any(word in lowered for word in _SECRET_WORDS)


def scrub(value: Any) -> Any:
    """``value`` with secret-named keys dropped and token-shaped text redacted, recursively."""
    kind = type(value)
    if kind is int or kind is bool or kind is float or value is None:
        return value  # the common case first: counts and flags cannot hold a token
    if isinstance(value, str):
        # Every token starts with "st_" and every ticket with "stt": text without "st" holds
        # neither, and most text (paths, addresses, reasons) takes this fast way out.
        if "st" not in value:
            return value
        redacted = TOKEN_RE.sub(REDACTED, value) if TOKEN_PREFIX in value else value
        return TICKET_RE.sub(REDACTED, redacted)
    if isinstance(value, dict):
        return _scrub_fields({}, value)
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))  # paths, enums...: their text could still hold a token


def _scrub_fields(
    into: dict[str, Any],
    fields: Mapping[Any, Any],
    leave_out: frozenset[str] = _NONE,
    reserved: frozenset[str] = _NONE,
) -> dict[str, Any]:
    """``fields`` scrubbed into ``into``, but for secret-named keys and those in ``leave_out``
    or ``reserved``. A connection's line is mostly counts, flags and short text without "st":
    those are kept as they are here, without a call each."""
    for k, v in fields.items():
        key = str(k)
        if key in leave_out or key in reserved or is_secret_name(key):
            continue
        kind = type(v)
        plain = kind is int or kind is bool or kind is float or v is None
        into[key] = v if plain or (kind is str and "st" not in v) else scrub(v)
    return into


class AuditLog:
    """The audit log at ``path`` (default: ``audit.jsonl`` in the state dir)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.audit_path()
        self._dir_checked = False

    def write(self, event: str, tunnel_id: str, /, **fields: Any) -> dict[str, Any]:
        """Append one event line and return what was written (after scrubbing)."""
        entry = self.entry(event, tunnel_id, **fields)
        self.append([entry])
        return entry

    @staticmethod
    def entry(event: str, tunnel_id: str, /, **fields: Any) -> dict[str, Any]:
        """The line :meth:`write` would append, scrubbed and stamped now, for :meth:`append`."""
        return AuditLog.entry_of(event, tunnel_id, fields)

    @staticmethod
    def entry_of(
        event: str, tunnel_id: str, fields: Mapping[str, Any], leave_out: frozenset[str] = _NONE
    ) -> dict[str, Any]:
        """:meth:`entry` from a mapping, without the keys in ``leave_out`` (nor the entry's own
        ``ts``, ``event`` and ``id``): a share builds one per connection, so the fields are
        copied once, not once per filter."""
        if event not in EVENTS and _EVENT_RE.fullmatch(event) is None:
            raise ValueError(f"bad audit event name {event!r}")
        entry = {"ts": _timestamp(), "event": event, "id": tunnel_id}
        return _scrub_fields(entry, fields, leave_out, _RESERVED)

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Append ``entries`` (from :meth:`entry`) with one write: a busy share records several
        connections per wake-up, and each open, write and close of the file is a system call."""
        if not self._dir_checked:
            fsutil.ensure_private_dir(self.path.parent)
            self._dir_checked = True
        lines = "".join(_ENCODER.encode(entry) + "\n" for entry in entries)
        fsutil.append_text(self.path, lines)

    def check_writable(self) -> None:
        """Raise OSError unless a line could be appended now: the file opens for appending (not
        read-only, not immutable) and its filesystem has room for a line. A share asks this
        before a connection reaches the service, because the connection's own line is written
        only when it ends, with its bytes and duration."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            room = os.fstatvfs(fd)
        finally:
            os.close(fd)
        if room.f_bavail * room.f_frsize < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def read(self, tunnel_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry (of ``tunnel_id`` if given), oldest first; unreadable lines are skipped."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                entry = _parse(line)
                if entry is not None and _wanted(entry, tunnel_id):
                    yield entry

    def follow(
        self,
        tunnel_id: str | None = None,
        *,
        poll: float = 0.5,
        stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[dict[str, Any]]:
        """Yield existing entries, then new ones as they are appended, until ``stop()`` is true.

        Polls, so it works before the file exists and across a replaced (rotated) file.
        """
        tail = _Tail(self.path)
        while True:
            for line in tail.new_lines():
                entry = _parse(line)
                if entry is not None and _wanted(entry, tunnel_id):
                    yield entry
            if stop is not None and stop():
                return
            sleep(poll)


class _Tail:
    """Reads complete lines appended to a file since the last call; reopens a replaced file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[bytes]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.inode, self.offset, self.partial = st.st_ino, 0, b""
        if st.st_size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return lines


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = jsontext.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def _wanted(entry: dict[str, Any], tunnel_id: str | None) -> bool:
    return tunnel_id is None or entry.get("id") == tunnel_id
