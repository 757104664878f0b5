"""The lifecycle of one share: start, serve, timers, and the single teardown path.

Every way a tunnel ends (TTL, idle limit, kill, signal, SSH loss, too many failures) only calls
:meth:`Tunnel.request_stop`, which is safe from any thread. The supervisor thread then runs
:meth:`_teardown` exactly once, in a fixed order, so there is one place to get teardown right.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from safetunnel import tokens
from safetunnel.durations import format_duration, format_remaining
from safetunnel.errors import ConfigError
from safetunnel.gate import GatePolicy
from safetunnel.sharing.budget import FailureBudget
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import PumpHooks
from safetunnel.sharing.stats import ConnCounters, TunnelStats
from safetunnel.sharing.tunnelconfig import (
    EXIT_CODES,
    Closeable,
    EventSink,
    TunnelConfig,
)
from safetunnel.ssh.engine import ByteStream, EngineSession, Listener
from safetunnel.timefmt import iso_z, utc_now

WARN_BEFORE = (300, 60)  # warn 5 min and 1 min before expiry
GRACE_SECONDS = 2.0  # in-flight data gets this long after the forward is cancelled
TICK = 0.5

log = logging.getLogger("safetunnel.sharing.tunnel")


class Tunnel:
    """One running share. Use as a context manager, or call :meth:`close` (idempotent)."""

    def __init__(
        self,
        session: EngineSession,
        config: TunnelConfig,
        token: str,
        *,
        sinks: list[EventSink] | None = None,
        owned: list[Closeable] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.id = config.tunnel_id
        self.token = token
        self._listener: Listener | None = None
        self._session = session
        self._sinks = list(sinks or [])
        self._owned = list(owned or [])
        self._clock = clock
        self._token_hash = tokens.hash_token(token)
        self.stats = TunnelStats(clock)
        self._budget = FailureBudget(max_failures=config.max_failures)
        # Live pumps by their counters; a pump leaves when it reports finished (its remote side
        # may be parked with no thread, so "run() returned" does not mean finished).
        self._pumps: dict[ConnCounters, Pump] = {}
        self._pumps_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=2 * config.max_connections + 4, thread_name_prefix=f"{self.id}-conn"
        )
        self._pump_hooks = PumpHooks(
            policy=GatePolicy(self._token_hash, self.id, protocol=config.protocol),
            service=config.local,
            submit=self._executor.submit,
            on_decision=self._on_decision,
            on_finished=self._on_finished,
            refusal_delay=self._budget.record_failure,
            expires_at=lambda: self._expires_mono,
            clock=clock,
        )
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._stopping = False
        self.stop_reason: str | None = None
        self._supervisor: threading.Thread | None = None
        self._warned: set[int] = set()
        self.started_at = utc_now()
        self._start_mono = clock()
        self._expires_mono = self._start_mono + config.ttl

    # -- public API ------------------------------------------------------------------------------

    @property
    def remote_port(self) -> int:
        """The port the server listens on (0 until the forward is up)."""
        return 0 if self._listener is None else self._listener.port

    @property
    def expires_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self._expires_mono - self._start_mono)

    @property
    def remaining(self) -> float:
        return max(0.0, self._expires_mono - self._clock())

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.stop_reason or "error", 1)

    def own_first(self, resource: Closeable) -> None:
        """Take ownership of ``resource``; it is closed after everything else at teardown."""
        self._owned.insert(0, resource)

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def start(self, on_up: Callable[[], None] | None = None) -> None:
        """Request the remote forward and start serving; raises ForwardRefused (exit 6).

        ``on_up`` runs once the forward is up and before the ``started`` event, so that whoever
        sees ``started`` also finds the tunnel's record; if it fails, the tunnel is torn down.
        """
        try:
            self._listener = self._session.forward(
                self.config.remote_bind,
                self.config.remote_port,
                self._on_stream,
                allow_wildcard=self.config.public,
            )
        except BaseException:
            self._teardown_unstarted()
            raise
        self._arm_warnings()
        self._session.start_watchdog(self.config.keepalive, lambda: self.request_stop("ssh-lost"))
        self._supervisor = threading.Thread(target=self._supervise, name=f"{self.id}-supervisor")
        self._supervisor.start()
        if on_up is not None:
            try:
                on_up()
            except BaseException:
                self.close("error")
                raise
        self._emit(self.started_event())

    def request_stop(self, reason: str) -> None:
        """Ask the tunnel to end; safe from any thread and signal handlers. First reason wins."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the tunnel is fully torn down; True when it is."""
        return self._closed.wait(timeout)

    def close(self, reason: str = "killed") -> None:
        """End the tunnel and wait for the teardown to finish. Idempotent."""
        if self._supervisor is None:
            self.request_stop(reason)
            self._teardown_unstarted()
            return
        self.request_stop(reason)
        self._closed.wait()
        if self._supervisor is not threading.current_thread():
            self._supervisor.join()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close("killed")

    def extend(self, seconds: int) -> datetime:
        """Move the expiry by ``seconds``; refused past ``max_ttl`` from the start."""
        new_expiry = self._expires_mono + seconds
        if new_expiry - self._start_mono > self.config.max_ttl + 0.5:
            raise ConfigError(
                f"extending by {format_duration(seconds)} would run past max_ttl "
                f"({format_remaining(self.config.max_ttl)} from start)",
                hint="Start a new share, or raise max_ttl in config.toml.",
            )
        self._expires_mono = new_expiry
        self._arm_warnings()
        return self.expires_at

    def status(self) -> dict[str, Any]:
        """Everything a record or `safetunnel status` shows; never the token."""
        host, port = self.config.local
        local = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {
            "id": self.id,
            "pid": os.getpid(),
            "local": local,
            "ssh_host": self.config.ssh_host,
            "remote_bind": self.config.remote_bind,
            "remote_port": self.remote_port,
            "protocol": self.config.protocol,
            "started_at": iso_z(self.started_at),
            "expires_at": iso_z(self.expires_at),
            "token_hash_prefix": tokens.hash_prefix(self._token_hash),
            **self.stats.snapshot(),
        }

    def started_event(self) -> dict[str, Any]:
        status = self.status()
        event: dict[str, Any] = {"event": "started"}
        for key in ("id", "pid", "local", "ssh_host", "remote_bind", "remote_port", "protocol"):
            event[key] = status[key]
        if self.config.show_token:
            event["token"] = self.token
        event["started_at"] = status["started_at"]
        event["expires_at"] = status["expires_at"]
        public_host = self.config.ssh_host.rsplit("@", 1)[-1].rsplit(":", 1)[0]
        url_host = public_host if self.config.public else self.config.remote_bind
        url = f"http://{url_host}:{self.remote_port}/"
        event["url"] = f"{url}?safetunnel_token={self.token}" if self.config.show_token else url
        return event

    # -- connections -----------------------------------------------------------------------------

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
        counters = self.stats.counters(origin_text)
        pump = Pump(stream, counters, self._pump_hooks)
        # Checked and registered under one lock with teardown's `_stopping`, so a pump is either
        # refused here or seen (and closed) by teardown; never missed and left blocking.
        with self._pumps_lock:
            reason = (
                "shutting-down"
                if self._stopping
                else "max-failures"  # the tunnel is about to stop for it: admit nobody now
                if self._budget.exhausted
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

    # -- supervision -----------------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            while not self._stop.is_set():
                self._check_limits()
                self._stop.wait(min(TICK, max(0.01, self._expires_mono - self._clock())))
        finally:
            self._teardown()

    def _check_limits(self) -> None:
        now = self._clock()
        if now >= self._expires_mono:
            self.request_stop("ttl")
        elif self.config.idle and now - self.stats.idle_since() >= self.config.idle:
            self.request_stop("idle")
        elif not self._session.is_active():
            self.request_stop("ssh-lost")
        else:
            self._maybe_warn(self._expires_mono - now)
        self._start_overdue(now)

    def _start_overdue(self, now: float) -> None:
        """Start pumps whose client sent nothing by the header deadline: the gate times them out
        (and counts the failure) exactly as if a pool thread had been waiting on them."""
        with self._pumps_lock:
            overdue = [pump for pump in self._pumps.values() if pump.overdue(now)]
        for pump in overdue:
            pump.kick()

    def _arm_warnings(self) -> None:
        left = self._expires_mono - self._clock()
        self._warned = {w for w in WARN_BEFORE if left <= w}

    def _maybe_warn(self, left: float) -> None:
        crossed = {w for w in WARN_BEFORE if left <= w} - self._warned
        if crossed:  # several thresholds at once (a jump, a late tick): one warning says it all
            self._warned |= crossed
            self._emit(
                {
                    "event": "warning",
                    "id": self.id,
                    "message": f"expires in {format_remaining(math.ceil(left))}",
                }
            )

    # -- teardown --------------------------------------------------------------------------------

    def _teardown(self) -> None:
        """The single teardown path; runs once, on the supervisor thread."""
        with self._pumps_lock:
            self._stopping = True
        with contextlib.suppress(Exception):
            if self._listener is not None:
                self._listener.close()  # no new connections from here on
        deadline = self._clock() + GRACE_SECONDS
        while self.stats.open and self._clock() < deadline and self.stop_reason != "ssh-lost":
            time.sleep(0.05)
        with self._pumps_lock:
            pumps = list(self._pumps.values())
        for pump in pumps:
            pump.close()
        self._executor.shutdown(wait=True)
        self._close_owned()
        self._emit(
            {
                "event": "stopped",
                "id": self.id,
                "reason": self.stop_reason or "error",
                "ended_at": iso_z(utc_now()),
            }
        )
        self._closed.set()

    def _teardown_unstarted(self) -> None:
        if self._closed.is_set():
            return
        self._stopping = True
        self._executor.shutdown(wait=True)
        self._close_owned()
        self._closed.set()

    def _close_owned(self) -> None:
        for resource in [self._session, *reversed(self._owned)]:
            try:
                resource.close()
            except Exception:  # keep tearing down the rest; report, don't hide
                log.warning("closing %r failed", resource, exc_info=True)

    def _emit(self, event: dict[str, Any]) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:  # a broken sink (closed stdout) must not stop the tunnel
                log.warning("event sink %r failed", sink, exc_info=True)
