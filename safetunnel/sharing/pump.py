"""Moves bytes between one forwarded SSH channel and the local service, driving the gate.

DESIGN §4 lessons applied here: one blocking reader per direction (no select loop over paramiko
channels, which is where 40-80 ms per connection went), large reads with ``sendall``, TCP_NODELAY
on the local socket. Until the gate says ``Pipe`` every byte goes through it; after that the two
readers copy raw bytes and the gate is out of the data path.

Threading: the remote reader (``run``) and the service reader both feed the one gate under
``_gate_lock``. Writes happen outside that lock (a blocked write must never stop the other
direction), yet stay in gate order: events are queued per destination under the gate lock and
flushed FIFO under that destination's own write lock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from safetunnel.gate import (
    Close,
    Connect,
    Event,
    Gate,
    GatePolicy,
    NeedData,
    Pipe,
    ToRemote,
    ToService,
)
from safetunnel.sharing import pumpio
from safetunnel.sharing.pumpio import Decision, Finished, Submit
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

log = logging.getLogger("safetunnel.sharing.pump")


class Pump:
    """One forwarded connection. ``run`` is the remote reader; it starts the service reader."""

    def __init__(
        self,
        chan: ByteStream,
        counters: ConnCounters,
        policy: GatePolicy,
        service: tuple[str, int],
        submit: Submit,
        on_decision: Decision,
        on_finished: Finished,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._chan = chan
        self._counters = counters
        self._policy = policy
        self._service = service
        self._submit = submit
        self._on_decision = on_decision
        self._on_finished = on_finished
        self._clock = clock
        self._gate_lock = threading.Lock()
        self._state_lock = threading.Lock()
        # Built now, so the header deadline runs from the channel open even when the pump only
        # starts on the first data (see start).
        self._gate: Gate | None = Gate(policy, clock())
        self._starter = pumpio.RemoteStarter(chan, submit)
        self._sock: socket.socket | None = None
        self._to_remote = pumpio.Outbox(chan.write_all)
        self._to_service: pumpio.Outbox | None = None
        self._piped = False
        self._decided = False
        self._announce = False  # the "allowed" decision is made but not yet reported
        self._allowed = False
        self._reason = "eof"
        self._closed = False
        self._running = 1  # directions still running; the last one out reports
        self._start_service_reader = False

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
        gate = self._gate
        if self._starter.active or self._piped or self._closed or gate is None:
            return False
        deadline = gate.current_deadline
        return deadline is not None and now >= deadline

    def run(self) -> None:
        """Remote reader: drive the gate until it pipes or closes, then copy raw bytes.

        At Connect this thread becomes the service reader instead (the reply is what the client
        waits for) and the remote side is parked until its next input, so a connection costs one
        pool-thread hand-off on its critical path instead of two."""
        if self._remote_direction():
            self._service_reader()

    def _remote_direction(self) -> bool:
        """True when the remote side was parked and the caller must read the service."""
        handed_over = False
        try:
            self._gate_phase()
            if self._start_service_reader:
                self._start_service_reader = False
                handed_over = True
                self._starter.park()
                return True
            if self._piped and not self._closed:
                self._copy_to_service()
        except pumpio.ServiceUnavailable:
            self._answer_service_down()
        except (OSError, EOFError) as err:
            self._note_error(err)
        except Exception as err:  # a bug must not kill the pool thread silently
            self._note_error(err)
        finally:
            if not handed_over:
                self._direction_done()
        return False

    def _answer_service_down(self) -> None:
        """The token was right but the local service is gone: say so (HTTP 502), and count it
        as an allowed connection that failed, not as a refused one."""
        if self._counters.protocol == "http":
            with contextlib.suppress(OSError, EOFError):
                self._chan.write_all(pumpio.BAD_GATEWAY)
        self._reason = "service-unavailable"
        self._decided, self._allowed = True, True
        self._on_decision(self._counters, True, "allowed")
        self.close()

    def close(self) -> None:
        """Close both ends; idempotent, callable from any thread (teardown uses it)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            sock = self._sock
        self._chan.close()
        if sock is not None:
            pumpio.close_socket(sock)

    # -- gate phase ------------------------------------------------------------------------------

    def _gate_phase(self) -> None:
        remote_eof = False
        while True:
            with self._gate_lock:
                events = self._drain()
            deadline = self._apply(events)
            if self._start_service_reader or self._piped or self._closed:
                return  # after Connect, run() turns this thread into the service reader
            if remote_eof:
                return  # nothing more will come from the remote; the service reader finishes
            data = pumpio.recv_until(self._chan, deadline, self._clock)
            if data is None:
                continue  # deadline passed: the next drain turns it into a Close
            self._counters.add_in(len(data))
            with self._gate_lock:
                if self._piped:  # a 101 from the service switched us while we were reading
                    self._pending_raw_in(data)
                    return
                assert self._gate is not None
                self._gate.receive_remote(data)
            remote_eof = not data

    def _drain(self) -> list[Event]:
        """Collect events up to the next wait point. Called with the gate lock held."""
        assert self._gate is not None
        events: list[Event] = []
        while True:
            event = self._gate.next_event(self._clock())
            events.append(event)
            if isinstance(event, ToService) and self._to_service is not None:
                self._to_service.put(event.data)
            elif isinstance(event, ToRemote):
                self._to_remote.put(event.data)
            elif isinstance(event, Connect):
                self._connect(event.protocol)
            elif isinstance(event, Pipe):
                self._piped = True
            if isinstance(event, NeedData | Pipe | Close):
                return events

    def _apply(self, events: list[Event]) -> float | None:
        """Perform what the drained events ask for, outside the gate lock."""
        deadline: float | None = None
        for event in events:
            if isinstance(event, NeedData):
                deadline = event.deadline
            elif isinstance(event, Close):
                self._finish_by_gate(event)
                return None
        self._to_remote.flush()
        if self._to_service is not None:
            self._to_service.flush()
        self._announce_decision()
        return deadline

    def _connect(self, protocol: str) -> None:
        """First successful authentication: only now is the local service contacted."""
        self._counters.protocol = protocol
        try:
            sock = pumpio.open_local(self._service)
        except OSError as err:
            raise pumpio.ServiceUnavailable(str(err)) from err
        with self._state_lock:
            if self._closed:  # teardown closed us while we connected: don't leak the socket
                pumpio.close_socket(sock)
                raise ConnectionAbortedError("the tunnel is closing")
            self._sock = sock
        self._to_service = pumpio.Outbox(sock.sendall)
        # Decided now; reported by _apply once the first bytes are on their way to the service:
        # the sinks (event line, audit) cost ~75 us that no longer sit between the client's
        # request and the service, nor under the gate lock.
        self._decided, self._allowed, self._announce = True, True, True
        with self._state_lock:
            self._running += 1
        self._start_service_reader = True

    def _finish_by_gate(self, event: Close) -> None:
        self._announce_decision()
        if event.delay > 0:
            time.sleep(event.delay)  # failure budget: slow down guessing, on this thread only
        with contextlib.suppress(OSError, EOFError):
            self._to_remote.flush()
            if self._to_service is not None:
                self._to_service.flush()
        self._reason = event.reason
        if not self._decided:
            self._decide(event.allowed, event.reason)
        elif not event.allowed:
            self._allowed = False
        self.close()

    def _announce_decision(self) -> None:
        """Report the "allowed" decision _connect made, exactly once, from whichever thread."""
        if not self._announce:
            return
        with self._state_lock:
            if not self._announce:
                return
            self._announce = False
        self._on_decision(self._counters, True, "allowed")

    def _decide(self, allowed: bool, reason: str) -> None:
        self._decided = True
        self._allowed = allowed
        if self._counters.protocol is None and self._gate is not None:
            self._counters.protocol = self._gate.protocol
        self._on_decision(self._counters, allowed, reason)

    # -- service reader --------------------------------------------------------------------------

    def _service_reader(self) -> None:
        try:
            if not self._piped:
                self._service_gate_phase()
            if self._piped and not self._closed:
                self._copy_to_remote()
        except (OSError, EOFError) as err:
            self._note_error(err)
        except Exception as err:  # never lose a pool thread to a bug
            self._note_error(err)
        finally:
            self._direction_done()

    def _service_gate_phase(self) -> None:
        assert self._sock is not None
        while not self._closed:
            data = self._sock.recv(pumpio.BUFSIZE)
            self._counters.add_out(len(data))
            with self._gate_lock:
                if self._piped:
                    if data:
                        self._to_remote.put(data)
                    self._to_remote.flush()
                    return
                assert self._gate is not None
                self._gate.receive_service(data)
                events = self._drain()
            self._apply(events)
            if not data or self._piped:
                return

    # -- raw copying -----------------------------------------------------------------------------

    def _pending_raw_in(self, data: bytes) -> None:
        """Bytes read from the remote just as the gate switched to raw: pass them on as they are."""
        if data and self._to_service is not None:
            self._to_service.put(data)

    def _copy_to_service(self) -> None:
        assert self._sock is not None and self._to_service is not None
        self._to_service.flush()
        pumpio.copy_stream(self._chan.read, self._sock.sendall, self._counters.add_in)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)  # pass the half-close on, like ssh -R does

    def _copy_to_remote(self) -> None:
        assert self._sock is not None
        self._to_remote.flush()
        pumpio.copy_stream(self._sock.recv, self._chan.write_all, self._counters.add_out)
        with contextlib.suppress(OSError, EOFError):
            self._chan.half_close()

    # -- bookkeeping -----------------------------------------------------------------------------

    def _note_error(self, err: BaseException) -> None:
        if not self._closed:
            self._reason = f"error: {type(err).__name__}"
        self.close()

    def _direction_done(self) -> None:
        with self._state_lock:
            self._running -= 1
            last = self._running == 0
        if not last:
            return
        self.close()
        self._announce_decision()
        if not self._decided:
            self._decide(False, self._reason)
        self._on_finished(self._counters, self._allowed, self._reason)
