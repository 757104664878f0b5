"""Pre-flight: what exactly is about to be shared, and how risky is it.

``parse_local`` and ``assess_risks`` are pure. ``probe_local`` is the one impure step: it opens a
single TCP connection to the service, sends nothing, waits briefly for a server-first greeting and
closes, then asks psutil who owns the listening socket (see :mod:`safetunnel.sharing.owner`).
Sending a request (even ``HEAD /``) could change state in the user's service or show up in its
logs as traffic nobody sent, so it is never done; the HTTP guess comes from the well-known-port
table instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConfigError, NothingListening
from safetunnel.sharing.owner import is_loopback_ip, listeners_on, pick_owner, process_details
from safetunnel.sharing.ports import HTTP_PORTS, SENSITIVE_PORTS, TLS_PORTS, classify_greeting

LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"
# A TTL above this is flagged: the share outlives the moment someone is watching it.
LONG_TTL_SECONDS = 4 * 3600
GREETING_WAIT = 0.15
_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOST_PORT_RE = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>[^:]*)")
_OUT_OF_SCOPE = "safetunnel only shares services on this machine's loopback (127.0.0.1 or [::1])"


@dataclass(frozen=True)
class ServiceInfo:
    """What answers on the local port, as far as this machine lets us see.

    ``pid``/``process``/``user`` are None when the OS does not reveal the owner. ``exposed`` is
    True when the same port also listens on a non-loopback address (0.0.0.0, ::, a LAN IP), i.e.
    it is reachable from other machines without any token. An empty ``listen_addresses`` means
    the listening socket was not visible, so exposure is unknown rather than ruled out.
    """

    host: str
    port: int
    pid: int | None
    process: str | None
    user: str | None
    exposed: bool
    listen_addresses: tuple[str, ...]
    protocol_guess: Literal["http", "tcp", "unknown"]
    service_kind: str | None = None  # "SSH", "Redis", "HTTPS (TLS)"... when known
    guess_basis: str | None = None  # "server greeting" or "well-known port"

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)


@dataclass(frozen=True)
class Risk:
    """One reason to think twice. ``severity="risk"`` requires the typed confirmation;
    ``"notice"`` is shown loudly but does not, because sharing does not make it worse."""

    code: str
    message: str
    severity: Literal["risk", "notice"] = "risk"


def parse_local(text: str) -> tuple[str, int]:
    """Read ``PORT``, ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT``.

    ``localhost`` means 127.0.0.1 (resolving it could pick ::1 on one machine and 127.0.0.1 on
    another). Anything else raises :class:`ConfigError`.
    """
    raw = text.strip()
    if _PORT_RE.fullmatch(raw):
        return LOOPBACK_V4, _parse_port(raw, text)
    match = _HOST_PORT_RE.fullmatch(raw)
    if match is None:
        raise ConfigError(
            f"cannot read {text!r} as a local port",
            hint="use PORT, 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (IPv6 in brackets)",
        )
    port = _parse_port(match["port"], text)
    host = match["v6"] if match["v6"] is not None else match["host"]
    if host.lower() == "localhost" or host == LOOPBACK_V4:
        return LOOPBACK_V4, port
    if match["v6"] is not None and _is_v6_loopback(host):
        return LOOPBACK_V6, port
    raise ConfigError(
        f"{host or '(empty host)'!s} is not a loopback address: {_OUT_OF_SCOPE}",
        hint=f"share 127.0.0.1:{port} or [::1]:{port}; bind the service there if needed",
    )


def _parse_port(raw: str, text: str) -> int:
    if not _PORT_RE.fullmatch(raw) or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(raw)


def _is_v6_loopback(host: str) -> bool:
    try:
        return ipaddress.IPv6Address(host).is_loopback
    except ValueError:
        return False


def probe_local(
    host: str, port: int, timeout: float = 1.0, *, greeting_wait: float = GREETING_WAIT
) -> ServiceInfo:
    """Check that something accepts TCP connections on ``host:port`` and describe it.

    Raises :class:`NothingListening` (exit 7) when nothing does.
    """
    greeting = _connect_and_listen(host, port, timeout, greeting_wait)
    guess, kind, basis = _guess_protocol(port, greeting)
    listeners = listeners_on(port)
    owner = pick_owner(listeners, host)
    pid = owner.pid if owner is not None else None
    process, user = process_details(pid)
    addresses = tuple(sorted({format_hostport(c.ip, c.port) for c in listeners}))
    exposed = any(not is_loopback_ip(c.ip) for c in listeners)
    return ServiceInfo(host, port, pid, process, user, exposed, addresses, guess, kind, basis)


def _connect_and_listen(host: str, port: int, timeout: float, wait: float) -> bytes | None:
    """Connect, send nothing, return the server's first bytes (None if it stays silent)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise _nothing_listening(host, port, exc) from exc
    with sock:
        sock.settimeout(wait)
        try:
            greeting: bytes | None = sock.recv(4096)
        except TimeoutError:
            greeting = None
        except OSError:
            return None  # reset right after accept: it exists but says nothing useful
        _drain(sock)
        # Half-close first so the service sees an ordinary EOF, not a reset.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    return greeting


