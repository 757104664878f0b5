"""The terminal side of ``share``: prompts, the started block, live status and event lines.

With ``--json`` stdout carries only the JSON events of DESIGN §3.3; every human line goes to
stderr in both modes, so piping stdout never captures prompts or status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import click

from safetunnel.durations import format_remaining
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.summary import (
    ShareSummary,
    accepts_typed,
    accepts_yes,
    confirmation_block,
    started_block,
    typed_prompt,
)
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.ssh.target import SSHTarget

JSON_EVENTS = {"started", "connection", "warning", "stopped"}
STOP_TEXT = {
    "ttl": "the time limit was reached",
    "idle": "the idle limit was reached",
    "killed": "it was killed",
    "signal": "a signal asked it to",
    "ssh-lost": "the SSH connection was lost",
    "max-failures": "too many refused attempts (--max-failures)",
    "error": "an error",
}


def human_size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class ConsoleUI:
    """Implements ``sharing.ShareUI`` for a terminal (or a pipe, where it never prompts)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._status_shown = False
        self._tty = sys.stderr.isatty()
        self._tunnel: Tunnel | None = None
        self._summary: ShareSummary | None = None

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
        return self._ask("Type 'yes' to trust and remember this key").strip() == "yes"

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
        """The tunnel once the share flow has made it (before it starts), else None."""
        return self._tunnel

    def attach(self, tunnel: Tunnel, summary: ShareSummary) -> None:
        self._tunnel = tunnel
        self._summary = summary
        tunnel.add_sink(self.on_event)

    # -- events ----------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if self.as_json:
            if kind in JSON_EVENTS:
                click.echo(json.dumps(event, separators=(",", ":")))
            if kind == "started":
                self.say(f"Tunnel {event['id']} is up; events follow on stdout.")
            return
        if kind == "started" and self._tunnel is not None and self._summary is not None:
            summary = dataclasses.replace(self._summary, expires_at=self._tunnel.expires_at)
            self.say(
                started_block(
                    summary, event["remote_port"], event.get("token"), tunnel_id=event["id"]
                )
            )
        elif kind == "connection":
            mark = "allowed" if event["allowed"] else f"refused ({event.get('reason', 'denied')})"
            self.say(f"  {event['origin']} {event['protocol']}: {mark}")
        elif kind == "warning":
            self.say(f"Warning: tunnel {event['id']} {event['message']}.")
        elif kind == "stopped":
            why = STOP_TEXT.get(event["reason"], event["reason"])
            self.say(f"Tunnel {event['id']} stopped because {why}.")

    def status_line(self, tunnel: Tunnel) -> None:
        if not self._tty or self.as_json:
            return
        snap = tunnel.stats.snapshot()
        text = (
            f"{format_remaining(tunnel.remaining)} left · {snap['connections']} open · "
            f"in {human_size(snap['bytes_in'])} · out {human_size(snap['bytes_out'])}"
            " · Ctrl-C stops"
        )
        sys.stderr.write("\r\x1b[2K" + text)
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

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "started" and self._ready_fd is not None:
            fd, self._ready_fd = self._ready_fd, None
            with os.fdopen(fd, "w") as ready:
                ready.write(json.dumps(event) + "\n")
            event = {k: v for k, v in event.items() if k not in {"token", "url"}}
        if event.get("event") in JSON_EVENTS:
            click.echo(json.dumps(event, separators=(",", ":")))
