"""Tunnel records: one ``tunnels/<id>.json`` per running share, written atomically, pruned if stale.

A record is the only thing other safetunnel commands know about a share, so it must never lie
about which process owns it: a pid alone is not an identity (pids are reused), a pid together with
that process's start time is. Records whose process is gone, or whose pid now belongs to another
process, are pruned together with their control socket.

This module is on the fast path of ``safetunnel list``: it must never import paramiko or
cryptography (directly or through another safetunnel module).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from safetunnel import fsutil, jsontext, paths
from safetunnel.errors import StateError, TunnelNotFound
from safetunnel.registry import control
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.leftovers import remove_token_files

ID_RE = re.compile(r"st-[0-9a-f]{6}")
RECENT_MAX = 20
# psutil derives create_time from the boot time plus the start tick; the boot time it reads can
# move by a fraction of a second between processes (clock adjustments), so an exact float compare
# could prune a live tunnel. A pid is only reused after the pid space wraps, far longer than this.
START_TIME_TOLERANCE = 1.0
# Enough for any record a share writes; only its pid and start time are looked for in it.
_RECORD_MAX_BYTES = 1 << 20
# What can still be read from a damaged record (its writer uses json.dumps' default spacing).
_PID_RE = re.compile(r'"pid": (\d{1,10})[,}]')
_START_RE = re.compile(r'"pid_start_time": (\d{1,12}(?:\.\d+)?)[,}]')


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What each field's value must be, by its annotation: a record is read back from disk (or from a
# share's control socket), and a field of the wrong kind made `list` and `kill` fail with a
# traceback further on (a start time that is a string cannot be compared).
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: _number(v) and isinstance(v, int),
    "float": _number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "str | None": lambda v: v is None or isinstance(v, str),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[dict[str, Any]]": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
}


def new_tunnel_id() -> str:
    """A fresh id: ``st-`` followed by 6 lowercase hex characters."""
    return f"st-{secrets.token_hex(3)}"


def check_tunnel_id(tunnel_id: str) -> str:
    """Return ``tunnel_id`` if it has the shape of an id; it becomes a path, so nothing else may."""
    if ID_RE.fullmatch(tunnel_id) is None:
        raise TunnelNotFound(f"{tunnel_id!r} is not a tunnel id (ids look like st-1a2b3c)")
    return tunnel_id


@dataclass
class TunnelRecord:
    """What a running share publishes about itself. Never holds the token, only its hash prefix."""

    id: str
    pid: int
    pid_start_time: float
    local: str
    ssh_host: str
    remote_bind: str
    remote_port: int
    protocol: str
    started_at: str
    expires_at: str
    token_hash_prefix: str
    connections: int = 0
    total_connections: int = 0
    denied: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    log_path: str | None = None
    # Records written before there was a choice of engine were all carried by paramiko.
    engine: str = "paramiko"
    # "serving", or "reconnecting" while a lost SSH session is replaced; older records serve.
    state: str = "serving"
    recent: list[dict[str, Any]] = field(default_factory=list)
    # The last HTTP requests (method, query-less path, status, duration, bytes); older records
    # have none.
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Whether the remote side speaks TLS, and the pin of the certificate made for the share
    # (None for the user's own certificate): public, so a --background share's can be looked up.
    tls: bool = False
    tls_pin: str | None = None
    # The --token-file and its ticket file, which the share removes as it ends (when not kept).
    token_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> TunnelRecord:
        """Build a record from parsed JSON; unknown keys are ignored (newer writers add some)."""
        if not isinstance(data, dict):
            raise StateError("tunnel record is not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            record = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise StateError(f"tunnel record is incomplete: {err}") from None
        for spec in fields(cls):
            if not _FIELD_CHECKS[str(spec.type)](getattr(record, spec.name)):
                raise StateError(f"tunnel record has a malformed {spec.name}")
        check_tunnel_id(record.id)
        return record

    @classmethod
    def from_json(cls, text: str | bytes) -> TunnelRecord:
        try:
            data = jsontext.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise StateError(f"tunnel record is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def add_recent(self, connection: dict[str, Any]) -> None:
        """Keep the last :data:`RECENT_MAX` connections (origin, protocol, allowed, reason, ...)."""
        self.recent.append(connection)
        del self.recent[:-RECENT_MAX]


class LoadResult(NamedTuple):
    records: list[TunnelRecord]
    pruned: int
    # Ids whose record cannot be read while their tunnel still runs: kept, never pruned (the
    # tunnel rewrites its record within seconds, and its control socket is its only handle).
    corrupt: tuple[str, ...] = ()


def current_process_start_time() -> float:
    """The start time to put in ``pid_start_time`` for the calling process."""
    return psutil.Process(os.getpid()).create_time()


def process_matches(pid: int, start_time: float) -> bool:
    """True when ``pid`` is alive, is ours, and started at ``start_time`` (no pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if proc.uids().real != os.getuid():
            return False  # a record naming another user's process is forged or stale
        return abs(proc.create_time() - start_time) <= START_TIME_TOLERANCE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class Registry:
    """The ``tunnels/`` directory under the state dir: records and control sockets."""

    def __init__(self, state_dir: Path | None = None) -> None:
        base = state_dir if state_dir is not None else paths.state_dir()
        # The state dir itself is checked too: a 0700 tunnels/ inside a world-writable parent
        # could be renamed away and replaced by someone else.
        fsutil.ensure_private_dir(base)
        self.dir = fsutil.ensure_private_dir(base / "tunnels")
        self._audit_path = base / "audit.jsonl"

    def record_path(self, tunnel_id: str) -> Path:
        return self.dir / f"{check_tunnel_id(tunnel_id)}.json"

    def socket_path(self, tunnel_id: str) -> Path:
        return self.dir / f"{check_tunnel_id(tunnel_id)}.sock"

    def write(self, record: TunnelRecord) -> None:
        """Atomically replace the record (0600); readers never see a torn file."""
        fsutil.atomic_write(self.record_path(record.id), record.to_json().encode("utf-8"))

    def remove(self, tunnel_id: str) -> None:
        """Delete the record and the control socket; missing files are fine (idempotent)."""
        for path in (self.record_path(tunnel_id), self.socket_path(tunnel_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def get(self, tunnel_id: str) -> TunnelRecord:
        """The record of ``tunnel_id`` as stored (not checked for liveness)."""
        try:
            text = fsutil.read_trusted(self.record_path(tunnel_id))
        except FileNotFoundError:
            raise TunnelNotFound(f"no tunnel with id {tunnel_id}") from None
        return TunnelRecord.from_json(text)

    @staticmethod
    def is_live(record: TunnelRecord) -> bool:
        return process_matches(record.pid, record.pid_start_time)

    def load_all(self) -> LoadResult:
        """Live records sorted by start, how many stale or unreadable records were pruned, and
        the ids of unreadable records whose tunnel is still running (reported, not pruned)."""
        live: list[TunnelRecord] = []
        corrupt: list[str] = []
        pruned = 0
        for path in sorted(self.dir.glob("st-*.json")):
            try:
                record = TunnelRecord.from_json(fsutil.read_trusted(path))
            except FileNotFoundError:
                continue  # the tunnel removed it while we were listing: it stopped, not stale
            except (StateError, OSError):
                if self.owner_running(path):
                    corrupt.append(path.stem)
                else:
                    pruned += self._prune_path(path)
                continue
            if record.id != path.stem:
                pruned += self._prune_path(path)
            elif self.is_live(record):
                live.append(record)
            else:
                pruned += self.prune_lost(record)
        live.sort(key=lambda r: (r.started_at, r.id))
        return LoadResult(live, pruned, tuple(corrupt))

    def owner_running(self, path: Path) -> bool:
        """Whether the tunnel of an unreadable record still runs: the pid and start time that can
        still be read from it match a live process of ours, or its control socket answers. A
        torn or truncated record of a live tunnel must never cost it its socket."""
        if ID_RE.fullmatch(path.stem) is None:
            return False
        try:
            raw = fsutil.read_regular(path, _RECORD_MAX_BYTES)
        except OSError:
            raw = None
        text = "" if raw is None else raw.decode("utf-8", "replace")
        pid = _PID_RE.search(text)
        if pid is not None:
            start = _START_RE.search(text)
            if start is not None and process_matches(int(pid.group(1)), float(start.group(1))):
                return True
        return control.answers(path.with_suffix(".sock"))

    def _audit_lost(self, record: TunnelRecord) -> None:
        """A tunnel killed with -9 never wrote its own ``stopped`` line; say what became of it."""
        AuditLog(self._audit_path).write(
            "stopped",
            record.id,
            reason="lost",
            detail="its process was gone; the stale record was removed",
        )

    def prune_lost(self, record: TunnelRecord) -> int:
        """Remove a dead tunnel's leftovers and audit its end (1), or leave them (0) when the
        state dir refuses: listing must still work on a read-only or full disk. Every command
        that finds a tunnel gone comes here, so its end is in the log whichever looked first."""
        try:
            self.record_path(record.id).unlink()  # the claim: whoever removes it audits
        except OSError:
            # Gone already (the share removed it as it ended, and audited that, or another
            # command pruned it first), or the state dir refuses: left for a later command.
            return 0
        with contextlib.suppress(OSError):
            self.socket_path(record.id).unlink()
        remove_token_files(record.token_files, record.token_hash_prefix)
        with contextlib.suppress(OSError):
            self._audit_lost(record)
        return 1

    def _prune_path(self, path: Path) -> int:
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if ID_RE.fullmatch(path.stem):
                with contextlib.suppress(FileNotFoundError):
                    path.with_suffix(".sock").unlink()
        except OSError:
            return 0  # a read-only or full state dir: left for a later list
        return 1
