"""Getting a share's forward back after its SSH session was lost, within the TTL.

The pure parts (the backoff schedule, which failures are worth another attempt, the messages)
are plain functions; :class:`Reconnector` runs the attempts for one tunnel. It never prompts: the
session opener it is given checks the host key against what is already known and takes secrets
from the keyring or from what the user typed at start.

Attempts run on one worker thread that lives as long as the tunnel, while the caller waits on
the tunnel's stop event, so ``kill``, a signal or the TTL end a share promptly even while a
server is slow to answer. One long-lived thread, not one per attempt: the OpenSSH engine's
``ssh`` dies with the thread that started it (PDEATHSIG belongs to the thread on Linux). An
attempt that is given up on closes the session it opened when it ends, so nothing is left open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Literal, Protocol

from safetunnel.errors import (
    AuthFailed,
    ConfigError,
    ConnectionLost,
    CredentialError,
    ForwardNarrowed,
    ForwardRefused,
    ForwardWidened,
    HostKeyError,
    SafetunnelError,
)
from safetunnel.sharing import events
from safetunnel.sharing.worker import Worker
from safetunnel.ssh.engine import EngineSession, Listener

log = logging.getLogger("safetunnel.sharing.reconnect")

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
# A refused forward right after a blip is usually the old server-side session still holding the
# port; sshd notices its client is gone within a keepalive round or two. Longer than this, the
# port is someone else's.
PORT_PATIENCE = 60.0
POLL = 0.1  # how often a waiting attempt looks at the stop event

Verdict = Literal["fatal", "retry", "port"]
SessionOpener = Callable[[], EngineSession]
Forwarder = Callable[[EngineSession], Listener]
Opened = tuple[EngineSession, Listener]
Adopter = Callable[[Opened], bool]


def delay_before(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (1, 2, 3, ...): 1, 2, 4, ... at most 30."""
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(attempt - 1, 16))


def verdict(error: BaseException) -> Verdict:
    """What a failed attempt means: ``fatal`` (trying again cannot help, or must not: a changed
    host key, refused credentials, a widened or narrowed bind), ``port`` (the forward was
    refused: the old session may still hold the port) or ``retry`` (the network or the server
    is not back yet)."""
    if isinstance(error, ForwardWidened | ForwardNarrowed):
        return "fatal"
    if isinstance(error, ForwardRefused):
        return "port"
    if isinstance(error, HostKeyError | AuthFailed | ConfigError | CredentialError):
        return "fatal"
    return "retry"


def one_line(error: BaseException) -> str:
    """The error as one short line for an event or the audit log."""
    text = error.message if isinstance(error, SafetunnelError) else str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def ttl_ran_out(host: str, error: str) -> ConnectionLost:
    return ConnectionLost(
        f"the SSH connection to {host} was lost and could not be re-established before the"
        f" TTL ran out (last error: {error}); the tunnel is closed",
        hint="Check the network and the SSH host, then share again.",
    )


def port_not_regained(host: str, port: int, error: str) -> ConnectionLost:
    return ConnectionLost(
        f"reconnected to {host}, but the remote port {port} could not be had again for"
        f" {PORT_PATIENCE:.0f}s (last error: {error}); the tunnel is closed",
        hint="Another process may hold that port on the SSH host; share again to get a new one.",
    )


class Outage(Protocol):
    """What the reconnector needs of the tunnel while it has no session."""

    @property
    def id(self) -> str: ...
    @property
    def remaining(self) -> float: ...
    def stopping(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True as soon as the tunnel is asked to stop."""
        ...

    def emit(self, event: events.TunnelEvent) -> None: ...


class Reconnector:
    """Opens replacement sessions for one tunnel until one carries the forward again."""

    def __init__(
        self,
        open_session: SessionOpener,
        host: str,
        clock: Callable[[], float],
        patience: float = PORT_PATIENCE,
    ) -> None:
        self._open = open_session
        self._host = host
        self._clock = clock
        self._patience = patience
        self._worker = Worker("safetunnel-reconnect")
        self._pending: Future[Opened] | None = None

    def recover(
        self,
        outage: Outage,
        forward: Forwarder,
        adopt: Callable[[Opened], bool],
        port: int,
        why: str,
    ) -> bool:
        """Open a new session whose forward is up on ``port`` and hand it to ``adopt`` (False:
        the tunnel is gone, it closed the session); False when the tunnel was asked to stop.
        Raises the fatal error, or ConnectionLost when the TTL or the port's patience ran out."""
        attempt, refused_since = 0, None
        while True:
            attempt += 1
            left = outage.remaining
            if left <= 0:
                raise ttl_ran_out(self._host, why)
            wait = min(delay_before(attempt), left)
            outage.emit(events.Reconnecting(outage.id, attempt, port, round(wait, 3), why))
            if outage.stopping(wait):
                return False
            if outage.remaining <= 0:
                raise ttl_ran_out(self._host, why)
            try:
                done = self._attempt(outage, forward)
            except Exception as err:
                kind, why = verdict(err), one_line(err)
                if kind == "fatal":
                    raise
                if kind == "port":
                    refused_since = self._clock() if refused_since is None else refused_since
                    if self._clock() - refused_since >= self._patience:
                        raise port_not_regained(self._host, port, why) from err
                log.info("reconnect attempt %d to %s failed: %s", attempt, self._host, why)
                continue
            self._within_ttl(outage, done, why)
            if done is None or not adopt(done):
                return False
            outage.emit(events.Reconnected(outage.id, attempt, port))
            return True

    def _within_ttl(self, outage: Outage, done: Opened | None, why: str) -> None:
        """Raise when the attempt outlived the TTL, closing what it opened: never back past it."""
        if outage.remaining <= 0:
            if done is not None:
                done[0].close()
            raise ttl_ran_out(self._host, why)

    def retire(self, session: EngineSession) -> None:
        """Close a lost session on the worker thread, before the next attempt: closing can wait
        on a silent server, and the first ``reconnecting`` event must not wait for it."""
        self._worker.submit(session.close)

    def _attempt(self, outage: Outage, forward: Forwarder) -> Opened | None:
        """One connect and forward on the worker thread; None when the tunnel is stopping or
        its TTL ran out meanwhile (a login can take 30 s; the attempt then closes whatever it
        opened when it ends)."""
        future = self._worker.submit(_run, self._open, forward)
        self._pending = future
        while not future.done():
            if outage.stopping(POLL) or outage.remaining <= 0:
                future.add_done_callback(_close_abandoned)
                return None
        self._pending = None
        return future.result()

    def close(self, timeout: float) -> None:
        """Give an attempt still under way up to ``timeout`` s to end (it closes what it
        opened), then let the worker thread go. Call after the current session is closed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            wait_futures([pending], timeout)
        self._worker.shutdown()


def _run(open_session: SessionOpener, forward: Forwarder) -> Opened:
    session = open_session()
    try:
        return session, forward(session)
    except BaseException:
        session.close()
        raise


def _close_abandoned(future: Future[Opened]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[0].close()
