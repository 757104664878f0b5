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

import logging
import socket

from safetunnel.gate.events import (
    Close,
    Connect,
    Event,
    NeedData,
    Pipe,
    RequestDone,
    ToRemote,
    ToService,
)
from safetunnel.sharing import pumpio
from safetunnel.sharing.pumpbase import PumpBase
from safetunnel.sharing.pumptypes import GATED, Outcome, Phase

# The events after which the gate waits (for data, the service, or nothing more). A tuple, not
# ``NeedData | Pipe | ...``: that builds a union at every event of every connection.
_WAIT_POINTS = (NeedData, Pipe, Close, Connect)

log = logging.getLogger("safetunnel.sharing.pump")


class Pump(PumpBase):
    """One forwarded connection. ``run`` is the remote reader; it starts the service reader."""

    def run(self) -> None:
        """Remote reader: drive the gate until it pipes or closes, then copy raw bytes.

        The thread that opens the service becomes its reader (the reply is what the client
        waits for) and the remote side is parked until its next input, so a connection costs one
        pool-thread hand-off on its critical path instead of two."""
        if self._guarded(self._remote_side) == "serve":
            self._guarded(self._service_side)

    # -- remote side -----------------------------------------------------------------------------

    def _remote_side(self) -> Outcome:
        if self._phase in GATED:
            outcome = self._gate_remote()
            if outcome == "serve":
                self._starter.park()
            if outcome != "done" or not self._intake_open:
                return outcome
        if self._phase is Phase.PIPED:
            self._copy_to_service()
        return "done"

    def _gate_remote(self) -> Outcome:
        """Feed remote bytes to the gate until it waits on the service, pipes or closes.

        "serve" when this thread opened the service, and so must now read it; "paused" when the
        gate holds enough unconsumed input: the channel is not read (so its SSH window closes
        and the client waits) until the service side's answers let the gate want more."""
        opened = False
        data: bytes | None = None  # None: nothing new to feed (first round, or a deadline)
        while (events := self._feed_remote(data)) is not None:
            self._apply(events)
            last = events[-1]
            if isinstance(last, Connect):
                if (refusal := self._hooks.admit(self._counters)) is not None:
                    self._turn_away(refusal)
                    return "done"
                opened, data = self._open_service(last.protocol), None
                continue
            if opened or self._phase not in GATED or data == b"" or not self._intake_open:
                break  # after an EOF, the service reader (if any) finishes up
            if self._pause_reading():
                return "paused"
            deadline = last.deadline if isinstance(last, NeedData) else None
            data = pumpio.recv_until(self._chan, deadline, self._clock)
            if data is not None:
                self._counters.add_in(len(data))
        return "serve" if opened and self._hand_over() else "done"

    def _feed_remote(self, data: bytes | None) -> list[Event] | None:
        """Feed ``data`` to the gate and drain it; None once the gate is out of the data path."""
        with self._gate_lock:
            if self._phase not in GATED:
                if data and self._phase is Phase.PIPED:
                    self._to_service.put(data)  # a 101 switched us to raw while we read
                return None
            if data is not None and self._intake_open:
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
        self._to_service = self._service_outbox(sock)
        if not self._move(Phase.CONNECTED, sock):
            pumpio.close_socket(sock)  # teardown closed us while we connected: don't leak it
            raise ConnectionAbortedError("the tunnel is closing")
        return True

    def _service_outbox(self, sock: socket.socket) -> pumpio.Outbox:
        """Where the gate's bytes for the service wait: sent at once, blocking, here."""
        return pumpio.Outbox(pumpio.service_sender(sock))

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
            if isinstance(event, _WAIT_POINTS):
                return events

    def _apply(self, events: list[Event]) -> None:
        """Perform what the drained events ask for, outside the gate lock."""
        last = events[-1]
        if isinstance(last, Close):
            self._finish_by_gate(last)
        else:
            self._to_remote.flush()
            self._to_service.flush()
        self._report(events)

    def _report(self, events: list[Event]) -> None:
        """Pass on the requests the gate says were answered (every pump kind calls this)."""
        for event in events:
            if isinstance(event, RequestDone):
                if self._verdict is None:
                    # Answered by the gate itself (a link's redirect, a 502 while the service
                    # is down): the connection's decision, that it got in, is reported first.
                    self._decide(True, "allowed")
                self._hooks.on_request(self._counters, event)

    def _finish_by_gate(self, event: Close) -> None:
        self._reason = event.reason
        self._decide(event.allowed or self._sock is not None, event.reason)
        self._allowed = event.allowed
        if event.refused and self._phase is Phase.GATING:
            delay = self._hooks.refusal_delay(self._chan.origin[0], self._clock())
            if delay > 0 and self._answer_later_after(delay):
                return
        self._answer_and_close()

    def _answer_later_after(self, delay: float) -> bool:
        """Slows down guessing without holding a slot or a thread: nothing more is read (the
        remote reader is not parked again), and the answer goes out later. False when the
        tunnel already holds back as many answers as it may (each keeps a channel open, which
        buffers up to its SSH window): then the answer goes out now."""
        with self._state_lock:
            self._answer_later = True
        if self._hooks.later(delay, self._answer_held_back):
            self._chan.discard_input()
            return True
        with self._state_lock:
            self._answer_later = False
        return False

    # -- service side ----------------------------------------------------------------------------

    def _service_side(self) -> Outcome:
        if self._phase is Phase.CONNECTED:
            self._gate_service()
        if self._phase is Phase.PIPED:
            self._copy_to_remote()
        return "done"

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
            self._resume_reading()
            if not data:
                return

    def _copy_to_service(self) -> None:
        """Raw remote -> service; stops at the expiry instant or when teardown stops the intake,
        so nothing new reaches the service after that (the other direction still drains)."""
        sock = self._sock
        assert sock is not None
        self._to_service.flush()
        send = pumpio.service_sender(sock)
        while data := self._chan.read(pumpio.BUFSIZE):
            if not self._intake_open or self._clock() >= self._hooks.expires_at():
                break
            self._counters.add_in(len(data))
            send(data)
        pumpio.half_close(sock)

    def _copy_to_remote(self) -> None:
        assert self._sock is not None
        self._to_remote.flush()
        pumpio.pipe_to_remote(self._sock, self._chan, self._counters.add_out)
