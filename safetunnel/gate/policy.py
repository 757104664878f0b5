"""What one tunnel's gates enforce: the token digest, the protocol and the limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GateProtocol = Literal["auto", "http", "tcp"]


@dataclass(frozen=True)
class GatePolicy:
    """Settings shared by every gate of a tunnel; fixed for the tunnel's life.

    What changes while a tunnel runs (its expiry) is passed to ``Gate.next_event`` instead, so
    a gate never reads a value that another thread is moving.
    """

    token_hash: bytes
    tunnel_id: str
    protocol: GateProtocol = "auto"
    header_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_preamble_bytes: int = 256
