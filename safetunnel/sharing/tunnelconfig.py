"""What a tunnel is configured with and what it needs from its collaborators (pure types)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND
from safetunnel.gate.policy import GateProtocol

# Stop reasons (the `stopped` event's `reason`) and the exit code each one means (DESIGN §3.2).
EXIT_CODES = {
    "ttl": 0,
    "idle": 0,
    "killed": 0,
    "signal": 0,
    "ssh-lost": 8,
    "max-failures": 1,
    "error": 1,
}


class Closeable(Protocol):
    def close(self) -> None: ...


EventSink = Callable[[dict[str, Any]], None]


@dataclass
class TunnelConfig:
    """What one share does; validated values only (the CLI and API parse user input)."""

    local: tuple[str, int]
    ttl: int
    ssh_host: str
    idle: int | None = None
    public: bool = False
    remote_port: int = 0
    protocol: GateProtocol = "auto"
    max_connections: int = 256
    max_failures: int | None = None
    keepalive: float = 10.0
    max_ttl: int = 86_400
    tunnel_id: str = ""
    show_token: bool = True  # False with --token-file: the token never goes into events

    @property
    def remote_bind(self) -> str:
        return PUBLIC_BIND if self.public else LOOPBACK_BIND
