"""The confirmation block and the "started" block: what becomes reachable, by whom, until when.

Pure: values in, text out. No prompts (they live in cli/), no clock (expiry comes in as an aware
datetime), no logging, so the token passed to :func:`started_block` goes nowhere but the return
value.
"""

from __future__ import annotations

import shlex
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Literal

from safetunnel.durations import format_duration
from safetunnel.sharing.preflight import Risk, ServiceInfo, format_address, needs_typed
from safetunnel.tokens import looks_like_token

HostKeyState = Literal["pinned", "newly-trusted", "builtin"]
GateProtocol = Literal["auto", "http", "tcp"]

CONFIRM_PROMPT = "Share it? [y/N]"
WIDTH = 100
_LABEL = 13  # label column, so values line up and wrapped lines stay readable
_LOOPBACK_BINDS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class ShareSummary:
    """Everything the user must see before saying yes.

    ``expires_at`` is an aware datetime; before start it is a preview (now + TTL), so the CLI
    passes ``dataclasses.replace(summary, expires_at=...)`` with the real one to
    :func:`started_block`. ``local_tz`` None means the system's local zone.
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
    local_tz: tzinfo | None = None

    @property
    def public(self) -> bool:
        return self.remote_bind not in _LOOPBACK_BINDS

    @property
    def ssh_display(self) -> str:
        return f"{self.ssh_user}@{format_address(self.ssh_hostname, self.ssh_port)}"

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


def needs_typed_confirmation(summary: ShareSummary) -> bool:
    """True when any risk (not a mere notice) applies: y/N is then not enough."""
    return needs_typed(summary.risks)


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
        _row(
            "access",
            "every connection must present the access token made for this "
            "share" + _gate_mode(summary.protocol),
        )
    )
    lines.append(
        _row(
            "until",
            f"{format_duration(summary.ttl_seconds)} after start: about {summary.expires_local}",
        )
    )
    lines.append(_row("limits", f"{_idle(summary)}; {_cap(summary)}"))
    lines += [_warn("!", risk.message) for risk in summary.risks if risk.code != "already-exposed"]
    return "\n".join(lines)


def _owner(service: ServiceInfo) -> str:
    if service.pid is None:
        return "owned by a process this user cannot see"
    name = service.process or "unknown process"
    user = f", user {service.user}" if service.user else ""
    return f"{name} (pid {service.pid}{user})"


def _service_lines(summary: ShareSummary) -> list[str]:
    service = summary.service
    if service.listen_addresses:
        listens = "listens on " + ", ".join(service.listen_addresses)
    else:
        listens = "its listening socket is not visible to this user, so exposure is unknown"
    lines = [_row("service", f"{listens}; protocol: {_guess(service)}")]
    if service.exposed:
        lines.append(
            _warn(
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
        where = f"{f'[{bind}]' if ':' in bind else bind}:{port} on {host}"
        who = f"only users and processes on {host} itself (or colleagues via ssh -L)"
        if summary.public:
            where = f"all interfaces of {host}, port {port} (bind {summary.remote_bind})"
            who = f"ANYONE who can reach {host} on that port, from any network that routes there"
    key_line = _row("host key", f"{key}, {_key_state(summary.host_key_state)}")
    return [_row("via", via), key_line, _row("remote", where), _row("who", who)]


def _key_state(state: HostKeyState) -> str:
    return {
        "pinned": "matches the pinned key",
        "newly-trusted": "trusted just now, on first use",
        "builtin": "ephemeral, made for this share",
    }[state]


def _idle(summary: ShareSummary) -> str:
    if summary.idle_seconds is None:
        return "no idle limit"
    return f"stops after {format_duration(summary.idle_seconds)} without connections"


def _cap(summary: ShareSummary) -> str:
    if summary.max_connections is None:
        return "no connection cap"
    return f"at most {summary.max_connections} connections at a time"


def _row(label: str, text: str) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=f"  {label:<{_LABEL - 2}}",
        subsequent_indent=" " * _LABEL,
        break_on_hyphens=False,
    )


def _cmd(label: str, command: str) -> str:
    """A copy-paste line: never wrapped, a wrapped command breaks when pasted."""
    return f"  {label:<{_LABEL - 2}}{command}"


def _warn(mark: str, text: str) -> str:
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=f"  {mark} ",
        subsequent_indent=" " * (len(mark) + 3),
        break_on_hyphens=False,
    )


def started_block(
    summary: ShareSummary, remote_port: int, token: str | None, *, tunnel_id: str | None = None
) -> str:
    """What to tell the user once the forward is up: where, how to connect, until when.

    ``token`` None means it went to ``summary.token_file`` and is only referred to by path.
    """
    if token is None and summary.token_file is None:
        raise ValueError("started_block needs the token or a token_file")
    if token is not None and not looks_like_token(token):
        raise ValueError("not a safetunnel token")  # it is pasted into shell lines below
    url_host = _url_host(summary)
    base = f"http://{format_address(url_host, remote_port)}/"
    ref = _TokenRef(token, summary.token_file)
    name = f" (tunnel {tunnel_id})" if tunnel_id else ""
    lines = [f"Sharing {summary.service.address} at {_endpoint(summary, remote_port)}{name}"]
    lines.append(_row("token", ref.shown()))
    if _show_http(summary):
        lines.append(_cmd("curl", f'curl -H "X-Safetunnel-Token: {ref.inline()}" {base}'))
        lines.append(_cmd("link", f"{base}?safetunnel_token={ref.in_link()}"))
    if _show_tcp(summary):
        lines.append(
            _cmd(
                "raw TCP",
                f"{{ printf 'SAFETUNNEL %s\\n' \"{ref.inline()}\"; cat; }} "
                f"| nc {url_host} {remote_port}",
            )
        )
    lines += _where_lines(summary, remote_port)
    lines.append(_row("expires", f"{summary.expires_local}; {_idle(summary)}"))
    stop = f" (or: safetunnel kill {tunnel_id})" if tunnel_id else ""
    lines.append(f"Ctrl-C to stop{stop}.")
    return "\n".join(lines)


@dataclass(frozen=True)
class _TokenRef:
    """The token itself, or a shell reference to the file holding it."""

    token: str | None
    path: str | None

    def shown(self) -> str:
        if self.token is not None:
            return f"{self.token}  (shown once; only its hash is kept)"
        return f"written to {self.path} (not shown)"

    def inline(self) -> str:
        return self.token if self.token is not None else f"$(cat {shlex.quote(str(self.path))})"

    def in_link(self) -> str:
        return self.token if self.token is not None else f"<token from {self.path}>"


def _url_host(summary: ShareSummary) -> str:
    if summary.public:
        return summary.ssh_hostname
    return "127.0.0.1" if summary.via_builtin else summary.remote_bind


def _endpoint(summary: ShareSummary, remote_port: int) -> str:
    if summary.via_builtin:
        bind = summary.remote_bind if summary.public else "127.0.0.1"
        return f"{format_address(bind, remote_port)} on this machine"
    bind = summary.remote_bind
    return f"{format_address(bind, remote_port)} on {summary.ssh_hostname}"


def _show_http(summary: ShareSummary) -> bool:
    return summary.protocol == "http" or (
        summary.protocol == "auto" and summary.service.protocol_guess != "tcp"
    )


def _show_tcp(summary: ShareSummary) -> bool:
    return summary.protocol == "tcp" or (
        summary.protocol == "auto" and summary.service.protocol_guess != "http"
    )


def _where_lines(summary: ShareSummary, remote_port: int) -> list[str]:
    host = summary.ssh_hostname
    if summary.via_builtin:
        where = "this machine" if summary.public else "this machine only (loopback)"
        return [_row("where", f"{where}; the built-in gateway runs here")]
    if summary.public:
        return [_row("where", f"anywhere that can reach {host} on port {remote_port}")]
    port_opt = f"-p {summary.ssh_port} " if summary.ssh_port != 22 else ""
    bind = summary.remote_bind
    tunnel = f"ssh -N {port_opt}-L {remote_port}:{bind}:{remote_port} {summary.ssh_user}@{host}"
    return [
        _row("where", f"on {host}; from another machine, open this tunnel first:"),
        _cmd("ssh -L", tunnel),
    ]
