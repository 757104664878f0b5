"""The share options' defaults and bounds, in one place for the CLI, the Python API and validation.

click builds its option types from these, the API takes its defaults from them, and
:func:`safetunnel.sharing.request.check_request` refuses what click would refuse, so the two
front doors cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from safetunnel.gate.policy import GateProtocol
from safetunnel.hosts.config import DEFAULT_TTL

N = TypeVar("N", int, float)
EngineChoice = Literal["auto", "openssh", "paramiko"]


@dataclass(frozen=True)
class Bounds(Generic[N]):
    """An inclusive range; ``high`` None means no upper bound."""

    low: N
    high: N | None = None

    def __contains__(self, value: N) -> bool:
        return self.low <= value and (self.high is None or value <= self.high)

    def describe(self) -> str:
        return f"at least {self.low}" if self.high is None else f"{self.low}-{self.high}"


PROTOCOLS: tuple[GateProtocol, ...] = ("auto", "http", "tcp")
DEFAULT_PROTOCOL: GateProtocol = "auto"

# None means "the default_ttl of config.toml", whose own default is this.
DEFAULT_TTL_TEXT = DEFAULT_TTL

DEFAULT_REMOTE_PORT = 0  # the SSH server picks a free port
REMOTE_PORT = Bounds(0, 65535)

# Each connection may hold two pool threads, so the cap also bounds the tunnel's thread pool.
DEFAULT_MAX_CONNECTIONS = 256
MAX_CONNECTIONS = Bounds(1, 4096)

MAX_FAILURES = Bounds(1)

# Below 0.2 s keepalives are traffic of their own; above 10 min a dead link goes unnoticed.
DEFAULT_KEEPALIVE = 10.0
KEEPALIVE = Bounds(0.2, 600.0)

DEMO_TTL = 300

# Which SSH engine carries a share: OpenSSH's client, paramiko, or "auto" (see
# safetunnel.sharing.engines). None on a request means config.toml's ``engine``, else auto.
ENGINES: tuple[EngineChoice, ...] = ("auto", "openssh", "paramiko")
DEFAULT_ENGINE: EngineChoice = "auto"
