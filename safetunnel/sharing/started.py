"""The block shown once a share is up: where it listens, how to connect, until when.

Pure: values in, text out; no clock and no logging, so the token passed to :func:`started_block`
goes nowhere but the return value.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from safetunnel.addresses import bracket_host, format_hostport
from safetunnel.sharing.blocktext import cmd, idle_text, row
from safetunnel.sharing.clientlines import NC_FREE_RELAY, ssh_forward_line
from safetunnel.sharing.summary import ShareSummary, tls_lines
from safetunnel.sharing.tokenfile import TICKET_SUFFIX
from safetunnel.tokens import looks_like_token


def started_block(
    summary: ShareSummary,
    remote_port: int,
    token: str | None,
    *,
    tunnel_id: str | None = None,
    ticket: str | None = None,
) -> str:
    """What to tell the user once the forward is up: where, how to connect, until when.

    ``token`` None means it went to ``summary.token_file`` and is only referred to by path.
    ``ticket`` (a secret like the token) is shown with how a recipient uses it.
    """
    if token is None and summary.token_file is None:
        raise ValueError("started_block needs the token or a token_file")
    if token is not None and not looks_like_token(token):
        raise ValueError("not a safetunnel token")  # it is pasted into shell lines below
    ref = _TokenRef(token, summary.token_file)
    name = f" (tunnel {tunnel_id})" if tunnel_id else ""
    lines = [f"Sharing {summary.service.address} at {_endpoint(summary, remote_port)}{name}"]
    lines.append(row("token", ref.shown()))
    if summary.tls is not None:
        lines += tls_lines(summary.tls)
    if ticket is None and summary.token_file is not None:
        lines.append(row("ticket", f"written to {summary.token_file}{TICKET_SUFFIX} (not shown)"))
    if ticket is not None:
        lines.append(cmd("ticket", ticket))
        # Read from stdin: on the command line it would be in `ps` and the shell's history.
        lines.append(cmd("recipient", "safetunnel connect -   (then paste the ticket)"))
    lines += _client_lines(summary, remote_port, ref)
    lines += _where_lines(summary, remote_port)
    lines.append(row("expires", f"{summary.expires_local}; {idle_text(summary.idle_seconds)}"))
    stop = f" (or: safetunnel kill {tunnel_id})" if tunnel_id else ""
    lines.append(f"Ctrl-C to stop{stop}.")
    return "\n".join(lines)


def _client_lines(summary: ShareSummary, remote_port: int, ref: _TokenRef) -> list[str]:
    """The curl line and link, and the raw-TCP lines (none over TLS: nc speaks no TLS; the
    ticket and `safetunnel connect` do)."""
    url_host = _url_host(summary)
    scheme = "http" if summary.tls is None else "https"
    base = f"{scheme}://{format_hostport(url_host, remote_port)}/"
    lines: list[str] = []
    if _show_http(summary):
        curl = f"curl -H @- {_curl_tls(summary)}{base}"
        lines.append(cmd("curl", f"{ref.lines('X-Safetunnel-Token: ')} | {curl}"))
        lines.append(cmd("link", f"{base}?safetunnel_token={ref.in_link()}"))
    if _show_tcp(summary) and summary.tls is None:
        tcp = f"{{ {ref.lines('SAFETUNNEL ')}; cat; }} | nc {url_host} {remote_port}"
        lines.append(cmd("raw TCP", tcp))
        lines.append(cmd("without nc", f"put this in place of nc: {NC_FREE_RELAY}"))
    return lines


@dataclass(frozen=True)
class _TokenRef:
    """The token itself, or a shell reference to the file holding it.

    Every local user can read every process's argv (``ps``), so in the printed command lines the
    token reaches curl and nc only through a pipe: written by ``echo``, a builtin of every common
    shell (bash, dash, zsh, ksh, fish, csh) and so never a process of its own, or by ``sed``,
    whose argv holds only the file's path.
    """

    token: str | None
    path: str | None

    def shown(self) -> str:
        if self.token is not None:
            return f"{self.token}  (shown once; only its hash is kept)"
        return f"written to {self.path} (not shown)"

    def lines(self, prefix: str) -> str:
        """A shell command writing ``prefix`` + token + newline to stdout; the token in no argv.

        The prefix and the token hold no quote, backslash or leading dash, so single quotes and
        echo print them as they are in every shell.
        """
        if self.token is not None:
            return f"echo '{prefix}{self.token}'"
        return f"sed 's/^/{prefix}/' {shlex.quote(str(self.path))}"

    def in_link(self) -> str:
        return self.token if self.token is not None else f"<token from {self.path}>"


def _curl_tls(summary: ShareSummary) -> str:
    """A made certificate is self-signed: curl checks its key against the pin instead of a CA
    (``--pinnedpubkey`` is enforced with ``--insecure`` too; measured with curl 7.88)."""
    if summary.tls is None or summary.tls.pin is None:
        return ""
    return f"--pinnedpubkey '{summary.tls.pin}' --insecure "


def _url_host(summary: ShareSummary) -> str:
    if summary.public:
        return summary.ssh_hostname
    return "127.0.0.1" if summary.via_builtin else summary.remote_bind


def _endpoint(summary: ShareSummary, remote_port: int) -> str:
    if summary.via_builtin:
        bind = summary.remote_bind if summary.public else "127.0.0.1"
        return f"{format_hostport(bind, remote_port)} on this machine"
    bind = summary.remote_bind
    return f"{format_hostport(bind, remote_port)} on {summary.ssh_hostname}"


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
        # The first share of a new user lands here: say in one line how to reach others.
        others = "to share with someone else: safetunnel hosts add NAME user@host --default"
        return [row("where", f"{where}; the built-in gateway runs here"), cmd("others", others)]
    if summary.public:
        return [row("where", f"anywhere that can reach {host} on port {remote_port}")]
    bind = summary.remote_bind
    forward = f"{remote_port}:{bracket_host(bind)}:{remote_port}"
    fallback = (summary.ssh_user, host, summary.ssh_port)
    tunnel = ssh_forward_line(forward, summary.ssh_destination, fallback)
    return [
        row("where", f"on {host}; from another machine, open this tunnel first:"),
        cmd("ssh -L", tunnel),
    ]
