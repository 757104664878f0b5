"""A pump that the tunnel's relay loop drives: its sockets, what it is watched for, its timer.

The loop calls :meth:`LoopPump.begin` once, then :meth:`~LoopPump.on_ready` whenever one of the
pump's sockets is ready and :meth:`~LoopPump.on_timer` at its deadline (or after a close from
another thread). Each call runs one step of the subclass (:class:`~safetunnel.sharing.pumprelay.
RelayPump` moves the bytes); here the step is guarded like a pump thread's direction, the sockets
are watched for what the next step can use, and a connection that is over is unwatched and
reported, once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from safetunnel.sharing import pumpio
from safetunnel.sharing.loopremote import LoopRemote
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumpsock import Pending
from safetunnel.sharing.pumptypes import GATED, Outcome, PumpHooks
from safetunnel.sharing.relayloop import READ, STREAM, WRITE, RelayLoop
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

# A side is not read while the other side's outbox holds this much: one large read's worth.
HIGH_WATER = pumpio.BUFSIZE
TIMER = -1  # the fd a step gets at a deadline (or after a close elsewhere)


def _call_now(join: Callable[[], None]) -> None:
    """How a channel's pump is started on its first input: it joins the loop from there."""
    join()


class LoopPump(Pump):
    """A pump whose steps the relay loop runs, on the remote socket and the service socket."""

    def __init__(
        self,
        chan: ByteStream,
        remote: LoopRemote,
        counters: ConnCounters,
        hooks: PumpHooks,
        loop: RelayLoop,
    ) -> None:
        super().__init__(chan, counters, hooks)
        self._loop = loop
        self._remote = remote
        self._remote_fd = remote.fd
        self._remote_out = remote.out
        self._to_remote = self._remote_out
        self._service_out: Pending | None = None
        self._service_fd = -1
        self._connecting: socket.socket | None = None  # the service, until its connect completes
        self._connect_deadline = 0.0
        self._masks: dict[int, int] = {}  # what each watched fd is watched for
        self._remote_done = False  # nothing more is read from the remote (EOF, intake, expiry)
        self._service_done = False  # the service's EOF was read
        self._eofs_passed = (False, False)  # half-closes sent: (to the service, to the remote)
        self._draining = False  # the gate closed; what is queued goes out, then the sockets close
        self._over = False  # reported and unwatched: the loop is done with it
        # What the step that runs now was called for: (fd, events), or None for the first step.
        # None, not a made-up fd, which another part may use too: a channel's pokes come as
        # STREAM (-2), and a first step marked so ran again at every poke.
        self._ready: tuple[int, int] | None = None

    # -- the loop's side -------------------------------------------------------------------------

    def start(self, runner: Callable[[], None]) -> None:
        if self._remote_fd != STREAM:
            self._loop.add(self)  # the loop accepted it: taken over at once, with no wake-up
            return
        # A channel opens a round trip before its first data: joining the loop only then saves
        # a wake-up per connection. Until it joins, the tunnel's deadline check kicks a client
        # that sends nothing (see overdue), as it does a threaded pump's.
        self._starter = pumpio.RemoteStarter(self._chan, _call_now)
        self._starter.start(self._join)

    def _join(self) -> None:
        """On paramiko's transport thread, inside its input buffer's lock: nothing here may
        close the channel, so a pump the loop no longer takes finishes on a thread of its own."""
        if not self._loop.offer(self):
            name = f"{threading.current_thread().name}-late"
            threading.Thread(target=self.on_timer, name=name, daemon=True).start()

    def kick(self) -> None:
        if self._remote_fd == STREAM:
            self._starter.kick()

    def overdue(self, now: float) -> bool:
        return self._remote_fd == STREAM and super().overdue(now)

    def run(self) -> None:
        raise RuntimeError("a relay pump runs on its tunnel's relay loop")

    def close(self) -> None:
        super().close()
        self._loop.forget(self)  # it finishes (and reports) on the loop

    def begin(self) -> None:
        self._advance(None)

    def on_ready(self, fd: int, events: int) -> None:
        if fd == self._remote_fd:
            self._remote.seen()
        self._advance((fd, events))

    def on_timer(self) -> None:
        self._advance((TIMER, 0))

    def _begin(self) -> bool:
        raise NotImplementedError

    def _step(self, fd: int, events: int) -> bool:
        """One step for ``fd`` ready with ``events`` (``TIMER``: the deadline); False once over."""
        raise NotImplementedError

    def _settled(self) -> bool:
        """True once both directions are over (the connection then ends)."""
        raise NotImplementedError

    def _advance(self, ready: tuple[int, int] | None) -> None:
        """Run one step for ``ready`` (None: the first); once the connection is over, stop
        watching it and report."""
        if self._over:
            return
        self._ready = ready
        outcome = self._guarded(self._direction)  # reports when "done"
        if outcome == "done":
            self._over = True
            for fd in list(self._masks):
                self._watch(fd, read=False, write=False)
            self._remote.forget()
            if self._connecting is not None:
                pumpio.close_socket(self._connecting)
                self._connecting = None
            self._loop.done(self)

    def _direction(self) -> Outcome:
        """The step for ``_ready``, as a direction of the pump. A method, not a closure per
        step: a short connection takes three steps, and each closure was built anew."""
        if self._loop.closing:
            self.close()
        ready = self._ready
        going = (self._begin() if ready is None else self._step(*ready)) and not self._settled()
        if going:
            self._arm()
        return "paused" if going else "done"

    def _arm(self) -> None:
        """Watch each socket for what the next step can use; the timer for the next deadline."""
        if self._connecting is not None:
            self._watch(self._remote_fd, read=False, write=False)
            self._watch(self._connecting.fileno(), read=False, write=True)
            self._loop.at(self, self._connect_deadline)
            return
        gated = self._phase in GATED and not self._draining
        deadline = None
        if gated:
            with self._gate_lock:
                self._paused = not self._gate.wants_remote_data
                deadline = self._gate.current_deadline
        else:
            self._paused = False  # past the gate: only the outboxes hold reading back
        reading = not self._draining
        service_out = self._service_out
        room = service_out is None or service_out.size < HIGH_WATER
        # While gated, the gate answers some requests itself (a link's redirect), with no
        # service to hold the client back: a client that reads none of them is not read further.
        room = room and not (gated and self._remote_out.size >= HIGH_WATER)
        read_remote = reading and not (self._remote_done or self._paused) and room
        self._watch(self._remote_fd, read_remote, self._remote_out.size > 0)
        if service_out is not None:
            read_service = reading and not self._service_done
            read_service = read_service and self._remote_out.size < HIGH_WATER
            self._watch(self._service_fd, read_service, service_out.size > 0)
        self._loop.at(self, deadline)

    def _watch(self, fd: int, read: bool, write: bool) -> None:
        mask = (READ if read else 0) | (WRITE if write else 0)
        if fd == self._remote_fd:
            self._remote.watch(mask)  # every time: a stream that cannot be polled looks again
        elif self._masks.get(fd, 0) != mask:
            self._loop.watch(self, fd, mask)
        if mask:
            self._masks[fd] = mask
        else:
            self._masks.pop(fd, None)
