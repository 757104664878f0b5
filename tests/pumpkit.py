"""A real Pump over a real paramiko BufferedPipe as its channel input and a real loopback
service: the channel and the harness that records what the pump reported."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import PumpHooks
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
        self.discarded = False
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

    def discard_input(self) -> None:
        self.discarded = True
        self.in_buffer.empty()

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
    def __init__(
        self,
        service: tuple[str, int],
        header_timeout: float = 10.0,
        protocol: str = "tcp",
        counters: ConnCounters | None = None,
        **hooks: Any,
    ) -> None:
        self.chan = FakeChannel()
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.submitted = 0
        self.finished = threading.Event()
        self.result: tuple[bool, str] | None = None
        self.decisions: list[tuple[bool, str]] = []
        policy = GatePolicy(
            token_hash=tokens.hash_token(TOKEN),
            tunnel_id="st-test",
            protocol=protocol,  # type: ignore[arg-type]
            header_timeout=header_timeout,
        )
        settings: dict[str, Any] = {
            "policy": policy,
            "service": service,
            "submit": self._submit,
            "on_decision": self._decision,
            "on_finished": self._finished,
            **hooks,
        }
        self.counters = counters or ConnCounters(origin="127.0.0.1:1")
        self.pump = Pump(self.chan, self.counters, PumpHooks(**settings))

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
