"""What one tunnel's gates enforce: the token digest, the protocol and the limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from safetunnel.gate.budget import FailureBudget

GateProtocol = Literal["auto", "http", "tcp"]


@dataclass
class GatePolicy:
    """Settings shared by every gate of a tunnel. ``expires_at`` may be moved (extend)."""

    token_hash: bytes
    tunnel_id: str
    protocol: GateProtocol = "auto"
    expires_at: float = math.inf  # same clock as ``now``; cookie Max-Age = int(expires_at - now)
    header_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_preamble_bytes: int = 256
    budget: FailureBudget | None = None
