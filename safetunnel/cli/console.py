"""The terminal side of ``share``: prompts, the started block, live status and event lines.

With ``--json`` stdout carries only the JSON events, one per line; every human line goes to
stderr in both modes, so piping stdout never captures prompts or status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import click

from safetunnel.cli.render import closed_line, human_bytes, request_line
from safetunnel.durations import format_remaining
from safetunnel.hosts import answers
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing import events
from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.observers import TunnelObserver
from safetunnel.sharing.started import started_block
from safetunnel.sharing.summary import (
    ShareSummary,
    accepts_typed,
    accepts_yes,
    confirmation_block,
    typed_prompt,
)
from safetunnel.sharing.traffic import SERVICE_UP
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.ssh.target import SSHTarget
from safetunnel.timefmt import parse_iso_z

# The kinds ``--json`` prints (every kind a tunnel reports).
JSON_EVENTS = {
    "started",
    "connection",
    "connection-closed",
    "request",
    "warning",
    "reconnecting",
    "reconnected",
    "stopped",
}


def status_text(remaining: float, snapshot: dict[str, Any]) -> str:
    """The live status line; sizes in KiB like ``safetunnel status``."""
    return (
        f"{format_remaining(remaining)} left · {snapshot['connections']} open · "
        f"in {human_bytes(snapshot['bytes_in'])} · out {human_bytes(snapshot['bytes_out'])}"
        " · Ctrl-C stops"
    )


def event_text(event: TunnelEvent, summary: ShareSummary | None) -> str | None:
    """The human line (or block) for one event; None for events shown only in the log."""
    if isinstance(event, events.Started):
        if summary is None:
            return None
        summary = dataclasses.replace(summary, expires_at=parse_iso_z(event.expires_at))
        return started_block(
            summary, event.remote_port, event.token, tunnel_id=event.id, ticket=event.ticket
        )
    if isinstance(event, events.Connection):
        mark = "allowed" if event.allowed else f"refused ({event.reason or 'denied'})"
        if event.recipient:
            mark += f" [{event.recipient}]"
        return f"  {event.origin} {event.protocol}: {mark}"
    if isinstance(event, events.Request):
        return request_line(event.to_json())
    if isinstance(event, events.ConnectionClosed):
        return closed_line(event.to_json()) if event.protocol == "tcp" and event.allowed else None
    if isinstance(event, events.Warning):
        if event.code == SERVICE_UP:
            return f"Tunnel {event.id} {event.message}."
        return f"Warning: tunnel {event.id} {event.message}."
    if isinstance(event, events.Reconnecting):
        return (
            f"SSH connection lost ({event.error}); reconnecting in {event.delay:g}s"
            f" (attempt {event.attempt}, remote port {event.remote_port})..."
        )
    if isinstance(event, events.Reconnected):
        return f"Reconnected (attempt {event.attempt}); serving on remote port {event.remote_port}."
    if isinstance(event, events.Stopped):
        return f"Tunnel {event.id} stopped because {event.reason.text}."
    return None


# One encoder for every line: json.dumps with any non-default argument builds a new one per call.
# An event's JSON is one flat dict: the check for a container that holds itself only costs.
_COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def json_line(event: TunnelEvent | dict[str, Any]) -> str:
    """One ``--json`` line: compact, in the event's own key order."""
    data = event if isinstance(event, dict) else event.to_json()
    return _COMPACT.encode(data)


def print_json(event: TunnelEvent | dict[str, Any]) -> None:
    """One ``--json`` line on stdout. Not click.echo: it probes the stream (terminal, colours)
    on every call, and a busy share writes a line or two per connection; JSON has nothing for
    it to strip."""
    print_lines([json_line(event)])


def print_lines(lines: list[str]) -> None:
    """Lines on stdout with one write, whatever its buffering (``PYTHONUNBUFFERED`` makes each
    ``write`` a system call)."""
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


