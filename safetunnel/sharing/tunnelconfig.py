"""What a tunnel is configured with and what it needs from its collaborators (pure types)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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


# The remote end binds 127.0.0.1, not "localhost": for "localhost" sshd binds each loopback
# family that is free and reports success even when only [::1]:PORT worked, so a link to
# localhost:PORT could reach another program holding 127.0.0.1:PORT, token and all. An explicit
# address is either bound exactly or refused (exit 6).
LOOPBACK_BIND = "127.0.0.1"
PUBLIC_BIND = "0.0.0.0"  # noqa: S104 - only with --public


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
