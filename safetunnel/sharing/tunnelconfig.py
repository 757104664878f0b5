"""What a tunnel is configured with (a pure value; the CLI and API parse and check user input)."""

from __future__ import annotations

from dataclasses import dataclass

from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND, format_hostport
from safetunnel.gate.policy import GateProtocol
from safetunnel.sharing import options


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

    @property
    def remote_bind(self) -> str:
        return PUBLIC_BIND if self.public else LOOPBACK_BIND

    @property
    def url_host(self) -> str:
        """Where the share's link points: the SSH host when public, else its loopback."""
        return self.public_host if self.public else self.remote_bind

    def link(self, remote_port: int, token: str | None) -> str:
        """The share's link; with a token it carries it as a query parameter."""
        url = f"http://{format_hostport(self.url_host, remote_port)}/"
        return url if token is None else f"{url}?safetunnel_token={token}"
