"""Moves bytes between one forwarded connection and the local service, driving the gate.

Lessons from measuring the data path: one blocking reader per direction (a select loop over
paramiko channels cost 40-80 ms per connection), large reads passed on with one ``sendall``,
TCP_NODELAY on the local socket. Until the gate says ``Pipe`` every byte goes through it; after
that the two readers copy raw bytes and the gate is out of the data path.

A pump is in one :class:`Phase` at a time, and only :meth:`Pump._move` changes it. Threading:
the remote reader (``run``) and, once the service is open, the service reader both feed the one
gate under ``_gate_lock``. Writes happen outside that lock (a blocked write must never stop the
other direction), yet stay in gate order: events are queued per destination under the gate lock
and flushed FIFO under that destination's own write lock. The service is connected outside
every lock, so a slow connect holds nothing that teardown or the other direction waits on.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, Event, NeedData, Pipe, ToRemote, ToService
from safetunnel.sharing import pumpio
from safetunnel.sharing.pumptypes import GATED, NEXT, Phase, PumpHooks
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

log = logging.getLogger("safetunnel.sharing.pump")


class Pump:
    """One forwarded connection. ``run`` is the remote reader; it starts the service reader."""

    def __init__(self, chan: ByteStream, counters: ConnCounters, hooks: PumpHooks) -> None:
        self._chan = chan
        self._counters = counters
        self._hooks = hooks
        self._clock = hooks.clock
        self._gate_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._phase = Phase.GATING
        # Built now, so the header deadline runs from the channel open even when the pump only
        # starts on the first data (see start).
        self._gate = Gate(hooks.policy, self._clock())
        self._starter = pumpio.RemoteStarter(chan, hooks.submit)
        self._sock: socket.socket | None = None
        self._to_remote = pumpio.Outbox(chan.write_all)
        self._to_service = pumpio.Outbox(pumpio.unconnected)
        self._verdict: bool | None = None  # the decision, once reported
        self._allowed = False
        self._reason = "eof"
        self._running = 1  # directions still running; the last one out reports

    @property
    def phase(self) -> Phase:
        return self._phase

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, runner: Callable[[], None]) -> None:
        """Run ``runner`` (which calls :meth:`run`) once the remote has sent something."""
        self._starter.start(runner)

    def kick(self) -> None:
        """Run the remote reader now unless one is running (the tunnel's deadline check)."""
        self._starter.kick()

    def overdue(self, now: float) -> bool:
        """No thread reads the remote although the gate's deadline passed (a client that sends
        nothing): the tunnel then kicks it, so the gate can time it out."""
        if self._starter.active or self._phase not in GATED:
            return False
        deadline = self._gate.current_deadline
        return deadline is not None and now >= deadline

    def run(self) -> None:
        """Remote reader: drive the gate until it pipes or closes, then copy raw bytes.

        The thread that opens the service becomes its reader (the reply is what the client
        waits for) and the remote side is parked until its next input, so a connection costs one
        pool-thread hand-off on its critical path instead of two."""
        if self._guarded(self._remote_side):
            self._guarded(self._service_side)

    def close(self) -> None:
        """Close both ends; idempotent, callable from any thread (teardown uses it)."""
        self._move(Phase.CLOSED)

    def _move(self, to: Phase, sock: socket.socket | None = None) -> bool:
        """The one place the phase changes. False when the pump closed meanwhile (teardown)."""
        with self._state_lock:
            if self._phase is Phase.CLOSED:
                return False
            if to not in NEXT[self._phase]:
                raise RuntimeError(f"pump cannot go from {self._phase.value} to {to.value}")
            self._phase = to
            if to is Phase.CONNECTED:
                self._sock = sock
            sock = self._sock
        if to is Phase.CLOSED:
            self._chan.close()
            if sock is not None:
                pumpio.close_socket(sock)
        return True

    def _guarded(self, direction: Callable[[], bool]) -> bool:
        """Run one direction; True when it handed its thread over to the service side."""
        handed_over = False
        try:
            handed_over = direction()
        except (OSError, EOFError) as err:
            self._note_error(err)
        except Exception as err:  # a bug: keep the pool thread, and say where it happened
            log.exception("pump for %s failed", self._counters.origin)
            self._note_error(err)
        finally:
            if not handed_over:
                self._direction_done()
        return handed_over

    # -- remote side -----------------------------------------------------------------------------

    def _remote_side(self) -> bool:
        if self._phase in GATED and self._gate_remote():
            self._starter.park()
            return True
        if self._phase is Phase.PIPED:
            self._copy_to_service()
        return False

    def _gate_remote(self) -> bool:
        """Feed remote bytes to the gate until it waits on the service, pipes or closes.

        True when this thread opened the service, and so must now read it."""
        opened = False
        data: bytes | None = None  # None: nothing new to feed (first round, or a deadline)
        while (events := self._feed_remote(data)) is not None:
            self._apply(events)
            last = events[-1]
            if isinstance(last, Connect):
                opened, data = self._open_service(last.protocol), None
                continue
            if opened or self._phase not in GATED or data == b"":
                break  # after an EOF, the service reader (if any) finishes up
            deadline = last.deadline if isinstance(last, NeedData) else None
            data = pumpio.recv_until(self._chan, deadline, self._clock)
            if data is not None:
                self._counters.add_in(len(data))
        return self._hand_over() if opened else False

    def _feed_remote(self, data: bytes | None) -> list[Event] | None:
        """Feed ``data`` to the gate and drain it; None once the gate is out of the data path."""
        with self._gate_lock:
            if self._phase not in GATED:
                if data and self._phase is Phase.PIPED:
                    self._to_service.put(data)  # a 101 switched us to raw while we read
                return None
            if data is not None:
                self._gate.receive_remote(data)
            return self._drain()

    def _hand_over(self) -> bool:
        """This thread opened the service: it reads the service next, unless the pump closed."""
        self._decide(True, "allowed")  # once the request is on its way, not before it
        with self._state_lock:
            if self._phase is Phase.CLOSED:
                return False
            # Counted only now: had anything failed since the connect, the remote direction
            # alone would have reported, with no service reader left to wait for.
            self._running += 1
        return True

    def _open_service(self, protocol: str) -> bool:
        """The token checked out: only now is the local service contacted. Runs outside the gate
        lock, so a slow connect blocks nothing else. False when the service is unavailable."""
        self._counters.protocol = protocol
        try:
            sock = pumpio.open_local(self._hooks.service)
        except OSError as err:
            log.info("service %s unavailable: %s", self._hooks.service, err)
            with self._gate_lock:
                self._gate.service_unavailable()  # the gate answers (502 or close) and closes
            return False
        self._to_service = pumpio.Outbox(sock.sendall)
        if not self._move(Phase.CONNECTED, sock):
            pumpio.close_socket(sock)  # teardown closed us while we connected: don't leak it
            raise ConnectionAbortedError("the tunnel is closing")
        return True

    # -- the gate's events -----------------------------------------------------------------------

    def _drain(self) -> list[Event]:
        """Collect events up to the next wait point. Called with the gate lock held."""
        events: list[Event] = []
        now, expires_at = self._clock(), self._hooks.expires_at()
        while True:
            event = self._gate.next_event(now, expires_at)
            events.append(event)
            if isinstance(event, ToService):
                self._to_service.put(event.data)
            elif isinstance(event, ToRemote):
                self._to_remote.put(event.data)
            elif isinstance(event, Pipe):
                self._move(Phase.PIPED)
            if isinstance(event, NeedData | Pipe | Close | Connect):
                return events

    def _apply(self, events: list[Event]) -> None:
        """Perform what the drained events ask for, outside the gate lock."""
        last = events[-1]
        if isinstance(last, Close):
            self._finish_by_gate(last)
            return
        self._to_remote.flush()
        self._to_service.flush()

    def _finish_by_gate(self, event: Close) -> None:
        if event.refused:
            delay = self._hooks.refusal_delay(self._clock())
            if delay > 0:
                time.sleep(delay)  # slows down guessing, on this connection's thread only
        with contextlib.suppress(OSError, EOFError):
            self._to_remote.flush()
            self._to_service.flush()
        self._reason = event.reason
        self._decide(event.allowed or self._sock is not None, event.reason)
        self._allowed = event.allowed
        self.close()

    def _decide(self, allowed: bool, reason: str) -> None:
        """Report whether the connection got through, once, from whichever thread is first."""
        with self._state_lock:
            if self._verdict is not None:
                return
            self._verdict = self._allowed = allowed
        if self._counters.protocol is None:
            self._counters.protocol = self._gate.protocol
        self._hooks.on_decision(self._counters, allowed, "allowed" if allowed else reason)

    # -- service side ----------------------------------------------------------------------------

    def _service_side(self) -> bool:
        if self._phase is Phase.CONNECTED:
            self._gate_service()
        if self._phase is Phase.PIPED:
            self._copy_to_remote()
        return False

    def _gate_service(self) -> None:
        sock = self._sock
        assert sock is not None
        while self._phase is Phase.CONNECTED:
            data = sock.recv(pumpio.BUFSIZE)
            self._counters.add_out(len(data))
            with self._gate_lock:
                if self._phase is not Phase.CONNECTED:
                    if data and self._phase is Phase.PIPED:
                        self._to_remote.put(data)  # the remote side switched us to raw
                    events = None
                else:
                    self._gate.receive_service(data)
                    events = self._drain()
            if events is None:
                self._to_remote.flush()
                return
            self._apply(events)
            if not data:
                return

    def _copy_to_service(self) -> None:
        assert self._sock is not None
        self._to_service.flush()
        pumpio.pipe_to_service(self._chan, self._sock, self._counters.add_in)

    def _copy_to_remote(self) -> None:
        assert self._sock is not None
        self._to_remote.flush()
        pumpio.pipe_to_remote(self._sock, self._chan, self._counters.add_out)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _note_error(self, err: BaseException) -> None:
        if self._phase is not Phase.CLOSED:
            self._reason = f"error: {type(err).__name__}"
        self.close()

    def _direction_done(self) -> None:
        with self._state_lock:
            self._running -= 1
            last = self._running == 0
        if not last:
            return
        self.close()
        self._decide(False, self._reason)
        self._hooks.on_finished(self._counters, self._allowed, self._reason)
