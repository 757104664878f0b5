"""What a pump is given by its tunnel, and the phases it goes through."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from safetunnel.gate.events import RequestDone
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.sharing.stats import ConnCounters

Submit = Callable[[Callable[[], None]], object]
# (counters, allowed, reason): a connection was let through or turned away / has ended.
Decision = Callable[[ConnCounters, bool, str], None]
Finished = Callable[[ConnCounters, bool, str], None]
# (counters, report): the gate reports an HTTP request that got its whole answer.
Reported = Callable[[ConnCounters, RequestDone], None]
# How one direction of a pump left its thread: over, now reading the service, or waiting with no
# thread until the gate wants more remote input.
Outcome = Literal["done", "serve", "paused"]


class Phase(enum.Enum):
    """Where a connection stands; each phase only moves forward (see ``NEXT``)."""

    GATING = "gating"  # the gate reads the remote; the service is not open
    CONNECTED = "connected"  # the service is open; the gate still frames every byte (HTTP)
    PIPED = "piped"  # raw bytes both ways; the gate is out of the data path
    CLOSED = "closed"  # both ends closed; the last direction out reports


# The only moves Pump._move makes: forward, or straight to CLOSED.
NEXT = {
    Phase.GATING: (Phase.CONNECTED, Phase.CLOSED),
    Phase.CONNECTED: (Phase.PIPED, Phase.CLOSED),
    Phase.PIPED: (Phase.CLOSED,),
    Phase.CLOSED: (),
}
# The phases in which every byte still goes through the gate.
GATED = (Phase.GATING, Phase.CONNECTED)


def _no_delay(_source: str, _now: float) -> float:
    return 0.0


def _at_once(_delay: float, call: Callable[[], None]) -> bool:
    call()
    return True


def _always(_counters: ConnCounters) -> str | None:
    return None


def _never() -> float:
    return math.inf


def _unheard(_counters: ConnCounters, _done: RequestDone) -> None:
    return None


@dataclass(frozen=True)
class PumpHooks:
    """What every pump of one tunnel shares: the gate's rules, the service's address, and the
    tunnel's callbacks.

    ``refusal_delay(source, now)`` is called once per connection the gate refused before it
    reached the service; it returns how long to hold back the answer (the tunnel's failure
    budget, per source host), and ``later(delay, call)`` runs the answer then, on a thread that
    is not the pump's: a refused connection frees its slot and thread at once. ``later`` returns
    False when it holds as many answers as it may: the pump then answers at once itself.
    ``admit(counters)`` is asked when the gate lets a connection through, before the service is
    opened: None lets it in, else it says why the connection is turned away (no slot left, its
    audit line could not be written, its token was revoked meanwhile).
    ``expires_at()`` is the tunnel's current expiry on ``clock``; it may move while a connection
    is open. ``on_request`` hears each request the gate reports, after its answer was written.
    All of them run on pump threads, ``expires_at`` under the pump's gate lock: they
    must be quick and never block.
    """

    policy: GatePolicy
    service: tuple[str, int]
    submit: Submit
    on_decision: Decision
    on_finished: Finished
    refusal_delay: Callable[[str, float], float] = _no_delay
    later: Callable[[float, Callable[[], None]], bool] = _at_once
    admit: Callable[[ConnCounters], str | None] = _always
    expires_at: Callable[[], float] = _never
    clock: Callable[[], float] = time.monotonic
    on_request: Reported = _unheard
    relay: RelayLoop | None = None  # moves socket-backed connections; else a thread each
