"""The lifecycle of one share: start, serve, timers, and the single teardown path.

Every way a tunnel ends (TTL, idle limit, kill, signal, SSH loss, too many failures) only calls
:meth:`Tunnel.request_stop`, which is safe from any thread. The supervisor thread then runs
:meth:`_teardown` exactly once, in a fixed order, so there is one place to get teardown right:

1. the forward is cancelled (no new connections);
2. nothing more from the remote reaches the service; open connections get a short grace
   period to drain what the service still sends back, then are closed, and the pool drained;
3. a replacement SSH session (after a reconnect), then the resources handed over at
   construction (the first SSH session, built-in gateway, ...) are closed, last in, first out;
4. the ``Stopped`` event goes to the observers, then closed in reverse order (observers.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from safetunnel import tokens
from safetunnel.errors import SafetunnelError
from safetunnel.sharing import events
from safetunnel.sharing.intake import LoopIntake
from safetunnel.sharing.link import Link
from safetunnel.sharing.observers import Observers, TunnelObserver
from safetunnel.sharing.pumptls import tls_streams
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.reconnect import Reconnector, SessionOpener
from safetunnel.sharing.timers import Deadlines
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.sharing.tunnelfacts import TunnelFacts
from safetunnel.ssh.engine import EngineSession
from safetunnel.timefmt import iso_z, utc_now

GRACE_SECONDS = 2.0  # the service's replies get this long after the forward is cancelled
TICK = 0.5
# A thread that was started begins within this long, even on a loaded machine.
START_WAIT = 5.0

log = logging.getLogger("safetunnel.sharing.tunnel")


class Tunnel(TunnelFacts):
    """One running share. Use as a context manager, or call :meth:`close` (idempotent).

    ``resources`` is what the tunnel owns from construction on and closes at teardown, last in,
    first out; without it the tunnel owns just ``session``. If :meth:`start` fails, the stack is
    closed with that error, so a callback pushed with ``ExitStack.push`` can tell a failed start
    from a normal end (a token file kept on request is still removed if the share never
    started). ``observers`` follow ``TunnelObserver`` (observers.py). ``clock`` is the clock for
    the TTL, the idle limit, the warnings and the teardown's grace period. ``reconnect`` opens a
    new session without asking: a lost one is then replaced within the TTL (sharing.link).
    """

    def __init__(
        self,
        session: EngineSession,
        config: TunnelConfig,
        token: str,
        *,
        observers: Sequence[TunnelObserver[Tunnel]] = (),
        resources: contextlib.ExitStack | None = None,
        clock: Callable[[], float] = time.monotonic,
        reconnect: SessionOpener | None = None,
    ) -> None:
        self.config = config
        self.id = config.tunnel_id
        self.token = token
        again = None if reconnect is None else Reconnector(reconnect, config.ssh_host, clock)
        self._observers: Observers[Tunnel] = Observers(observers)
        if resources is None:
            resources = contextlib.ExitStack()
            resources.callback(session.close)
        self._resources = resources
        self._start_error: BaseException | None = None
        self._clock = clock
        self._token_hash = tokens.hash_token(token)
        self._init_connections(config)
        intake = tls_streams(
            config.tls_context, LoopIntake(self._on_stream, self._relay), self._refuse_tls
        )
        self._link = Link(session, config, intake, again)
        self._init_recipients()
        self._init_lifecycle()
        self.started_at = utc_now()
        self._deadlines = Deadlines(
            config.ttl, idle=config.idle, max_ttl=config.max_ttl, start=clock()
        )
        self._deadlines_lock = threading.Lock()  # extend() comes from the control thread

    def _init_lifecycle(self) -> None:
        self._stop = threading.Event()
        self._closed = threading.Event()
        # Set once the observers were told of the start (or failed to be): the supervisor tears
        # nothing down before, or a stop in between (a TTL shorter than the forward took) would
        # close the books while they were still being opened, and they would stay open.
        self._announced = threading.Event()
        self._supervising = threading.Event()  # the supervisor's thread began
        self._stopping = False
        self.stop_reason: StopReason | None = None
        self.stop_error: SafetunnelError | None = None  # what ended it, when that has a message
        self._supervisor: threading.Thread | None = None

    # -- public API ------------------------------------------------------------------------------

    @property
    def remote_port(self) -> int:
        """The port the server listens on (0 until the forward is up)."""
        return self._link.port

    @property
    def state(self) -> str:
        """``serving``, or ``reconnecting`` while a lost SSH session is being replaced."""
        return self._link.state

    @property
    def expires_at(self) -> datetime:
        lifetime = self._deadlines.expires - self._deadlines.start
        return self.started_at + timedelta(seconds=lifetime)

    @property
    def remaining(self) -> float:
        return self._deadlines.remaining(self._clock())

    @property
    def exit_code(self) -> int:
        if self.stop_error is not None:
            return self.stop_error.exit_code
        return (self.stop_reason or StopReason.ERROR).exit_code

    def start(self) -> None:
        """Request the remote forward, serve, tell the observers; raises ForwardRefused (exit 6).

        If an observer's ``started`` fails, the tunnel is torn down and the error propagates."""
        try:
            self._link.start(self._lost)
        except BaseException as err:
            self._teardown_unstarted(err)
            raise
        self._supervisor = threading.Thread(target=self._supervise, name=f"{self.id}-supervisor")
        try:
            self._supervisor.start()
            self._observers.started(self)
            self._emit(self.started_event())
        except BaseException as err:  # a failed observer, or a signal's exit on the way
            self._start_error = err
            self._abort_start()
            raise
        finally:
            self._announced.set()

    def _abort_start(self) -> None:
        """The forward is up but the start failed: the supervisor tears down, if it came up."""
        self.request_stop(StopReason.ERROR)
        self._announced.set()
        if not self._supervising.wait(START_WAIT):
            self._supervisor = None  # interrupted before its thread began
        self.close(StopReason.ERROR)

    def request_stop(self, reason: StopReason | str) -> None:
        """Ask the tunnel to end; safe from any thread and signal handlers. First reason wins."""
        if self.stop_reason is None:
            self.stop_reason = StopReason(reason)
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the tunnel is fully torn down; True when it is."""
        return self._closed.wait(timeout)

    def close(self, reason: StopReason = StopReason.KILLED) -> None:
        """End the tunnel and wait for the teardown to finish. Idempotent."""
        self.request_stop(reason)
        if self._supervisor is None:
            self._teardown_unstarted(None)
            return
        self._closed.wait()
        if self._supervisor is not threading.current_thread():
            self._supervisor.join()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(StopReason.KILLED)

    def extend(self, seconds: int) -> datetime:
        """Move the expiry by ``seconds``; refused (ConfigError) past ``max_ttl`` from the start."""
        with self._deadlines_lock:
            self._deadlines.extend(seconds, self._clock())
        return self.expires_at

    # -- supervision -----------------------------------------------------------------------------

    def _supervise(self) -> None:
        self._supervising.set()
        try:
            self._announced.wait()
            while not self._stop.is_set():
                now = self._clock()
                self._check_limits(now)
                with self._deadlines_lock:
                    pause = self._deadlines.pause(self._clock(), TICK)
                self._stop.wait(pause)
        finally:
            try:
                self._teardown()
            finally:
                self._closed.set()  # even after a bug in a step, close() must not wait for ever

    def _check_limits(self, now: float) -> None:
        with self._deadlines_lock:
            verdict = self._deadlines.decide(now, self.stats.idle_since())
        if isinstance(verdict, StopReason):
            self.request_stop(verdict)
        elif not self._link.is_active():
            self._recover()
        elif verdict is not None:
            self._emit(events.Warning(id=self.id, message=verdict.message))
        self._start_overdue(now)

    def _lost(self) -> None:
        self.request_stop(StopReason.SSH_LOST)

    def _recover(self) -> None:
        """Replace the lost session within the TTL (on the supervisor thread), or end."""
        try:
            if self._link.reconnects and self._link.recover(self, self._lost):
                return
        except SafetunnelError as err:
            self.stop_error = err
        self._lost()  # when stopping anyway, the reason already given wins

    def stopping(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True once the tunnel is asked to stop (for the reconnect),
        or its idle limit passed: nobody can reach it during an outage either."""
        stopped = self._stop.wait(timeout)
        if not stopped and self._deadlines.idle_reached(self._clock(), self.stats.idle_since()):
            self.request_stop(StopReason.IDLE)
        return self._stop.is_set()

    # -- teardown --------------------------------------------------------------------------------

    def _teardown(self) -> None:
        """The single teardown path; runs once, on the supervisor thread (then sets _closed)."""
        with self._pumps_lock:
            self._stopping = True
        self._link.close_listener()  # no new connections from here on
        for pump in self._live_pumps():
            pump.stop_intake()  # nothing new reaches the service from here on
        self._grace()
        reason = self.stop_reason or StopReason.ERROR
        for pump in self._live_pumps():
            pump.drop(reason.value)  # cut by the end of the share: its close says why
        self._close_connections()
        with contextlib.suppress(Exception):
            self._link.close(GRACE_SECONDS)
        self._release(self._start_error)
        self._emit(events.Stopped(id=self.id, reason=reason, ended_at=iso_z(utc_now())))
        self._observers.close()

    def _grace(self) -> None:
        """Let open connections finish for GRACE_SECONDS on the tunnel's clock; a lost SSH
        connection has no data left to deliver, so it gets no grace."""
        if self.stop_reason == StopReason.SSH_LOST:
            return
        deadline = self._clock() + GRACE_SECONDS
        while self.stats.open and self._clock() < deadline:
            time.sleep(0.05)

    def _teardown_unstarted(self, error: BaseException | None) -> None:
        if self._closed.is_set():
            return
        self._stopping = True
        self._close_connections()
        self._release(error)
        self._observers.close()
        self._closed.set()

    def _release(self, error: BaseException | None) -> None:
        """Close the owned resources, telling them whether the start failed."""
        try:
            if error is None:
                self._resources.close()
            else:
                self._resources.__exit__(type(error), error, error.__traceback__)
        except Exception:  # every callback has run; report the failure, don't hide it
            log.warning("closing the resources of %s failed", self.id, exc_info=True)

    def _emit(self, event: events.TunnelEvent) -> None:
        self._reports.emit(event)

    emit = _emit  # what the reconnector reports through

    def _expiry(self) -> float:
        return self._deadlines.expires
