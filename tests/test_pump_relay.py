"""The relay pump (steps run by the tunnel's relay loop thread) over a real unix socket pair, as
the OpenSSH engine delivers connections, and real loopback services."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from e2e import wait_until
from pumpkit import TOKEN, FakeChannel
from services import Service, http_keepalive

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing import pumpio, pumprelay, pumpsock
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import Phase, PumpHooks
from safetunnel.sharing.relayloop import READ, RelayLoop
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.openssh.stream import SocketStream

PREAMBLE = f"SAFETUNNEL {TOKEN}\n".encode()
AUTHED_HEAD = b"Host: x\r\nX-Safetunnel-Token: %s\r\n\r\n" % TOKEN.encode()


class RelayHarness:
    """A pump for one end of a unix socket pair; the test is the client on the other end."""

    def __init__(
        self,
        service: tuple[str, int],
        protocol: str = "tcp",
        policy: GatePolicy | None = None,
        **hooks: Any,
    ) -> None:
        ours, self.client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ours = ours
        self.client.settimeout(10)
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.submitted = 0
        self.finished = threading.Event()
        self.result: tuple[bool, str] | None = None
        self.finished_on = ""
        self.loop = RelayLoop("test-relay", time.monotonic)
        policy = policy or GatePolicy(
            token_hash=tokens.hash_token(TOKEN),
            tunnel_id="st-test",
            protocol=protocol,  # type: ignore[arg-type]
        )
        hooks = PumpHooks(
            policy=policy,
            service=service,
            submit=self._submit,
            on_decision=lambda _c, _a, _r: None,
            on_finished=self._finished,
            relay=self.loop,
            **hooks,
        )
        stream = SocketStream(ours, ("127.0.0.1", 0))
        self.pump = pumprelay.make_pump(stream, ConnCounters(origin="127.0.0.1:0"), hooks)
        self.pump.start(self.pump.run)

    def _submit(self, fn: Callable[[], None]) -> object:
        self.submitted += 1
        return self.pool.submit(fn)

    def _finished(self, _c: ConnCounters, allowed: bool, reason: str) -> None:
        self.result = (allowed, reason)
        self.finished_on = threading.current_thread().name
        self.finished.set()

    def read_all(self) -> bytes:
        data = bytearray()
        while chunk := self.client.recv(65536):
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.pump.close()
        self.client.close()
        self.loop.close()
        self.pool.shutdown(wait=True)


@pytest.fixture
def harnesses() -> Iterator[list[RelayHarness]]:
    made: list[RelayHarness] = []
    yield made
    for harness in made:
        harness.close()


def serve(handle: Callable[[socket.socket, Callable[[bytes], None]], None]) -> Service:
    return Service(handle)


def test_a_socket_stream_gets_the_relay_and_a_channel_the_threaded_pump() -> None:
    hooks: Any = PumpHooks(
        policy=GatePolicy(token_hash=tokens.hash_token(TOKEN), tunnel_id="st-test"),
        service=("127.0.0.1", 1),
        submit=lambda fn: None,
        on_decision=lambda _c, _a, _r: None,
        on_finished=lambda _c, _a, _r: None,
        relay=RelayLoop("unused", time.monotonic),
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        relay = pumprelay.make_pump(SocketStream(ours, ("127.0.0.1", 0)), ConnCounters("o"), hooks)
        threaded = pumprelay.make_pump(FakeChannel(), ConnCounters("o"), hooks)
    assert type(relay) is pumprelay.RelayPump
    assert type(threaded) is Pump


def test_tcp_both_ways_with_half_close_on_one_thread(harnesses: list[RelayHarness]) -> None:
    def reply_after_eof(conn: socket.socket, record: Callable[[bytes], None]) -> None:
        while data := conn.recv(65536):
            record(data)
        conn.sendall(b"got it")

    with serve(reply_after_eof) as service:
        h = RelayHarness(("127.0.0.1", service.port))
        harnesses.append(h)
        h.client.sendall(PREAMBLE + b"hello")
        h.client.shutdown(socket.SHUT_WR)  # the service must read EOF, then answer
        assert h.read_all() == b"got it"
        assert h.finished.wait(10)
        assert h.result == (True, "eof")
        assert bytes(service.received) == b"hello"  # the preamble (token) never reaches it
    assert (h.submitted, h.finished_on) == (0, "test-relay")  # all of it on the loop
    assert h.pump.phase is Phase.CLOSED


def test_http_keep_alive_requests_are_gated_each_time(harnesses: list[RelayHarness]) -> None:
    with serve(http_keepalive) as service:
        h = RelayHarness(("127.0.0.1", service.port), protocol="http")
        harnesses.append(h)
        for path in (b"/one", b"/two"):
            h.client.sendall(b"GET " + path + b" HTTP/1.1\r\n" + AUTHED_HEAD)
            answer = b""
            while not answer.endswith(b"hello " + path):
                answer += h.client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")
        h.client.sendall(b"GET /three HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: st_wrong\r\n\r\n")
        refused = h.read_all()
        assert b"/three" not in service.received
        assert TOKEN.encode() not in service.received
    assert refused.startswith(b"HTTP/1.1 4")
    assert h.finished.wait(10)
    assert (h.submitted, h.finished_on) == (0, "test-relay")


def test_a_client_that_does_not_read_holds_back_the_service(
    harnesses: list[RelayHarness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the client reads nothing, the pump stops reading the service once its outbox holds
    HIGH_WATER bytes: memory stays bounded, and every byte still arrives in order."""
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB
    largest = [0]
    real_put = pumpsock.Pending.put

    def watched(self: pumpsock.Pending, data: bytes | bytearray | memoryview) -> None:
        real_put(self, data)
        largest[0] = max(largest[0], self.size)

    monkeypatch.setattr(pumpsock.Pending, "put", watched)

    def flood(conn: socket.socket, _record: Callable[[bytes], None]) -> None:
        conn.sendall(payload)

    with serve(flood) as service:
        h = RelayHarness(("127.0.0.1", service.port))
        harnesses.append(h)
        h.client.sendall(PREAMBLE)
        h.client.shutdown(socket.SHUT_WR)
        # Nothing read yet: the socket buffers fill, then the outbox, then the pump holds off.
        wait_until(lambda: largest[0] >= pumprelay.HIGH_WATER, what="a full outbox")
        assert h.read_all() == payload
        assert h.finished.wait(10)
    assert 0 < largest[0] < pumprelay.HIGH_WATER + 256 * 1024


