"""The connection side of a tunnel: admitting forwarded streams, pumps, gate decisions.

A mixin of :class:`~safetunnel.sharing.tunnel.Tunnel`, kept apart so the lifecycle (start,
timers, teardown) and the data path each fit in one screenful. The attributes declared here are
set by :meth:`_init_connections`, or by the tunnel for the shared ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from safetunnel.gate import FailureBudget, GatePolicy
from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.stats import ConnCounters, TunnelStats
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.engine import ByteStream

log = logging.getLogger("safetunnel.sharing.tunnel")


class TunnelConnections:
    """Admission, pumps and connection events; the tunnel supplies ``_emit`` and stopping."""

    config: TunnelConfig
    id: str
    stats: TunnelStats
    _clock: Callable[[], float]
    _token_hash: bytes
    _budget: FailureBudget
    _policy: GatePolicy
    _pumps: dict[ConnCounters, Pump]
    _pumps_lock: threading.Lock
    _executor: ThreadPoolExecutor
    _stopping: bool

    def _emit(self, event: TunnelEvent | dict[str, Any]) -> None:
        raise NotImplementedError

    def request_stop(self, reason: StopReason | str) -> None:
        raise NotImplementedError

    def _init_connections(self, config: TunnelConfig) -> None:
        self.stats = TunnelStats()
        self._budget = FailureBudget(max_failures=config.max_failures)
        self._policy = GatePolicy(
            token_hash=self._token_hash,
            tunnel_id=self.id,
            protocol=config.protocol,
            budget=self._budget,
        )
        # Live pumps by their counters; a pump leaves when it reports finished (its remote side
        # may be parked with no thread, so "run() returned" does not mean finished).
        self._pumps: dict[ConnCounters, Pump] = {}
        self._pumps_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=2 * config.max_connections + 4, thread_name_prefix=f"{self.id}-conn"
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
        origin_text = f"{stream.origin[0]}:{stream.origin[1]}"
        counters = ConnCounters(origin=origin_text)
        pump = Pump(
            stream,
            counters,
            self._policy,
            self.config.local,
            self._executor.submit,
            self._on_decision,
            self._on_finished,
            clock=self._clock,
        )
        # Checked and registered under one lock with teardown's `_stopping`, so a pump is either
        # refused here or seen (and closed) by teardown; never missed and left blocking.
        with self._pumps_lock:
            reason = (
                "shutting-down"
                if self._stopping
                else "max-connections"
                if len(self._pumps) >= self.config.max_connections
                else None
            )
            if reason is None:
                self._pumps[counters] = pump
        if reason is not None:
            self.stats.refused_at_door(origin_text, reason)
            self._executor.submit(stream.close)  # closing sends a message: not on this thread
            self._emit(
                {
                    "event": "connection",
                    "id": self.id,
                    "origin": origin_text,
                    "protocol": "unknown",
                    "allowed": False,
                    "reason": reason,
                }
            )
            return
        self.stats.opened(counters)
        pump.start(pump.run)  # on its first input (see Pump.start)

    def _on_decision(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        event = {
            "event": "connection",
            "id": self.id,
            "origin": counters.origin,
            "protocol": counters.protocol or "unknown",
            "allowed": allowed,
        }
        if not allowed:
            event["reason"] = reason
        self._emit(event)

    def _on_finished(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        with self._pumps_lock:
            self._pumps.pop(counters, None)
        summary = self.stats.finished(counters, allowed, reason)
        self._emit({"event": "connection-closed", "id": self.id, **summary})
        if self._budget.exhausted:
            self.request_stop("max-failures")

    def _start_overdue(self, now: float) -> None:
        """Start pumps whose client sent nothing by the header deadline: the gate times them out
        (and counts the failure) exactly as if a pool thread had been waiting on them."""
        with self._pumps_lock:
            overdue = [pump for pump in self._pumps.values() if pump.overdue(now)]
        for pump in overdue:
            pump.kick()
