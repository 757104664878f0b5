"""Pump start-up and parking: no pool thread waits on a connection that has sent nothing.

The pump registers on paramiko's channel input buffer (``BufferedPipe.set_event``) and is
submitted on the first data, EOF or close; after Connect the connecting thread reads the service
and the remote side is parked until its next input. These tests drive a real Pump with a real
paramiko BufferedPipe as the channel input and a real loopback service.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from safetunnel import tokens
from safetunnel.gate import GatePolicy
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.stats import ConnCounters

TOKEN = tokens.generate()


class _Notify:
    """What BufferedPipe.set_event expects; every set() calls back (as ChannelStream does)."""

    def __init__(self, callback: Any) -> None:
        self.set = callback

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False


class FakeChannel:
    """A ByteStream over a real paramiko BufferedPipe as input."""

    def __init__(self) -> None:
        self.in_buffer: Any = BufferedPipe()  # typeshed's stubs say str; it is bytes
        self.sent = bytearray()
        self.eof_sent = threading.Event()
        self.closed = False
        self.origin = ("127.0.0.1", 40000)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return bytes(self.in_buffer.read(max_bytes, timeout))
        except PipeTimeout:
            raise TimeoutError from None

    def write_all(self, data: bytes) -> None:
        self.sent += data

    def half_close(self) -> None:
        self.eof_sent.set()

    def notify_on_input(self, callback: Any) -> bool:
        self.in_buffer.set_event(_Notify(callback))
        return True

    def close(self) -> None:
        self.closed = True
        self.in_buffer.close()


@pytest.fixture
def reqrep() -> Iterator[tuple[str, int]]:
    """Loopback service: reads one line, replies ``ok <line>`` and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"ok " + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join(2)
    server.close()


class Harness:
    def __init__(self, service: tuple[str, int], header_timeout: float = 10.0) -> None:
        self.chan = FakeChannel()
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.submitted = 0
        self.finished = threading.Event()
        self.result: tuple[bool, str] | None = None
        self.decisions: list[tuple[bool, str]] = []
        policy = GatePolicy(
            token_hash=tokens.hash_token(TOKEN),
            tunnel_id="st-test",
            protocol="tcp",
            header_timeout=header_timeout,
        )
        self.pump = Pump(
            self.chan,
            ConnCounters(origin="127.0.0.1:1"),
            policy,
            service,
            self._submit,
            self._decision,
            self._finished,
        )

    def _submit(self, fn: object) -> object:
        self.submitted += 1
        assert callable(fn)
        return self.pool.submit(fn)

    def _decision(self, _c: ConnCounters, allowed: bool, reason: str) -> None:
        self.decisions.append((allowed, reason))

    def _finished(self, _c: ConnCounters, allowed: bool, reason: str) -> None:
        self.result = (allowed, reason)
        self.finished.set()

    def close(self) -> None:
        self.pump.close()
        self.pool.shutdown(wait=True)


def test_no_thread_until_input_then_a_full_exchange(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep)
    try:
        h.pump.start(h.pump.run)
        time.sleep(0.1)
        assert h.submitted == 0  # nothing sent yet: no pool thread is spent on it
        h.chan.in_buffer.feed(f"SAFETUNNEL {TOKEN}\nping\n".encode())
        assert h.chan.eof_sent.wait(5)  # reply relayed and the service's EOF passed on
        assert bytes(h.chan.sent) == b"ok ping\n"
        assert h.decisions == [(True, "allowed")]
        assert not h.finished.is_set()  # the remote side is parked, not finished
        h.chan.in_buffer.close()  # remote EOF resumes it
        assert h.finished.wait(5)
        assert h.result is not None and h.result[0] is True
        assert h.submitted == 2  # first input, then the parked remote side's EOF
    finally:
        h.close()


def test_silent_client_is_timed_out_once_overdue(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep, header_timeout=0.2)
    try:
        h.pump.start(h.pump.run)
        assert not h.pump.overdue(time.monotonic())
        time.sleep(0.3)
        assert h.pump.overdue(time.monotonic())
        h.pump.kick()  # what the tunnel's supervisor tick does
        assert h.finished.wait(5)
        assert h.result == (False, "timeout")
        assert h.decisions == [(False, "timeout")]
        assert h.chan.closed
    finally:
        h.close()


def test_bad_token_never_reaches_the_service(reqrep: tuple[str, int]) -> None:
    h = Harness(reqrep)
    try:
        h.pump.start(h.pump.run)
        h.chan.in_buffer.feed(b"SAFETUNNEL st_" + b"x" * 43 + b"\nping\n")
        assert h.finished.wait(5)
        assert h.result == (False, "unauthorized")
        assert bytes(h.chan.sent) == b""
    finally:
        h.close()
