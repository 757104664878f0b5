"""What a tunnel is configured with (a pure value; the CLI and API parse and check user input)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND, format_hostport
from safetunnel.gate.policy import GateProtocol
from safetunnel.sharing import options
from safetunnel.sharing.clientlines import host_for_others
from safetunnel.sharing.tlscert import TlsIdentity
from safetunnel.tickets import Ticket

if TYPE_CHECKING:
    from safetunnel.sharing.summary import ShareSummary


@dataclass(frozen=True)
class Reach:
    """How a recipient reaches the SSH host, for tickets: the name as the sharer gave it (the
    same as in the printed ``ssh -L`` line), the typed port, and the host key to insist on."""

    host: str
    port: int | None
    host_key: str
    key_type: str


def reach_of(summary: ShareSummary) -> Reach | None:
    """None when no ticket can work: the built-in gateway admits only this process's own key,
    and a session whose host key is unknown has no anchor to put in a ticket."""
    if summary.via_builtin or not summary.fingerprint.startswith("SHA256:"):
        return None
    fallback = (summary.ssh_user, summary.ssh_hostname, summary.ssh_port)
    host, port = host_for_others(summary.ssh_destination, fallback)
    port_number = int(port) if port else None
    return Reach(host, port_number, summary.fingerprint, summary.key_type or "")


@dataclass
class TunnelConfig:
    """What one share does; validated values only."""

    local: tuple[str, int]
    ttl: int
    ssh_host: str  # for people: ``user@host:port`` or ``built-in gateway``
    idle: int | None = None
    public: bool = False
    remote_port: int = options.DEFAULT_REMOTE_PORT
    protocol: GateProtocol = options.DEFAULT_PROTOCOL
    max_connections: int = options.DEFAULT_MAX_CONNECTIONS
    max_failures: int | None = None
    keepalive: float = options.DEFAULT_KEEPALIVE
    max_ttl: int = 86_400
    tunnel_id: str = ""
    show_token: bool = True  # False with --token-file: the token never goes into events
    # The SSH server's host name as clients reach it; a public share's link points there.
    public_host: str = LOOPBACK_BIND
    engine: str = "paramiko"  # which SSH engine carries the forward: "openssh" or "paramiko"
    reach: Reach | None = None  # None: no tickets (see reach_of)
    tls: TlsIdentity | None = None  # None: the remote side speaks plain bytes
    # The token and ticket files the share removes when it ends: in its record too, so that
    # whoever prunes the record of a share killed with -9 removes them instead.
    token_files: tuple[str, ...] = ()

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.context

    @property
    def tls_pin(self) -> str | None:
        return None if self.tls is None else self.tls.pin

    @property
    def remote_bind(self) -> str:
        return PUBLIC_BIND if self.public else LOOPBACK_BIND

    @property
    def url_host(self) -> str:
        """Where the share's link points: the SSH host when public, else its loopback."""
        return self.public_host if self.public else self.remote_bind

    def link(self, remote_port: int, token: str | None) -> str:
        """The share's link; with a token it carries it as a query parameter."""
        scheme = "http" if self.tls is None else "https"
        url = f"{scheme}://{format_hostport(self.url_host, remote_port)}/"
        return url if token is None else f"{url}?safetunnel_token={token}"

    def ticket(self, remote_port: int, token: str | None, expires_at: datetime) -> str | None:
        """The share's ticket; None without a shown token (a token file keeps it off screen)."""
        if self.reach is None or token is None:
            return None
        reach = self.reach
        return Ticket(
            ssh_host=reach.host,
            ssh_port=reach.port,
            host_key=reach.host_key,
            key_type=reach.key_type,
            remote_bind=self.remote_bind,
            remote_port=remote_port,
            protocol=self.protocol,
            expires_at=expires_at,
            token=token,
            tls_pin=self.tls_pin,
        ).encode()
