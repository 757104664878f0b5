"""Backpressure: while the gate holds enough unconsumed remote input (a pipelined backlog behind
a request in flight), the pump does not read the channel, so its SSH window closes and the
client waits; once the service's answer lets the gate want more, reading resumes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from e2e import wait_for
from pumpkit import TOKEN, Harness

from safetunnel.gate.core import Gate

MIB = 1 << 20


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: {TOKEN}\r\n\r\n".encode()


class HeldService:
    """Answers each request only once ``release`` is set; records what it received."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.server.getsockname()
        self.release = threading.Event()
        self.received = bytearray()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            pending = b""
            while data := conn.recv(65536):
                self.received += data
                pending += data
                while b"\r\n\r\n" in pending:
                    _, _, pending = pending.partition(b"\r\n\r\n")
                    self.release.wait()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.release.set()
        self.server.close()


@pytest.fixture
def held() -> Iterator[HeldService]:
    service = HeldService()
    yield service
    service.close()


def test_the_pump_stops_reading_while_the_gate_wants_no_more_and_resumes_after(
    held: HeldService, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = [True]  # the gate's answer, scripted: when it says so is the gate's business
    monkeypatch.setattr(Gate, "wants_remote_data", property(lambda _: wanted[0]))
    h = Harness(held.address, protocol="http")
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(request("/first"))
        assert wait_for(lambda: b"/first" in held.received, 5)
        wanted[0] = False
        h.chan.in_buffer.feed(request("/second"))
        assert wait_for(lambda: h.pump.paused, 5)
        assert len(h.chan.in_buffer) == len(request("/second"))  # not read: the window closes
        wanted[0] = True
        held.release.set()  # the answer to /first is the service side's event that resumes
        assert wait_for(lambda: b"/second" in held.received, 5)
        assert wait_for(lambda: bytes(h.chan.sent).count(b"200 OK") == 2, 5)
    finally:
        h.close()


def test_a_pipelined_backlog_stays_in_the_channel_until_the_service_answers(
    held: HeldService,
) -> None:
    h = Harness(held.address, protocol="http")
    backlog = request("/next") * (MIB // len(request("/next")))
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(request("/first") + backlog)
        assert wait_for(lambda: h.pump.paused, 5)
        unread = len(h.chan.in_buffer)
        assert unread >= len(backlog) // 2, (
            f"the pump read {(len(backlog) - unread) / MIB:.1f} MiB of a "
            f"{len(backlog) / MIB:.0f} MiB backlog behind a request in flight"
        )
        held.release.set()
        assert wait_for(lambda: len(h.chan.in_buffer) == 0, 30)
    finally:
        h.close()