def test_a_client_that_reads_none_of_the_gates_own_answers_is_not_read_further(
    harnesses: list[RelayHarness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link is answered by the gate itself (303 and a cookie), so no service holds the client
    back: while it reads none of those answers, the pump must stop reading it once its outbox
    holds HIGH_WATER bytes. Otherwise one link holder grows the share's memory without bound."""
    largest = [0]
    real_put = pumpsock.Pending.put

    def watched(self: pumpsock.Pending, data: bytes | bytearray | memoryview) -> None:
        real_put(self, data)
        largest[0] = max(largest[0], self.size)

    monkeypatch.setattr(pumpsock.Pending, "put", watched)
    link = b"GET /?safetunnel_token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % TOKEN.encode()
    flood = link * (4 * 1024 * 1024 // len(link))  # about 4 MiB of requests, 3x that answered
    h = RelayHarness(("127.0.0.1", 1), policy=GatePolicy.for_token(TOKEN, "st-test"))
    harnesses.append(h)
    h.client.settimeout(None)  # the sender blocks while the pump holds off, as it should
    sent = threading.Event()

    def send() -> None:
        with contextlib.suppress(OSError):
            h.client.sendall(flood)
            h.client.shutdown(socket.SHUT_WR)
        sent.set()

    sender = threading.Thread(target=send)
    sender.start()
    pump = h.pump
    assert isinstance(pump, pumprelay.RelayPump)

    def held_off() -> bool:
        reading = pump._masks.get(pump._remote_fd, 0) & READ  # what the loop watches it for
        return largest[0] >= pumprelay.HIGH_WATER and not reading

    wait_until(lambda: sent.is_set() or held_off(), timeout=60, what="a full outbox")
    answers = h.read_all()  # now the client reads: everything arrives, in order
    sender.join(30)
    assert h.finished.wait(10)
    assert answers.count(b"HTTP/1.1 303 See Other\r\n") == flood.count(b"GET ")
    # One read's worth of requests answered past the mark, no more.
    assert largest[0] < pumprelay.HIGH_WATER + 4 * pumpio.BUFSIZE, largest[0]


def test_a_delayed_refusal_answer_never_waits_for_a_client_that_reads_nothing(
    harnesses: list[RelayHarness],
) -> None:
    """A refusal's answer, held back to slow down guessing, goes out later on the one thread
    that holds every such answer, and teardown waits for that thread. A client that read none
    of the answers before it (links) must not hold it: what its socket takes goes out, the
    connection closes. Before, the answer waited for the client for ever, and so did the share
    at its TTL."""
    answered = threading.Event()

    def later(delay: float, call: Callable[[], None]) -> bool:
        def run() -> None:
            time.sleep(delay)
            call()
            answered.set()

        threading.Thread(target=run, daemon=True).start()
        return True

    h = RelayHarness(
        ("127.0.0.1", 1),
        policy=GatePolicy.for_token(TOKEN, "st-test"),
        refusal_delay=lambda _source, _now: 0.01,
        later=later,
    )
    harnesses.append(h)
    h.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # little room for answers
    link = b"GET /?safetunnel_token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % TOKEN.encode()
    h.client.sendall(link * 200 + b"NOT HTTP\r\n\r\n")  # 200 answers, then a refusal
    wait_until(answered.is_set, timeout=20, what="the delayed answer to return")
    assert h.finished.wait(10)
    assert h.result == (False, "bad-request")
    got = h.read_all()  # what the socket took, then the close
    assert got.startswith(b"HTTP/1.1 303 See Other\r\n")