def _drain(sock: socket.socket) -> None:
    """Read whatever else already arrived: closing with unread data makes the kernel send RST."""
    sock.setblocking(False)
    try:
        for _ in range(16):
            if not sock.recv(65536):
                return
    except OSError:
        return


# A service on "localhost" often listens on just one of the two (Node's servers pick [::1]).
_OTHER_LOOPBACK = {"127.0.0.1": "::1", "::1": "127.0.0.1"}


def _nothing_listening(host: str, port: int, exc: OSError) -> NothingListening:
    why = "did not answer in time" if isinstance(exc, TimeoutError) else "refused the connection"
    other = _OTHER_LOOPBACK.get(host)
    if other is not None and _accepts(other, port):
        there = format_hostport(other, port)
        argument = str(port) if other == "127.0.0.1" else f"'{there}'"
        return NothingListening(
            f"nothing is listening on {format_hostport(host, port)} ({why}), "
            f"but something is on {there}",
            hint=f"to share that, run `safetunnel share {argument}` with your other options",
        )
    return NothingListening(
        f"nothing is listening on {format_hostport(host, port)} ({why})",
        hint=(
            f"start the service first; for a quick test server run "
            f"`python3 -m http.server {port} --bind {host}`"
        ),
    )


def _accepts(host: str, port: int) -> bool:
    """Whether ``host:port`` takes a connection; it is closed again at once, sending nothing
    (and, as in the probe, with what the service already said read, so it sees no reset)."""
    try:
        sock = socket.create_connection((host, port), timeout=1.0)
    except OSError:
        return False
    with sock:
        _drain(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    return True


def _guess_protocol(
    port: int, greeting: bytes | None
) -> tuple[Literal["http", "tcp", "unknown"], str | None, str | None]:
    if greeting:
        return "tcp", classify_greeting(greeting), "server greeting"
    if port in HTTP_PORTS:
        return "http", "HTTP", "well-known port"
    if port in TLS_PORTS:
        return "tcp", TLS_PORTS[port], "well-known port"
    if port in SENSITIVE_PORTS:
        return "tcp", SENSITIVE_PORTS[port], "well-known port"
    return "unknown", None, None


def needs_typed(risks: Iterable[Risk]) -> bool:
    """Any real risk (not a mere notice) needs the typed confirmation, not just y/N."""
    return any(risk.severity == "risk" for risk in risks)


def assess_risks(
    port: int,
    public: bool,
    ttl_seconds: int,
    exposed: bool,
    *,
    service_kind: str | None = None,
    tls: bool = True,
) -> list[Risk]:
    """The reasons this share deserves a second look. Pure.

    ``service_kind`` (from a server greeting) flags an admin protocol on an unusual port too.
    ``tls`` False on a public share means the token crosses networks in clear text.
    """
    risks: list[Risk] = []
    if exposed:
        risks.append(Risk("already-exposed", _EXPOSED_MESSAGE, "notice"))
    if public:
        risks.append(Risk("public", _PUBLIC_MESSAGE))
        if not tls:
            risks.append(Risk(NO_TLS, _NO_TLS_MESSAGE))
    sensitive = SENSITIVE_PORTS.get(port) or _sensitive_kind(service_kind)
    if sensitive is not None:
        risks.append(Risk("sensitive-port", _sensitive_message(port, sensitive)))
    if ttl_seconds > LONG_TTL_SECONDS:
        hours = ttl_seconds / 3600
        risks.append(
            Risk(
                "long-ttl",
                f"TTL of {hours:g}h is over 4h: it stays open long after "
                "you stop watching; prefer a short TTL and `extend`",
            )
        )
    return risks


_EXPOSED_MESSAGE = (
    "ALREADY EXPOSED: the service also listens on a non-loopback address, so other machines "
    "can reach it directly, with no token and no tunnel"
)
NO_TLS = "no-tls"
_NO_TLS_MESSAGE = (
    "--no-tls: the token travels in clear text; anyone on a network between a recipient and "
    "the SSH host can read it and use the share"
)
_PUBLIC_MESSAGE = (
    "--public: the remote port listens on all interfaces of the SSH host; anyone who can reach "
    "that host can connect and try the token"
)


def _sensitive_kind(kind: str | None) -> str | None:
    return kind if kind in set(SENSITIVE_PORTS.values()) else None


def _sensitive_message(port: int, kind: str) -> str:
    return (
        f"port {port} looks like {kind}: an admin/database protocol; whoever holds the "
        "token gets the same access you have"
    )
