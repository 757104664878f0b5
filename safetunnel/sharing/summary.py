"""What a share is about to do, shown before anything becomes reachable: the confirmation block.

Pure: values in, text out. No prompts (they live in cli/), no clock (expiry comes in as an aware
datetime), no logging. The block shown once the share is up lives in
:mod:`safetunnel.sharing.started`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Literal

from safetunnel.addresses import bracket_host, format_hostport
from safetunnel.durations import format_duration
from safetunnel.sharing.blocktext import cmd, idle_text, printable, row, warn
from safetunnel.sharing.preflight import Risk, ServiceInfo
from safetunnel.ssh.engine import HostKeyState

GateProtocol = Literal["auto", "http", "tcp"]

CONFIRM_PROMPT = "Share it? [y/N]"
_LOOPBACK_BINDS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class TlsShown:
    """What the user is told about the share's TLS: a made certificate's pin (None until it is
    made), or the subject, names and end of the user's own certificate."""

    pin: str | None
    made: bool
    subject: str
    names: tuple[str, ...]
    not_after: datetime | None


@dataclass(frozen=True)
class ShareSummary:
    """Everything the user must see before saying yes.

    ``expires_at`` is an aware datetime; before start it is a preview (now + TTL), so the CLI
    passes ``dataclasses.replace(summary, expires_at=...)`` with the real one to
    :func:`~safetunnel.sharing.started.started_block`. ``local_tz`` None means the system's
    local zone.
    """

    service: ServiceInfo
    ssh_user: str
    ssh_hostname: str
    ssh_port: int
    via_builtin: bool
    host_key_state: HostKeyState
    fingerprint: str
    ttl_seconds: int
    expires_at: datetime
    remote_bind: str = "127.0.0.1"
    remote_port: int = 0  # 0: the server picks, reported after start
    protocol: GateProtocol = "auto"
    idle_seconds: int | None = None
    max_connections: int | None = None
    risks: tuple[Risk, ...] = ()
    token_file: str | None = None
    key_type: str | None = None  # "ssh-ed25519" etc., shown before the fingerprint
    ssh_destination: str = ""  # the host as the sharer named it (alias or typed URI), for ssh -L
    local_tz: tzinfo | None = None
    tls: TlsShown | None = None  # None: the remote side speaks plain bytes

    @property
    def public(self) -> bool:
        return self.remote_bind not in _LOOPBACK_BINDS

    @property
    def ssh_display(self) -> str:
        return f"{self.ssh_user}@{format_hostport(self.ssh_hostname, self.ssh_port)}"

    @property
    def expires_local(self) -> str:
        """``14:30:00 CET 2026-11-29 (13:30:00 UTC)``: both, so nobody converts zones in a hurry."""
        local = self.expires_at.astimezone(self.local_tz)
        utc = self.expires_at.astimezone(UTC)
        zone = local.tzname() or local.strftime("%z")
        text = f"{local:%H:%M:%S} {zone} {local:%Y-%m-%d}"
        if local.utcoffset() == utc.utcoffset():
            return text  # the local zone is UTC: saying it twice only adds noise
        utc_day = "" if utc.date() == local.date() else f" {utc:%Y-%m-%d}"
        return f"{text} ({utc:%H:%M:%S} UTC{utc_day})"


def typed_prompt(summary: ShareSummary) -> str:
    port = summary.service.port
    return f"This share is risky. Type the port number ({port}) to share it anyway:"


def accepts_yes(answer: str) -> bool:
    """The y/N answer; anything but y/yes (including empty) is No."""
    return answer.strip().lower() in {"y", "yes"}


def accepts_typed(summary: ShareSummary, answer: str) -> bool:
    return answer.strip() == str(summary.service.port)


def confirmation_block(summary: ShareSummary) -> str:
    """The one block shown before anything becomes reachable."""
    service = summary.service
    lines = [f"About to share {service.address}: {_owner(service)}", *_service_lines(summary)]
    lines += _ssh_lines(summary)
    lines.append(
        row(
            "access",
            "every connection must present the access token made for this "
            "share" + _gate_mode(summary.protocol),
        )
    )
    if summary.tls is not None:
        lines += tls_lines(summary.tls)
    lines.append(
        row(
            "until",
            f"{format_duration(summary.ttl_seconds)} after start: about {summary.expires_local}",
        )
    )
    lines.append(row("limits", f"{idle_text(summary.idle_seconds)}; {_cap(summary)}"))
    lines += [warn("!", risk.message) for risk in summary.risks if risk.code != "already-exposed"]
    return "\n".join(lines)


