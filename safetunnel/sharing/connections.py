"""The connection side of a tunnel: admitting forwarded streams, pumps, gate decisions.

A mixin of :class:`~safetunnel.sharing.tunnel.Tunnel`, kept apart so the lifecycle (start,
timers, teardown) and the data path each fit in one screenful. The attributes declared here are
set by :meth:`_init_connections`, or by the tunnel for the shared ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from safetunnel.addresses import format_hostport
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing import events
from safetunnel.sharing.budget import FailureBudget
from safetunnel.sharing.later import Later
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumprelay import make_pump
from safetunnel.sharing.pumptypes import PumpHooks
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.sharing.reports import EventSink, Reports
from safetunnel.sharing.stats import ConnCounters, TunnelStats
from safetunnel.sharing.traffic import TrafficReports
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.sharing.workers import Workers
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.gwlimits import GatewayLimits

log = logging.getLogger("safetunnel.sharing.tunnel")


# Connections that have not shown the token yet have slots of their own, apart from the
# authenticated ones: silent or refused clients can fill these, never the token holders' slots.
# When they are full, the oldest is dropped (an honest client sends its token at once). There
# must be more of them than a flood has connections in flight, or the flood's own churn drops
# honest clients before their first bytes are read: measured, 128 let none of the token holder's
# requests through 300 concurrent wrong-token clients; 512 let all of them through.
PENDING_SLOTS = 512


def builtin_gateway_limits(max_connections: int) -> GatewayLimits:
    """Caps for an in-process gateway that carries this one share: high enough that the share's
    own slots decide who waits. A tighter gateway cap would turn token holders away at the
    gateway while a flood holds its connections, before the share could drop the oldest
    unauthenticated one for them."""
    ceiling = max_connections + PENDING_SLOTS
    return GatewayLimits(connections_per_session=ceiling, connections=ceiling)


class TunnelConnections:
    """Admission, pumps and connection events; the tunnel supplies ``_emit``, stopping and
    the current expiry."""

    config: TunnelConfig
    id: str
    token: str
    stats: TunnelStats
    _clock: Callable[[], float]
    _token_hash: bytes
    _budget: FailureBudget
    _traffic: TrafficReports
    _later: Later
    _pump_hooks: PumpHooks
    _pending: dict[ConnCounters, Pump]
    _pumps: dict[ConnCounters, Pump]
    _pumps_lock: threading.Lock
    _executor: Workers
    _relay: RelayLoop
    _reports: Reports
    _observers: EventSink
    _stopping: bool

    def _emit(self, event: events.TunnelEvent) -> None:
        raise NotImplementedError

    def request_stop(self, reason: StopReason) -> None:
        raise NotImplementedError

    def _expiry(self) -> float:
        """The current expiry on the tunnel's clock; called under a pump's lock: never block."""
        raise NotImplementedError

    def _init_connections(self, config: TunnelConfig) -> None:
        self.stats = TunnelStats(self._clock)
        local = format_hostport(*config.local)
        self._traffic = TrafficReports(self.id, local, self.stats, self._emit)
        self._budget = FailureBudget(max_failures=config.max_failures)
        self._later = Later(name=f"{self.id}-answers")
        # Live pumps by their counters, in order of arrival: not authenticated yet, and
        # authenticated. A pump leaves when it reports finished (its remote side may be parked
        # with no thread, so "run() returned" does not mean finished).
        self._pending = {}
        self._pumps = {}
        self._pumps_lock = threading.Lock()
        self._admission_checks: list[Callable[[], bool]] = []
        self._executor = Workers(2 * config.max_connections + PENDING_SLOTS + 4, f"{self.id}-conn")
        self._reports = Reports(self._observers)  # the relay loop's events go out in batches
        self._relay = RelayLoop(f"{self.id}-relay", self._clock, self._reports)
        self._reports.defer_on(self._relay.on_loop)
        self._pump_hooks = PumpHooks(
            # Made once per share: its link cookie's session secret is bound to this share.
            policy=GatePolicy.for_token(self.token, self.id, protocol=config.protocol),
            service=config.local,
            submit=self._executor.submit,
            on_decision=self._on_decision,
            on_finished=self._on_finished,
            refusal_delay=self._refusal_delay,
            later=self._later.defer,
            admit=self._admit_authenticated,
            expires_at=self._expiry,
            clock=self._clock,
            on_request=self._traffic.request,
            relay=self._relay,
        )

    def _on_stream(self, stream: ByteStream) -> None:
        """Runs on the engine's thread (paramiko's transport thread): decide and hand off,
        never block here. An exception escaping from here would kill the whole SSH transport,
        so none may."""
        try:
            self._admit(stream)
        except Exception:
            log.exception("could not hand off a forwarded connection from %s", stream.origin)
            stream.close()

    def _admit(self, stream: ByteStream) -> None:
        origin = format_hostport(*stream.origin)
        counters = self.stats.counters(origin)
        pump = make_pump(stream, counters, self._pump_hooks)
        dropped: Pump | None = None
        # Checked and registered under one lock with teardown's `_stopping`, so a pump is either
        # refused here or seen (and closed) by teardown; never missed and left blocking.
        with self._pumps_lock:
            reason = self._door_refusal()
            if reason is None:
                if len(self._pending) >= PENDING_SLOTS:
                    dropped = self._pending.pop(next(iter(self._pending)))
                self._pending[counters] = pump
        if reason is not None:
            summary = self.stats.refused_at_door(origin, reason)
            self._later.call_later(0.0, stream.close)  # closing sends: not on this thread
            self._emit(events.Connection(self.id, origin, "unknown", False, reason))
            # Ended as soon as it came: the closed event is what the audit log keeps.
            self._emit(events.ConnectionClosed(id=self.id, **summary))
            return
        if dropped is not None:
            self._later.call_later(0.0, dropped.drop)  # it reports as it ends
        self.stats.opened(counters)
        pump.start(pump.run)  # on its first input (see Pump.start)

    def _door_refusal(self) -> str | None:
        """Why a new connection is turned away before it gets a pump; called under the lock."""
        if self._stopping:
            return "shutting-down"
        if self._budget.exhausted:
            return "max-failures"  # the tunnel is about to stop for it: admit nobody now
        return None

    def add_admission_check(self, check: Callable[[], bool]) -> None:
        """``check()`` is asked before each authenticated connection reaches the service; False
        turns it away (the audit publication refuses what it could not record)."""
        self._admission_checks.append(check)

    def _admit_authenticated(self, counters: ConnCounters) -> str | None:
        """The gate let this connection through: move it to the authenticated slots, if one is
        free (and it was not dropped meanwhile, and every admission check agrees). None when
        it was, else why not."""
        if not all(check() for check in self._admission_checks):
            return StopReason.AUDIT_FAILED.value
        revoked = self._pump_hooks.policy.recipients.revoked
        with self._pumps_lock:
            if len(self._pumps) >= self.config.max_connections or self._stopping:
                return "max-connections"
            pump = self._pending.pop(counters, None)
            if pump is None:
                return "max-connections"
            # A revoke closes the connections in slots that presented the token; one whose
            # token the gate checked just before the revoke is not in a slot yet, and is told
            # here instead (the revoke updates the book before it looks at the slots).
            if any(pump.presented(recipient.name) for recipient in revoked()):
                return "revoked"
            self._pumps[counters] = pump
        self.stats.authorized(counters)
        return None

    def _refusal_delay(self, source: str, now: float) -> float:
        return self._budget.record_failure(now, source)

    def _refuse_tls(self, source: str, answer: Callable[[], None]) -> bool:
        """A failed TLS handshake costs what a wrong token costs: it counts towards
        ``max_failures``, and past the source's allowance its ``answer`` (the alert and the
        close) is held back. True when it was."""
        delay = self._refusal_delay(source, self._clock())
        return delay > 0 and self._later.defer(delay, answer)

    def _on_decision(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        protocol = counters.protocol or "unknown"
        refused = None if allowed else reason
        name = counters.recipient
        self._emit(events.Connection(self.id, counters.origin, protocol, allowed, refused, name))

    def _on_finished(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        with self._pumps_lock:
            self._pumps.pop(counters, None)
            self._pending.pop(counters, None)
        summary = self.stats.finished(counters, allowed, reason)
        self._emit(events.ConnectionClosed(id=self.id, **summary))
        self._traffic.finished(counters, allowed, reason)
        if self._budget.exhausted:
            self.request_stop(StopReason.MAX_FAILURES)

    def _close_connections(self) -> None:
        """After every pump was closed: the refusals still held back are answered now, then the
        loop and the pool finish what the pumps report, and the reports go out."""
        self._later.close()
        self._relay.close()
        self._executor.shutdown()
        self._reports.close()  # what the pumps reported is out; from here on nothing waits

    def _live_pumps(self) -> list[Pump]:
        with self._pumps_lock:
            return [*self._pending.values(), *self._pumps.values()]

    def _start_overdue(self, now: float) -> None:
        """Start pumps whose client sent nothing by the header deadline: the gate times them out
        (and counts the failure) exactly as if a pool thread had been waiting on them."""
        for pump in self._live_pumps():
            if pump.overdue(now):
                pump.kick()
