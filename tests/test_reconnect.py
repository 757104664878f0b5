"""The pure parts of reconnecting: the backoff schedule, which failures end a share, and the
attempt loop against scripted sessions (no network: the engines are exercised end to end in
test_fault_reconnect.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from safetunnel.errors import (
    AuthFailed,
    ConnectionLost,
    ForwardRefused,
    ForwardWidened,
    HostKeyChanged,
    HostKeyUnknown,
    SSHError,
)
from safetunnel.sharing import events
from safetunnel.sharing.reconnect import (
    POLL,
    Opened,
    Reconnector,
    delay_before,
    one_line,
    verdict,
)
from safetunnel.ssh.engine import Forward, Listener


def test_backoff_doubles_from_one_second_and_stops_at_thirty() -> None:
    assert [delay_before(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert delay_before(10_000) == 30


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (HostKeyChanged("changed"), "fatal"),
        (HostKeyUnknown("unknown"), "fatal"),
        (AuthFailed("denied"), "fatal"),
        (ForwardWidened("widened"), "fatal"),
        (ForwardRefused("taken"), "port"),
        (SSHError("no greeting"), "retry"),
        (ConnectionRefusedError(111, "Connection refused"), "retry"),
        (TimeoutError("timed out"), "retry"),
        (EOFError(), "retry"),
    ],
)
def test_which_failures_end_the_share(error: BaseException, expected: str) -> None:
    assert verdict(error) == expected


def test_one_line_is_short_and_never_empty() -> None:
    assert one_line(SSHError("first\nsecond")) == "first"
    assert one_line(EOFError()) == "EOFError"
    assert len(one_line(OSError("x" * 500))) == 200


class FakeSession:
    """A session that only records whether it was closed."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Outage:
    """A tunnel without a session: a fake clock that waiting advances, and the events."""

    def __init__(self, ttl: float) -> None:
        self.id = "st-abcdef"
        self.now = 0.0
        self.ttl = ttl
        self.events: list[events.TunnelEvent] = []
        self.stop = threading.Event()

    @property
    def remaining(self) -> float:
        return self.ttl - self.now

    def stopping(self, timeout: float) -> bool:
        if timeout == POLL:  # waiting for an attempt: real time, the backoff clock stands still
            return self.stop.wait(timeout)
        if self.stop.is_set():
            return True
        self.now += timeout
        return False

    def emit(self, event: events.TunnelEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def script(*outcomes: BaseException | None) -> tuple[Callable[[], Any], list[FakeSession]]:
    """An opener that fails with each error given in turn; None opens a session."""
    opened: list[FakeSession] = []
    pending: Iterator[BaseException | None] = iter(outcomes)

    def opener() -> Any:
        outcome = next(pending)
        if outcome is not None:
            raise outcome
        opened.append(FakeSession())
        return opened[-1]

    return opener, opened


def forward_ok(session: Any) -> Listener:
    return Forward("127.0.0.1", 4000, lambda: None)


def run(
    outage: Outage, opener: Callable[[], Any], forward: Callable[[Any], Listener] = forward_ok
) -> tuple[bool, list[Opened]]:
    adopted: list[Opened] = []

    def adopt(opened: Opened) -> bool:
        adopted.append(opened)
        return True

    reconnector = Reconnector(opener, "alice@host:22", lambda: outage.now, patience=60.0)
    try:
        return reconnector.recover(outage, forward, adopt, 4000, "lost"), adopted
    finally:
        reconnector.close(1.0)


def test_connect_failures_are_retried_with_backoff_until_one_works() -> None:
    outage = Outage(ttl=600)
    opener, opened = script(SSHError("refused"), TimeoutError("slow"), None)
    ok, adopted = run(outage, opener)
    assert ok and [session for session, _ in adopted] == opened
    reconnecting = [e for e in outage.events if isinstance(e, events.Reconnecting)]
    assert [e.attempt for e in reconnecting] == [1, 2, 3]
    assert [e.delay for e in reconnecting] == [1, 2, 4]
    assert [e.error for e in reconnecting] == ["lost", "refused", "slow"]
    assert all(e.remote_port == 4000 for e in reconnecting)
    assert outage.kinds()[-1] == "reconnected"


@pytest.mark.parametrize(
    "fatal", [AuthFailed("denied"), HostKeyChanged("changed"), HostKeyUnknown("unknown")]
)
def test_a_fatal_failure_ends_at_once_with_its_own_error(fatal: Exception) -> None:
    outage = Outage(ttl=600)
    opener, _ = script(SSHError("down"), fatal)
    with pytest.raises(type(fatal)) as caught:
        run(outage, opener)
    assert caught.value.exit_code == fatal.exit_code  # type: ignore[attr-defined]
    assert "reconnected" not in outage.kinds()


def test_a_widened_bind_is_fatal_and_its_session_closed() -> None:
    outage = Outage(ttl=600)
    opener, opened = script(None)

    def widened(session: Any) -> Listener:
        raise ForwardWidened("bound on all interfaces")

    with pytest.raises(ForwardWidened):
        run(outage, opener, widened)
    assert [session.closed for session in opened] == [1]


def test_a_refused_port_is_retried_for_the_patience_then_exit_8() -> None:
    outage = Outage(ttl=3600)
    opener, opened = script(*[None] * 20)

    def refused(session: Any) -> Listener:
        raise ForwardRefused("port taken")

    with pytest.raises(ConnectionLost) as caught:
        run(outage, opener, refused)
    assert caught.value.exit_code == 8
    assert "remote port 4000 could not be had again" in caught.value.message
    assert all(session.closed == 1 for session in opened)  # every refused session closed
    assert 60 <= outage.now < 200


def test_the_ttl_running_out_while_the_server_is_gone_is_exit_8() -> None:
    outage = Outage(ttl=10)
    opener, _ = script(*[SSHError("Connection refused")] * 20)
    with pytest.raises(ConnectionLost) as caught:
        run(outage, opener)
    assert caught.value.exit_code == 8
    assert "before the TTL ran out" in caught.value.message
    assert "Connection refused" in caught.value.message
    waits = [e.delay for e in outage.events if isinstance(e, events.Reconnecting)]
    assert waits == [1, 2, 4, 3]  # the last wait is cut to what is left of the TTL


def test_a_stop_during_the_wait_ends_without_an_attempt() -> None:
    outage = Outage(ttl=600)
    outage.stop.set()
    opener, opened = script(None)
    ok, adopted = run(outage, opener)
    assert not ok and not adopted and opened == []


def test_a_stop_during_an_attempt_closes_the_session_it_opens() -> None:
    outage = Outage(ttl=600)
    release = threading.Event()
    session = FakeSession()

    def slow_opener() -> Any:
        outage.stop.set()  # the tunnel is killed while the server is slow to answer
        release.wait(10)
        return session

    reconnector = Reconnector(slow_opener, "h", lambda: outage.now)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    try:
        assert not reconnector.recover(outage, forward_ok, lambda _: True, 4000, "lost")
    finally:
        reconnector.close(10)
        timer.join()
    assert session.closed == 1
