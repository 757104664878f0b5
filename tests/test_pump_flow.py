"""The pump's phases end to end over a real paramiko BufferedPipe and real loopback sockets:
the service connect, a service that is gone, refusals priced by the tunnel, the expiry the tunnel
passes in, and bugs that must surface with their traceback."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

import pytest
from e2e import wait_for
from pumpkit import TOKEN, FakeChannel, Harness, reqrep

from safetunnel.gate.responses import BAD_GATEWAY
from safetunnel.sharing import pumpio
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import Phase
from safetunnel.sharing.stats import ConnCounters

__all__ = ["reqrep"]  # the fixture, used by name

PREAMBLE = f"SAFETUNNEL {TOKEN}\n".encode()


def closed_port() -> tuple[str, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()  # closed again at once: nothing listens there


def test_a_service_that_is_gone_gets_the_gates_502() -> None:
    h = Harness(closed_port(), protocol="http")
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: %s\r\n\r\n" % TOKEN.encode()
        )
        assert h.finished.wait(5)
        assert bytes(h.chan.sent) == BAD_GATEWAY
        assert h.decisions == [(True, "allowed")]  # the token was right: not a denial
        assert h.result == (True, "service-unavailable")
        assert h.pump.phase is Phase.CLOSED
    finally:
        h.close()


def test_a_gone_tcp_service_is_closed_without_a_reply() -> None:
    h = Harness(closed_port())
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(PREAMBLE + b"hello")
        assert h.finished.wait(5)
        assert bytes(h.chan.sent) == b""
        assert h.result == (True, "service-unavailable")
        assert h.chan.closed
    finally:
        h.close()


def test_the_service_is_connected_outside_the_gate_lock(
    reqrep: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(reqrep)
    held: list[bool] = []
    real_open = pumpio.open_local

    def watched(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        held.append(h.pump._gate_lock.locked())
        return real_open(address, timeout)

    monkeypatch.setattr(pumpio, "open_local", watched)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(PREAMBLE + b"ping\n")
        assert h.chan.eof_sent.wait(5)
        assert bytes(h.chan.sent) == b"ok ping\n"
        assert held == [False]
    finally:
        h.close()


def test_a_refusal_asks_the_tunnel_for_its_delay_once(reqrep: tuple[str, int]) -> None:
    asked: list[tuple[str, float]] = []

    def refusal_delay(source: str, now: float) -> float:
        asked.append((source, now))
        return 0.01

    h = Harness(reqrep, refusal_delay=refusal_delay, clock=lambda: 500.0)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(b"SAFETUNNEL st_" + b"x" * 43 + b"\nping\n")
        assert h.finished.wait(5)
        assert h.result == (False, "unauthorized")
        assert asked == [("127.0.0.1", 500.0)]  # per source host, on the tunnel's clock
    finally:
        h.close()


def test_a_refusal_the_scheduler_declines_is_answered_on_the_pump_thread(
    reqrep: tuple[str, int],
) -> None:
    """A full scheduler declines to hold one more answer back: the refusal then goes out and the
    channel closes at once, instead of the channel staying open (and buffering) unanswered."""
    declined: list[float] = []

    def later(delay: float, _call: object) -> bool:
        declined.append(delay)
        return False

    h = Harness(reqrep, refusal_delay=lambda _source, _now: 5.0, later=later)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(b"SAFETUNNEL st_" + b"x" * 43 + b"\nping\n")
        assert h.finished.wait(5)
        assert h.result == (False, "unauthorized")
        assert declined == [5.0]
        assert h.chan.closed
    finally:
        h.close()


def test_an_allowed_connection_costs_no_refusal(reqrep: tuple[str, int]) -> None:
    asked: list[float] = []
    h = Harness(reqrep, refusal_delay=lambda _source, now: asked.append(now) or 0.0)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(PREAMBLE + b"ping\n")
        assert h.chan.eof_sent.wait(5)
        h.chan.in_buffer.close()
        assert h.finished.wait(5)
        assert h.result is not None and h.result[0] is True
        assert asked == []
    finally:
        h.close()


def test_the_link_cookie_lives_until_the_expiry_the_tunnel_passes_now() -> None:
    expiry = [1000.0]
    h = Harness(closed_port(), protocol="http", clock=lambda: 400.0, expires_at=lambda: expiry[0])
    try:
        expiry[0] = 4000.0  # the tunnel was extended after the connection opened
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(
            b"GET /?safetunnel_token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % TOKEN.encode()
        )
        h.chan.in_buffer.close()
        assert h.finished.wait(5)
        assert b"Max-Age=3600\r\n" in bytes(h.chan.sent)
    finally:
        h.close()


class _BrokenCounters(ConnCounters):
    def add_out(self, count: int) -> None:
        raise TypeError("a bug on the service side")


def _raise_type_error(*_args: object) -> None:
    raise TypeError("a bug in a callback")


@pytest.mark.parametrize("bug", ["on_decision", "service_side"])
def test_a_bug_is_logged_with_its_traceback(
    reqrep: tuple[str, int], caplog: pytest.LogCaptureFixture, bug: str
) -> None:
    if bug == "on_decision":
        h = Harness(reqrep, on_decision=_raise_type_error)
    else:
        h = Harness(reqrep, counters=_BrokenCounters(origin="127.0.0.1:1"))
    caplog.set_level(logging.ERROR, logger="safetunnel.sharing.pump")
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(PREAMBLE + b"ping\n")
        h.chan.in_buffer.close()
        assert h.finished.wait(5)
        assert h.result is not None and h.result[1] == "error: TypeError"
        records = [r for r in caplog.records if r.exc_info is not None]
        assert len(records) == 1, caplog.records
        assert records[0].exc_info is not None and records[0].exc_info[0] is TypeError
        assert TOKEN not in caplog.text
    finally:
        h.close()


def test_teardown_during_the_service_connect_leaks_nothing(
    reqrep: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(reqrep)
    opened: list[socket.socket] = []
    real_open = pumpio.open_local

    def close_meanwhile(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        h.pump.close()  # what teardown does, from its own thread, while we connect
        opened.append(real_open(address, timeout))
        return opened[-1]

    monkeypatch.setattr(pumpio, "open_local", close_meanwhile)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(PREAMBLE + b"ping\n")
        assert h.finished.wait(5)
        assert h.result is not None and h.result[0] is False
        assert opened and opened[0].fileno() == -1  # closed, not leaked
    finally:
        h.close()


class WindowFull(FakeChannel):
    """A channel whose client reads nothing: its SSH window is full, so a blocking write would
    wait for ever, and nothing goes out without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked = threading.Event()

    def write_all(self, data: bytes) -> None:
        self.blocked.set()
        threading.Event().wait(30)  # what paramiko's sendall does with no window

    def write_nowait(self, data: bytes) -> bool:
        return False


def test_a_held_back_refusal_never_waits_for_a_client_that_reads_nothing(
    reqrep: tuple[str, int],
) -> None:
    """The held-back answer runs on the one thread that holds them all, and teardown waits for
    it: the connection closes with what the channel takes at once, never blocking that thread."""
    calls: list[Callable[[], None]] = []

    def later(_delay: float, call: Callable[[], None]) -> bool:
        calls.append(call)
        return True

    h = Harness(reqrep, protocol="http", refusal_delay=lambda _source, _now: 5.0, later=later)
    h.chan = WindowFull()
    h.pump = Pump(h.chan, h.counters, h.pump._hooks)
    try:
        h.pump.start(h.pump.run)
        wrong = b"st_" + b"x" * 43
        h.chan.in_buffer.feed(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: " + wrong + b"\r\n\r\n"
        )
        assert wait_for(lambda: bool(calls), 5)
        done = threading.Thread(target=calls[0])
        done.start()
        done.join(10)
        assert not done.is_alive()  # the scheduler's thread is free again
        assert not h.chan.blocked.is_set()
        assert h.chan.closed
    finally:
        h.close()
