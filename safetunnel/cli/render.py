"""Rendering for the registry commands: plain-text tables and JSON. Pure: values in, text out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from safetunnel.addresses import bracket_host, format_hostport
from safetunnel.durations import format_remaining
from safetunnel.registry.records import TunnelRecord
from safetunnel.timefmt import parse_iso_z

LIST_HEADERS = ("ID", "LOCAL", "VIA", "REMOTE", "STATE", "EXPIRES IN", "CONNS", "PID")
LIST_JSON_KEYS = (
    "id",
    "pid",
    "local",
    "ssh_host",
    "remote_bind",
    "remote_port",
    "protocol",
    "started_at",
    "expires_at",
    "token_hash_prefix",
    "connections",
    "total_connections",
    "denied",
    "bytes_in",
    "bytes_out",
    "log_path",
    "engine",
    "state",
    "tls",
    "tls_pin",
)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing whitespace."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def remaining(expires_at: str, now: datetime) -> str:
    """``29m 58s`` until ``expires_at``; ``expired`` once past; ``?`` for an unreadable stamp."""
    try:
        seconds = (parse_iso_z(expires_at) - now).total_seconds()
    except (ValueError, TypeError):
        return "?"
    return format_remaining(seconds) if seconds > 0 else "expired"


def list_json(records: Sequence[TunnelRecord]) -> str:
    return to_json([{k: r.to_dict()[k] for k in LIST_JSON_KEYS} for r in records])


def list_table(records: Sequence[TunnelRecord], now: datetime) -> str:
    rows = [
        (
            r.id,
            r.local,
            r.ssh_host,
            format_hostport(r.remote_bind, r.remote_port),
            r.state,
            remaining(r.expires_at, now),
            f"{r.connections}/{r.total_connections}",
            r.pid,
        )
        for r in records
    ]
    return table(LIST_HEADERS, rows)


def human_bytes(count: object) -> str:
    if not isinstance(count, int | float):
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def status_text(status: Mapping[str, Any], now: datetime) -> str:
    """The human form of ``safetunnel status``: key facts, counters, then recent connections."""
    expires = str(status.get("expires_at", "?"))
    facts = [
        ("Tunnel", status.get("id")),
        ("PID", status.get("pid")),
        ("Local", status.get("local")),
        ("Via", status.get("ssh_host")),
        ("Engine", status.get("engine", "paramiko")),
        ("Remote", f"{bracket_host(str(status.get('remote_bind')))}:{status.get('remote_port')}"),
        ("State", status.get("state", "serving")),
        ("Protocol", status.get("protocol")),
        ("Started", status.get("started_at")),
        ("Expires", f"{expires} (in {remaining(expires, now)})"),
        (
            "Connections",
            f"{status.get('connections', 0)} open, "
            f"{status.get('total_connections', 0)} total, "
            f"{status.get('denied', 0)} denied",
        ),
        (
            "Traffic",
            f"{human_bytes(status.get('bytes_in', 0))} in, "
            f"{human_bytes(status.get('bytes_out', 0))} out",
        ),
        ("TLS", tls_text(status)),
        ("Token hash", status.get("token_hash_prefix")),
    ]
    if status.get("log_path"):
        facts.append(("Log", status["log_path"]))
    if not status.get("live", True):
        facts.append(("Live status", f"unavailable ({status.get('live_error', 'no answer')})"))
    width = max(len(k) for k, _ in facts) + 1
    lines = [f"{(k + ':').ljust(width)} {v}" for k, v in facts]
    if status.get("recipients"):
        lines += ["", "Recipients:", recipients_table(status["recipients"])]
    lines += ["", "Recent connections:", recent_table(status.get("recent") or [])]
    if status.get("requests"):
        lines += ["", "Recent requests:", requests_table(status["requests"])]
    return "\n".join(lines)


def tls_text(status: Mapping[str, Any]) -> str:
    """What the remote side speaks: the pin recipients check, the user's own certificate (a CA
    vouches for it), or plain bytes."""
    if status.get("tls_pin"):
        return f"pin {status['tls_pin']}"
    return "own certificate" if status.get("tls") else "no"


def recent_table(recent: Sequence[Mapping[str, Any]]) -> str:
    if not recent:
        return "  (none yet)"
    rows = [
        (
            c.get("origin", "?"),
            c.get("protocol", "?"),
            "allowed" if c.get("allowed") else "denied",
            c.get("reason") or "",
            human_bytes(c.get("bytes_in", 0)),
            human_bytes(c.get("bytes_out", 0)),
            f"{float(c.get('duration') or 0):.1f}s",
            c.get("recipient") or "",
        )
        for c in recent
    ]
    headers = ("ORIGIN", "PROTO", "RESULT", "REASON", "IN", "OUT", "DURATION", "RECIPIENT")
    return table(headers, rows)


def recipients_table(recipients: Sequence[Mapping[str, Any]]) -> str:
    """Who holds a token of this share: names only, never a token or its digest."""
    rows = [
        (
            r.get("name", "?"),
            r.get("created", "?"),
            str(r.get("connections", 0)),
            f"revoked {r['revoked']}" if r.get("revoked") else "active",
        )
        for r in recipients
    ]
    return table(("NAME", "CREATED", "CONNECTIONS", "STATE"), rows)


def elapsed(seconds: object) -> str:
    """``12 ms`` under a second, ``3.4 s`` under a minute, then ``2m 05s``."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else format_remaining(seconds)


def shown(value: object) -> str:
    """Text from a request line for a terminal: the gate already made it printable; this holds
    for whatever a record or an older writer says too."""
    return "".join(c if c.isprintable() and c != " " else "?" for c in str(value))


def request_line(request: Mapping[str, Any]) -> str:
    """One request in the sharer's live view."""
    return (
        f"  {shown(request.get('method', '?'))} {shown(request.get('path', '?'))}"
        f" {request.get('status', '?')} · {elapsed(request.get('duration'))}{_moved(request)}"
    )


def closed_line(connection: Mapping[str, Any]) -> str:
    """The end of a raw TCP connection in the live view: how long, how much."""
    return (
        f"  {connection.get('origin', '?')} {connection.get('protocol', '?')}: closed after"
        f" {elapsed(connection.get('duration'))}{_moved(connection)}"
    )


def _moved(entry: Mapping[str, Any]) -> str:
    return f" · in {human_bytes(entry.get('bytes_in'))} · out {human_bytes(entry.get('bytes_out'))}"


def requests_table(requests: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            shown(r.get("method", "?")),
            shown(r.get("path", "?")),
            r.get("status", "?"),
            elapsed(r.get("duration")),
            human_bytes(r.get("bytes_in", 0)),
            human_bytes(r.get("bytes_out", 0)),
        )
        for r in requests
    ]
    return table(("METHOD", "PATH", "STATUS", "TIME", "IN", "OUT"), rows)


def log_details(entry: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("ts", "event", "id"))


def log_line(entry: Mapping[str, Any]) -> str:
    """One audit entry as a fixed-width row, so ``log --follow`` can print rows as they come."""
    ts, tid, event = (str(entry.get(k, "?")) for k in ("ts", "id", "event"))
    return f"{ts:<20}  {tid:<9}  {event:<10}  {log_details(entry)}".rstrip()


def log_header() -> str:
    return log_line({"ts": "TIME", "id": "ID", "event": "EVENT", "details": "DETAILS"}).replace(
        "details=", ""
    )
