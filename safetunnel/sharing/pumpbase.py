"""The state every pump keeps, and the moves between its phases, apart from the data path.

:class:`~safetunnel.sharing.pump.Pump` builds on this: here are its phases (only :meth:`_move`
changes one), the count of directions still running (the last one out reports), the decision
reported once, and the flow control that stops or resumes reading the remote: by backpressure
from the gate, at a refusal, and at expiry or teardown.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from safetunnel.gate.core import Gate
from safetunnel.sharing import pumpio
from safetunnel.sharing.pumptypes import GATED, NEXT, Outcome, Phase, PumpHooks
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream

log = logging.getLogger("safetunnel.sharing.pump")


class PumpBase:
    """A pump's state and lifecycle; the subclass moves the bytes."""

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
        self._paused = False  # the remote is not read until the gate wants more (gate lock)
        self._intake_open = True  # False: no more remote bytes reach the service
        self._answer_later = False  # a refusal's answer waits on the tunnel's scheduler

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def paused(self) -> bool:
        """The remote is not read until the gate wants more input (backpressure)."""
        return self._paused

    def presented(self, name: str) -> bool:
        """This connection let a request in with recipient ``name``'s token (any thread)."""
        return name in self._gate.recipients

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
        raise NotImplementedError

    def drop(self, reason: str = "dropped") -> None:
        """Close the connection and report ``reason``: ``dropped`` for one that had not
        authenticated when its slot was needed, ``revoked`` for one whose recipient's token was
        withdrawn, the tunnel's stop reason (``ttl``...) for one still open at its end.
        Callable from any thread."""
        with self._state_lock:
            if self._phase is not Phase.CLOSED:
                self._reason = reason
        self.close()

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

    def _guarded(self, direction: Callable[[], Outcome]) -> Outcome:
        """Run one direction; it is over (and counted out) unless it served or paused."""
        outcome: Outcome = "done"
        try:
            outcome = direction()
        except (OSError, EOFError) as err:
            self._note_error(err)
        except Exception as err:  # a bug: keep the pool thread, and say where it happened
            log.exception("pump for %s failed", self._counters.origin)
            self._note_error(err)
        finally:
            if outcome == "done":
                self._direction_done()
        return outcome

    def _answer_and_close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._to_remote.flush()
            self._to_service.flush()
        self.close()

    def _answer_held_back(self) -> None:
        """A refusal's held-back answer runs on the one thread that holds them all, and that
        teardown waits for: it gets what the client's stream takes at once, and the connection
        closes. A client that reads nothing (its SSH window full of answers it never read) must
        hold up neither that thread nor the end of the share."""
        send_nowait = getattr(self._chan, "write_nowait", None)
        if send_nowait is None:
            self._answer_and_close()  # a stream that cannot say: its writes do not wait
            return
        with contextlib.suppress(OSError, EOFError):
            self._to_remote.flush_nowait(send_nowait)
        self.close()

    def _turn_away(self, reason: str) -> None:
        """Authenticated, but the tunnel turns it away (``reason``: no slot left, say): closed,
        not counted as a failure (the client had the token)."""
        self._reason = reason
        self._decide(False, reason)
        self.close()

    def _decide(self, allowed: bool, reason: str) -> None:
        """Report whether the connection got through, once, from whichever thread is first."""
        with self._state_lock:
            if self._verdict is not None:
                return
            self._verdict = self._allowed = allowed
        if self._counters.protocol is None:
            self._counters.protocol = self._gate.protocol
        if allowed and not self._counters.recipient:
            self._counters.recipient = min(self._gate.recipients, default="")
        self._hooks.on_decision(self._counters, allowed, "allowed" if allowed else reason)

    def stop_intake(self) -> None:
        """Nothing more from the remote reaches the service (teardown's grace period drains only
        what the service still sends). A connection still being gated has nothing to drain."""
        self._intake_open = False
        if self._phase is Phase.GATING:
            self.close()

    def _pause_reading(self) -> bool:
        """True (and paused) when the gate holds as much unconsumed remote input as it may."""
        with self._gate_lock:
            self._paused = not self._gate.wants_remote_data
            return self._paused

    def _resume_reading(self) -> None:
        """After the service side's events: read the remote again once the gate wants more."""
        with self._gate_lock:
            resume = self._paused and self._gate.wants_remote_data
            if resume:
                self._paused = False
        if resume:
            self._starter.park()  # the next input (or input already waiting) starts a reader

    def _note_error(self, err: BaseException) -> None:
        if self._phase is not Phase.CLOSED:
            # A refusal below the gate (TLS) names itself; anything else is an error.
            self._reason = getattr(err, "audit_reason", None) or f"error: {type(err).__name__}"
        self.close()

    def _direction_done(self) -> None:
        with self._state_lock:
            self._running -= 1
            last = self._running == 0
            answer_later = self._answer_later
        if not last:
            with self._gate_lock:
                paused, self._paused = self._paused, False
            if paused:  # the remote side waits with no thread: let it see the end and report
                self._starter.park()
            return
        if not answer_later:
            self.close()
        self._decide(False, self._reason)
        self._hooks.on_finished(self._counters, self._allowed, self._reason)
        self._starter.forget()
