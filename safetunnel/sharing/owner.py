"""Who owns a listening port, as far as this machine lets us see: psutil's socket table.

Part of the pre-flight probe. Every function degrades to "unknown" (None, an empty list) rather
than fail, because a share must not be refused just because the OS hides other users' processes.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

import psutil


class Listener(NamedTuple):
    ip: str
    port: int
    pid: int | None


def listeners_on(port: int) -> list[Listener]:
    """Listening TCP sockets on ``port``, from the system table when the OS allows it."""
    try:
        conns = [(c.laddr, c.status, c.pid) for c in psutil.net_connections(kind="tcp")]
    except psutil.AccessDenied:
        conns = _own_process_connections()  # macOS without root: only our own user's processes
    return [
        Listener(laddr.ip, laddr.port, pid)
        for laddr, status, pid in conns
        if status == psutil.CONN_LISTEN and laddr and laddr.port == port
    ]


def _own_process_connections() -> list[tuple[Any, str, int | None]]:
    found: list[tuple[Any, str, int | None]] = []
    for proc in psutil.process_iter():
        try:
            # psutil < 6 only has the old name.
            lister = getattr(proc, "net_connections", None) or proc.connections
            found.extend((c.laddr, c.status, proc.pid) for c in lister(kind="tcp"))
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return found


def pick_owner(listeners: list[Listener], host: str) -> Listener | None:
    """The socket that actually takes connections to ``host``: exact bind, then the wildcard,
    even when this user cannot see its process (pid None): naming a visible process on another
    address instead would show the sharer a service other than the one shared (another
    user's squatting on 127.0.0.1 while the sharer's own server listens on ::1). Another
    address only when none of those is listed at all."""
    wildcard = "::" if ":" in host else "0.0.0.0"  # noqa: S104 - compared, not bound
    for wanted in (host, wildcard, "::"):
        for conn in listeners:
            if conn.ip == wanted:
                return conn
    return next((c for c in listeners if c.pid is not None), None)


def process_details(pid: int | None) -> tuple[str | None, str | None]:
    """Name and user of ``pid``; None for whatever the OS will not tell us."""
    if pid is None:
        return None, None
    try:
        proc = psutil.Process(pid)
        name: str | None = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None, None
    try:
        user: str | None = proc.username()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        user = None  # KeyError: a uid with no passwd entry (containers)
    return name, user


def is_loopback_ip(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False  # unparseable: do not claim it is safe
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
