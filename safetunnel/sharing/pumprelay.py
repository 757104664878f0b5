"""One thread per socket-backed connection: both directions moved by one poll loop.

The OpenSSH engine delivers each connection as a unix socket, and the service is a TCP socket.
The threaded :class:`~safetunnel.sharing.pump.Pump` (one blocking reader per direction, which a
paramiko channel needs) costs two threads per connection and a thread hand-off per exchange:
measured, a request and its answer woke two threads, and the second pool submission was the
largest single cost of a new connection. Here the thread that is already awake moves both.

The sockets are non-blocking while the loop runs. What a peer does not take yet waits in a
:class:`Pending` outbox; while an outbox holds ``HIGH_WATER`` bytes, the side that feeds it is
not read (backpressure, as a blocked writer gave before), and the other direction keeps going.
The gate, its events, the decisions and the teardown rules are the threaded pump's own: this
class only replaces how bytes reach the gate and leave it.
"""

from __future__ import annotations

import math
import select
import socket
from collections.abc import Callable

from safetunnel.gate.events import Close, Connect, Event
from safetunnel.sharing import pumpio
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import GATED, Outcome, Phase, PumpHooks
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

# A side is not read while the other side's outbox holds this much: one large read's worth.
HIGH_WATER = pumpio.BUFSIZE
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
# Deadlines are checked at least this often (a gate deadline that just passed may not close).
_MIN_WAIT_MS = 50
# With no deadline the loop still wakes now and then: a socket closed by teardown wakes poll at
# once (POLLNVAL), but a number reused by a new socket in between would not.
_IDLE_WAIT_MS = 5000


