"""The gate: a sans-IO decision engine between a remote connection and the local service.

See DESIGN §3.4. Feed it bytes with ``receive_remote``/``receive_service`` and ask
``next_event(now)`` what to do; it never touches a socket, a clock or a thread.
"""

from safetunnel.gate.budget import FailureBudget
from safetunnel.gate.core import Gate
from safetunnel.gate.events import (
    Close,
    Connect,
    Event,
    GateError,
    NeedData,
    Pipe,
    ToRemote,
    ToService,
)
from safetunnel.gate.policy import GatePolicy

__all__ = [
    "Close",
    "Connect",
    "Event",
    "FailureBudget",
    "Gate",
    "GateError",
    "GatePolicy",
    "NeedData",
    "Pipe",
    "ToRemote",
    "ToService",
]