class ConsoleUI:
    """Implements ``sharing.ShareUI`` for a terminal (or a pipe, where it never prompts)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._status_shown = False
        self._tty = sys.stderr.isatty()
        self._tunnel: Tunnel | None = None
        self._summary: ShareSummary | None = None
        self._json_lines: list[str] = []  # written at flush(), after each batch of events

    preconfirmed = False  # the user answers here

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty()

    def say(self, text: str) -> None:
        self.clear_status()
        click.echo(text, err=True)

    def trust_host_key(self, target: SSHTarget, algorithm: str, fingerprint: str) -> bool:
        self.say(
            f"The SSH host {target.display} is not known yet.\n"
            f"  host key: {algorithm} {fingerprint}\n"
            "Check this fingerprint with the host's owner before you trust it."
        )
        return answers.ask_trust(self._ask, fingerprint)

    def show(self, summary: ShareSummary) -> None:
        self.say(confirmation_block(summary))

    def confirm(self, summary: ShareSummary, typed: bool) -> bool:
        self.say(confirmation_block(summary))
        question = typed_prompt(summary).rstrip(":") if typed else "Share it? [y/N]"
        answer = self._ask(question)
        return accepts_typed(summary, answer) if typed else accepts_yes(answer)

    def _ask(self, question: str) -> str:
        """One answer; end of input (Ctrl-D) is no answer, which every question reads as No.

        Ctrl-C does not come here as an answer: the share's signal handler ends it with 130.
        """
        try:
            answer: str = click.prompt(question, default="", show_default=False, err=True)
        except click.exceptions.Abort:
            click.echo("", err=True)
            return ""
        return answer

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource:
        if not self.interactive:
            return KeyringAuthSource(notify=self.say, host_label=target.label or target.display)
        return KeyringAuthSource(
            prompt=self._secret_prompt,
            confirm=self._yes_no,
            notify=self.say,
            host_label=target.label or target.display,
        )

    def _secret_prompt(self, question: str) -> str | None:
        self.clear_status()
        answer: str = click.prompt(
            question, hide_input=True, default="", show_default=False, err=True
        )
        return answer or None

    def _yes_no(self, question: str) -> bool:
        return click.confirm(question, default=False, err=True)

    @property
    def tunnel(self) -> Tunnel | None:
        """The tunnel once it is up (the signal handler stops it from then on), else None."""
        return self._tunnel

    # -- observing the tunnel (see safetunnel.sharing.observers) --------------------------------

    def observer(self, summary: ShareSummary) -> TunnelObserver[Tunnel]:
        self._summary = summary
        return self

    def started(self, tunnel: Tunnel) -> None:
        self._tunnel = tunnel

    def event(self, event: TunnelEvent) -> None:
        if self.as_json:
            if event.kind in JSON_EVENTS:
                self._json_lines.append(json_line(event))
            if isinstance(event, events.Started):
                self.say(f"Tunnel {event.id} is up; events follow on stdout.")
            return
        text = event_text(event, self._summary)
        if text is not None:
            self.say(text)

    def flush(self) -> None:
        """The tunnel delivered a batch of events: their lines go out now, with one write."""
        lines, self._json_lines = self._json_lines, []
        if lines:
            print_lines(lines)

    def close(self) -> None:
        self.clear_status()

    def status_line(self, tunnel: Tunnel) -> None:
        if not self._tty or self.as_json:
            return
        sys.stderr.write("\r\x1b[2K" + status_text(tunnel.remaining, tunnel.stats.snapshot()))
        sys.stderr.flush()
        self._status_shown = True

    def clear_status(self) -> None:
        if self._status_shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._status_shown = False


class BackgroundChildUI(ConsoleUI):
    """The detached process of ``--background``: the foreground already asked everything.

    Its stdout and stderr are the log file, so the token goes only to the foreground through the
    ready pipe; the log gets the same events without it.
    """

    preconfirmed = True

    def __init__(self, ready_fd: int) -> None:
        super().__init__(as_json=True)
        self._ready_fd: int | None = ready_fd

    @property
    def interactive(self) -> bool:
        return False

    def event(self, event: TunnelEvent) -> None:
        data = event.to_json()
        if isinstance(event, events.Started) and self._ready_fd is not None:
            fd, self._ready_fd = self._ready_fd, None
            with os.fdopen(fd, "w") as ready:
                ready.write(json.dumps(data) + "\n")
            data = {k: v for k, v in data.items() if k not in {"token", "url", "ticket"}}
        if event.kind in JSON_EVENTS:
            self._json_lines.append(json_line(data))
