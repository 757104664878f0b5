"""A connection moved by the tunnel's relay loop: both directions, no thread of its own.

The OpenSSH engine delivers each connection as a unix socket, the paramiko engine as a channel
(its remote end, either way, is a :class:`~safetunnel.sharing.loopremote.LoopRemote`), and the
service is a TCP socket. The threaded :class:`~safetunnel.sharing.pump.Pump` (one blocking
reader per direction) costs threads per connection and a thread hand-off per exchange; here
every step runs on the one :class:`~safetunnel.sharing.relayloop.RelayLoop` thread when a side
is ready or a deadline comes.

Both ends are non-blocking. What a peer does not take yet waits in a
:class:`~safetunnel.sharing.pumpsock.Pending` outbox; while an outbox holds ``HIGH_WATER``
bytes, the side that feeds it is not read (backpressure, as a blocked writer gave before), and
the other direction keeps going. Nothing on the loop may block: the service is connected
without waiting, and a final answer the client is slow to take is drained as the socket allows.
The gate, its events, the decisions and the teardown rules are the threaded pump's own: this
class only replaces how bytes reach the gate and leave it.
"""

from __future__ import annotations

import contextlib
import logging

from safetunnel.gate.events import Close, Connect, Event
from safetunnel.sharing import pumpio, pumpsock
from safetunnel.sharing.loopremote import loop_remote
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumploop import HIGH_WATER, TIMER, LoopPump
from safetunnel.sharing.pumpsock import Pending
from safetunnel.sharing.pumptypes import GATED, Phase, PumpHooks
from safetunnel.sharing.relayloop import READ, STREAM
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

log = logging.getLogger("safetunnel.sharing.pump")

# Sends up to this size are exchanges (a request, an answer) rather than a stream: what comes
# back is worth waiting for awake (see RelayLoop.answer_likely); a stream's next chunk is not.
SMALL_EXCHANGE = 16 * 1024

__all__ = ["HIGH_WATER", "RelayPump", "make_pump"]


def make_pump(stream: ByteStream, counters: ConnCounters, hooks: PumpHooks) -> Pump:
    """A :class:`RelayPump` for a stream the relay loop can carry (a plain socket or a paramiko
    channel, when the tunnel has a loop), else the threaded pump."""
    if hooks.relay is not None and (remote := loop_remote(stream)) is not None:
        return RelayPump(stream, remote, counters, hooks, hooks.relay)
    return Pump(stream, counters, hooks)