def tls_lines(tls: TlsShown) -> list[str]:
    """What recipients are shown when they connect, and the pin they check it by (a line of its
    own, never wrapped: it is copied into curl and compared by eye)."""
    if not tls.made:
        names = ", ".join(tls.names) or "no subjectAltName"
        until = f"{tls.not_after:%Y-%m-%d %H:%M} UTC" if tls.not_after else "?"
        return [row("tls", f"your certificate {tls.subject} ({names}), valid until {until}")]
    if tls.pin is None:
        return [row("tls", "a certificate made for this share; its pin is shown once it starts")]
    made = row("tls", "a certificate made for this share, checked by its public-key pin:")
    return [made, cmd("tls pin", tls.pin)]


def _owner(service: ServiceInfo) -> str:
    if service.pid is None:
        return "owned by a process this user cannot see"
    # Whoever runs the listener names its process: it must not write into the block.
    name = printable(service.process) if service.process else "unknown process"
    user = f", user {printable(service.user)}" if service.user else ""
    return f"{name} (pid {service.pid}{user})"


def _service_lines(summary: ShareSummary) -> list[str]:
    service = summary.service
    if service.listen_addresses:
        listens = "listens on " + ", ".join(service.listen_addresses)
    else:
        listens = "its listening socket is not visible to this user, so exposure is unknown"
    lines = [row("service", f"{listens}; protocol: {_guess(service)}")]
    if service.exposed:
        lines.append(
            warn(
                "!!",
                "ALREADY EXPOSED: it listens beyond loopback; other machines "
                "reach it directly, no token needed",
            )
        )
    return lines


def _guess(service: ServiceInfo) -> str:
    if service.service_kind and service.guess_basis:
        return f"probably {service.service_kind} (from the {service.guess_basis})"
    if service.protocol_guess == "unknown":
        return "unknown (the probe sends nothing to your service)"
    return service.protocol_guess


def _gate_mode(protocol: GateProtocol) -> str:
    return {
        "auto": "; HTTP or raw TCP",
        "http": "; HTTP only",
        "tcp": "; raw TCP only",
    }[protocol]


def _ssh_lines(summary: ShareSummary) -> list[str]:
    """Where the remote end listens and, above all, who can reach it."""
    port = str(summary.remote_port) if summary.remote_port else "<port picked by the server>"
    key = f"{summary.key_type} {summary.fingerprint}" if summary.key_type else summary.fingerprint
    host = summary.ssh_hostname
    if summary.via_builtin:
        via = "the built-in SSH gateway in this process (no external SSH server)"
        where = f"127.0.0.1:{port} on this machine"
        who = "only programs on this machine (loopback); nothing leaves this computer"
        if summary.public:
            where = f"all interfaces of this machine, port {port}"
            who = "ANYONE who can reach this machine on that port"
    else:
        via = f"SSH {summary.ssh_display}"
        bind = summary.remote_bind
        where = f"{bracket_host(bind)}:{port} on {host}"
        who = f"only users and processes on {host} itself (or colleagues via ssh -L)"
        if summary.public:
            where = f"all interfaces of {host}, port {port} (bind {summary.remote_bind})"
            who = f"ANYONE who can reach {host} on that port, from any network that routes there"
    key_line = row("host key", f"{key}, {_key_state(summary.host_key_state)}")
    return [row("via", via), key_line, row("remote", where), row("who", who)]


def _key_state(state: HostKeyState) -> str:
    return {
        "pinned": "matches the pinned key",
        "certified": "certified by a CA that your known_hosts trusts (@cert-authority)",
        "newly-trusted": "trusted just now, on first use",
        "builtin": "ephemeral, made for this share",
    }[state]


def _cap(summary: ShareSummary) -> str:
    if summary.max_connections is None:
        return "no connection cap"
    return f"at most {summary.max_connections} connections at a time"


__all__ = [
    "CONFIRM_PROMPT",
    "ShareSummary",
    "TlsShown",
    "accepts_typed",
    "accepts_yes",
    "confirmation_block",
    "typed_prompt",
]