class Pending(pumpio.Outbox):
    """Bytes waiting for one non-blocking socket, in order; ``flush`` sends the rest blocking
    (the loop is over: a gate's final answer, now or after a refusal's delay)."""

    def __init__(
        self, sock: socket.socket, after_send: Callable[[socket.socket], None] | None = None
    ) -> None:
        super().__init__(sock.sendall)
        self._sock = sock
        self._after_send = after_send
        self.size = 0

    def put(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._queue.append(data)
            self.size += len(data)

    def send_some(self) -> None:
        """Send what the socket takes now; the rest waits for it to be writable."""
        sent = False
        while self._queue:
            head = self._queue[0]
            try:
                count = self._sock.send(head)
            except BlockingIOError:
                break
            sent = True
            self.size -= count
            if count < len(head):
                self._queue[0] = memoryview(head)[count:]
                break
            self._queue.popleft()
        if sent and self._after_send is not None:
            self._after_send(self._sock)

    def flush(self) -> None:
        with self._lock:
            if self._queue:
                self._sock.setblocking(True)
            while self._queue:
                self._sock.sendall(self._queue.popleft())
            self.size = 0


def make_pump(stream: ByteStream, counters: ConnCounters, hooks: PumpHooks) -> Pump:
    """A :class:`RelayPump` for a stream that is a plain socket, else the threaded pump."""
    raw = getattr(stream, "raw_socket", None)
    sock = raw() if callable(raw) else None
    if isinstance(sock, socket.socket):
        return RelayPump(stream, sock, counters, hooks)
    return Pump(stream, counters, hooks)


class RelayPump(Pump):
    """A pump whose one thread polls the remote socket and the service socket."""

    def __init__(
        self, chan: ByteStream, sock: socket.socket, counters: ConnCounters, hooks: PumpHooks
    ) -> None:
        super().__init__(chan, counters, hooks)
        self._remote = sock
        self._remote_fd = sock.fileno()
        self._remote_out = Pending(sock)
        self._to_remote = self._remote_out
        self._service_out: Pending | None = None
        self._service_fd = -1
        self._poller = select.poll()
        self._masks: dict[int, int] = {}  # what each registered fd is polled for
        self._remote_done = False  # nothing more is read from the remote (EOF, intake, expiry)
        self._service_done = False  # the service's EOF was read
        self._eofs_passed = (False, False)  # half-closes sent: (to the service, to the remote)

    def run(self) -> None:
        self._guarded(self._relay)

    def _relay(self) -> Outcome:
        self._remote.setblocking(False)
        going = self._handle(self._feed_remote(None))
        while going and not self._settled():
            ready = dict(self._poller.poll(self._watch()))
            going = self._step(ready)
        return "done"

    def _service_outbox(self, sock: socket.socket) -> pumpio.Outbox:
        sock.setblocking(False)
        self._service_fd = sock.fileno()
        self._service_out = Pending(sock, pumpio.quick_ack)
        return self._service_out

    # -- one round -------------------------------------------------------------------------------

    def _watch(self) -> int:
        """Poll each socket for what the loop can use now; the wait until the gate's deadline."""
        gated = self._phase in GATED
        with self._gate_lock:
            self._paused = gated and not self._gate.wants_remote_data
            deadline = self._gate.current_deadline if gated else None
        service_out = self._service_out
        room = service_out is None or service_out.size < HIGH_WATER
        read_remote = not (self._remote_done or self._paused) and room
        self._poll_for(self._remote_fd, read_remote, self._remote_out.size > 0)
        if service_out is not None:
            read_service = not self._service_done and self._remote_out.size < HIGH_WATER
            self._poll_for(self._service_fd, read_service, service_out.size > 0)
        if deadline is None:
            return _IDLE_WAIT_MS
        return max(_MIN_WAIT_MS, math.ceil((deadline - self._clock()) * 1000))

    def _poll_for(self, fd: int, read: bool, write: bool) -> None:
        """A socket polled for nothing is not registered at all: a hang-up must not wake the
        loop over and over for a side it does not read."""
        mask = (select.POLLIN if read else 0) | (select.POLLOUT if write else 0)
        if self._masks.get(fd, 0) == mask:
            return
        if mask == 0:
            self._poller.unregister(fd)
            del self._masks[fd]
        elif fd in self._masks:
            self._poller.modify(fd, mask)
            self._masks[fd] = mask
        else:
            self._poller.register(fd, mask)
            self._masks[fd] = mask

    def _step(self, ready: dict[int, int]) -> bool:
        """Handle what poll reported; False once the pump is over (teardown may have closed it
        while poll waited)."""
        if self._phase is Phase.CLOSED:
            return False
        if not ready:  # the gate's deadline (or the idle wake-up)
            return self._phase not in GATED or self._handle(self._feed_remote(None))
        going = True
        if self._wanted(ready, self._remote_fd):
            going = self._from_remote()
        if going and self._wanted(ready, self._service_fd):
            going = self._from_service()
        if going:
            self._send_pending()
        return going

    def _wanted(self, ready: dict[int, int], fd: int) -> bool:
        """``fd`` has input (or a hang-up) and the loop reads it now."""
        return bool(ready.get(fd, 0) & _READABLE and self._masks.get(fd, 0) & select.POLLIN)

    def _send_pending(self) -> None:
        self._remote_out.send_some()
        if self._service_out is not None:
            self._service_out.send_some()

    def _settled(self) -> bool:
        """Pass each EOF on once what precedes it is sent; True when both directions are over
        (or teardown closed the pump)."""
        if self._phase is Phase.CLOSED:
            return True
        service_out = self._service_out
        if self._remote_out.size or (service_out is not None and service_out.size):
            return False
        if self._phase is not Phase.PIPED:
            return self._remote_done and (service_out is None or self._service_done)
        to_service, to_remote = self._eofs_passed
        if self._remote_done and not to_service and self._sock is not None:
            pumpio.half_close(self._sock)  # the service reads EOF, as after ssh -R
            to_service = True
        if self._service_done and not to_remote:
            self._chan.half_close()
            to_remote = True
        self._eofs_passed = (to_service, to_remote)
        return self._remote_done and self._service_done

    # -- reading ---------------------------------------------------------------------------------

    def _from_remote(self) -> bool:
        try:
            data = self._remote.recv(pumpio.BUFSIZE)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            data = b""
        if self._phase is Phase.PIPED:
            # At the expiry instant or once teardown stops the intake, nothing new reaches the
            # service; what the service still sends is drained.
            if not data or not self._intake_open or self._clock() >= self._hooks.expires_at():
                self._remote_done = True
                return True
            self._counters.add_in(len(data))
            self._to_service.put(data)
            return True
        self._counters.add_in(len(data))
        self._remote_done = not data or not self._intake_open
        return self._handle(self._feed_remote(data))

    def _from_service(self) -> bool:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(pumpio.BUFSIZE)
        except BlockingIOError:
            return True
        self._counters.add_out(len(data))
        self._service_done = not data
        if self._phase is Phase.PIPED:
            self._to_remote.put(data)
            return True
        with self._gate_lock:
            if self._phase is not Phase.CONNECTED:
                return False  # closed by teardown meanwhile
            self._gate.receive_service(data)
            events = self._drain()
        return self._handle(events)

    def _handle(self, events: list[Event] | None) -> bool:
        """Act on what the gate asked for; False once the pump is over."""
        if events is None:
            return self._phase is not Phase.CLOSED
        last = events[-1]
        if isinstance(last, Close):
            self._report(events)
            self._finish_by_gate(last)
            return False
        # An answer goes out before its request is reported: the report (an event, an audit
        # line) is not in the client's round trip. Measured, reporting first cost keep-alive.
        self._send_pending()
        self._report(events)
        if not isinstance(last, Connect):
            return True
        if not self._hooks.admit(self._counters):
            self._turn_away("max-connections")
            return False
        opened = self._open_service(last.protocol)
        going = self._handle(self._feed_remote(None))  # the request, or the gate's 502
        if opened and going:
            self._send_pending()
            self._decide(True, "allowed")  # once the request is on its way, not before it
        return going