class RelayPump(LoopPump):
    """Moves one connection's bytes between the remote socket and the service socket, one
    loop step at a time, through the gate until it pipes."""

    def _begin(self) -> bool:
        """The client has usually sent its first bytes by the time the loop takes it over: read
        them now rather than a loop round later."""
        self._remote.open(self._loop, self)
        return self._from_remote(first=True)

    # -- one step --------------------------------------------------------------------------------

    def _step(self, fd: int, events: int) -> bool:
        """Handle what the loop reported; False once the pump is over (teardown may have closed
        it meanwhile)."""
        if self._phase is Phase.CLOSED:
            return False
        if self._connecting is not None:
            return self._connect_step(fd)
        if fd == TIMER:  # the gate's deadline
            return self._phase not in GATED or self._handle(self._feed_remote(None))
        going = True
        if events & READ and self._masks.get(fd, 0) & READ:
            going = self._from_remote() if fd == self._remote_fd else self._from_service()
        if going:
            self._send_pending()
        return going

    def _send_pending(self) -> None:
        # Most calls find both outboxes empty (a step sends as it goes): no call for those.
        sent = self._remote_out.send_some() if self._remote_out.size else 0
        if self._remote_fd == STREAM:
            # A channel's next input comes from paramiko's transport thread, in this process:
            # waiting awake for it would only take the GIL from the thread that brings it.
            sent = 0
        service_out = self._service_out
        if service_out is not None and service_out.size:
            sent += service_out.send_some()
        if 0 < sent <= SMALL_EXCHANGE and not self._service_done:
            # A request or an answer: the other side's comes soon. Not after the service's
            # last answer: the client closes when it is done, which is no answer.
            self._loop.answer_likely()

    def _settled(self) -> bool:
        """Pass each EOF on once what precedes it in its own direction is sent; True when both
        directions are over (or the pump closed). Each direction on its own: a client that has
        stopped sending but reads slowly keeps bytes waiting for it all along, and the service
        must still read the client's EOF, as through ``ssh -R``."""
        if self._phase is Phase.CLOSED:
            return True
        service_out = self._service_out
        for_remote = self._remote_out.size
        for_service = service_out is not None and service_out.size
        if not (for_remote or for_service):
            if self._draining:
                self._move(Phase.CLOSED)
                return True
            if self._phase is not Phase.PIPED:
                return self._remote_done and (service_out is None or self._service_done)
            if self._remote_done and self._service_done:
                return True  # both ends are closed next, which passes each EOF on
        elif self._draining or self._phase is not Phase.PIPED:
            return False
        to_service, to_remote = self._eofs_passed
        if self._remote_done and not for_service and not to_service and self._sock is not None:
            pumpio.half_close(self._sock)  # the service reads EOF, as after ssh -R
            to_service = True
        if self._service_done and not for_remote and not to_remote:
            self._chan.half_close()
            to_remote = True
        self._eofs_passed = (to_service, to_remote)
        return False

    def _answer_and_close(self) -> None:
        """On the loop, a final answer the client does not take at once is drained as its
        socket allows: a slow reader must not hold up every other connection."""
        if self._loop.on_loop():
            self._draining = True
            self._send_pending()
            return
        self._answer_now_and_close()

    def _answer_held_back(self) -> None:
        """A refusal's held-back answer, on the one thread that holds them all and that
        teardown waits for. Never drained on the loop, even when it comes due while the
        connection's last step still runs there: that step has already ended the connection,
        and nothing would close it."""
        self._answer_now_and_close()

    def _answer_now_and_close(self) -> None:
        """What the socket takes now (never waits: a client that reads nothing must hold up
        neither this thread nor the end of the share), then the close."""
        with contextlib.suppress(OSError, EOFError):
            self._send_pending()
        self.close()

    # -- reading ---------------------------------------------------------------------------------

    def _from_remote(self, first: bool = False) -> bool:
        data = self._remote.recv(pumpio.BUFSIZE)
        if data is None:
            # Nothing yet. The first step asks the gate all the same: it sets the deadline the
            # pump then waits for (and closes a connection that came after the expiry).
            return self._handle(self._feed_remote(None)) if first else True
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

    def _from_service(self, again: bool = False) -> bool:
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
            # A service that answers and closes has usually done both by now: reading its EOF
            # at once saves a loop round on every short connection.
            if data and not again and self._remote_out.size < HIGH_WATER:
                return self._from_service(again=True)
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
            return self._draining
        # An answer goes out before its request is reported: the report (an event, an audit
        # line) is not in the client's round trip. Measured, reporting first cost keep-alive.
        self._send_pending()
        self._report(events)
        if not isinstance(last, Connect):
            return True
        if (refusal := self._hooks.admit(self._counters)) is not None:
            self._turn_away(refusal)
            return False
        self._counters.protocol = last.protocol
        try:
            self._connecting = pumpsock.connect_later(self._hooks.service)
        except OSError as err:
            return self._unavailable(err)
        self._connect_deadline = self._clock() + pumpsock.CONNECT_TIMEOUT
        # On loopback the connect is usually over already; otherwise the loop calls back.
        return self._connect_step(self._connecting.fileno())

    # -- connecting to the service ---------------------------------------------------------------

    def _connect_step(self, fd: int) -> bool:
        """The service's connect completed, failed, or ran out of time (or is still going)."""
        sock = self._connecting
        assert sock is not None
        over, error = pumpsock.connect_outcome(sock)
        if not over:
            if fd != TIMER or self._clock() < self._connect_deadline:
                return True
            error = TimeoutError("the service did not accept the connection")
        self._connecting = None
        self._watch(sock.fileno(), read=False, write=False)
        if error is not None:
            pumpio.close_socket(sock)
            return self._unavailable(error)
        self._service_fd = sock.fileno()
        self._service_out = Pending.for_socket(sock, pumpio.quick_ack)
        self._to_service = self._service_out
        if not self._move(Phase.CONNECTED, sock):
            pumpio.close_socket(sock)  # teardown closed us while we connected: don't leak it
            return False
        going = self._handle(self._feed_remote(None))  # the request on its way
        if going:
            self._send_pending()
            self._decide(True, "allowed")  # once the request is on its way, not before it
        return going

    def _unavailable(self, error: OSError) -> bool:
        """The service cannot be reached: the gate answers (502 or close) and closes."""
        log.info("service %s unavailable: %s", self._hooks.service, error)
        with self._gate_lock:
            self._gate.service_unavailable()
        return self._handle(self._feed_remote(None))
