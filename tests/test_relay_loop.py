"""The relay loop: one thread moves every socket-backed connection of a share, so nothing it
does may wait on one client or one service. Real unix socket pairs (as the OpenSSH engine
delivers connections) and real loopback services."""

from __future__ import annotations

import dataclasses
import gc
import os
import resource
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pumpkit import TOKEN
from services import Service

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy
from safetunnel.sharing import pumprelay, pumpsock
from safetunnel.sharing.intake import LoopIntake
from safetunnel.sharing.loopwait import Waiter
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptypes import PumpHooks
from safetunnel.sharing.relayloop import READ, RelayLoop
from safetunnel.sharing.stats import ConnCounters
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.openssh.forward import GateSocket
from safetunnel.ssh.openssh.stream import SocketStream

PREAMBLE = f"SAFETUNNEL {TOKEN}\n".encode()
LOOP_NAME = "test-relay-loop"


class Share:
    """One relay loop and the pumps of one share's connections; the test holds the client ends."""

    def __init__(self, service: tuple[str, int], protocol: str = "tcp") -> None:
        self.loop = RelayLoop(LOOP_NAME, time.monotonic)
        self.results: dict[ConnCounters, tuple[bool, str, str]] = {}
        self.lock = threading.Lock()
        self.ended = threading.Condition(self.lock)
        self.pumps: list[Pump] = []
        policy = GatePolicy(
            token_hash=tokens.hash_token(TOKEN),
            tunnel_id="st-test",
            protocol=protocol,  # type: ignore[arg-type]
        )
        self.hooks = PumpHooks(
            policy=policy,
            service=service,
            submit=self._no_threads,
            on_decision=lambda _c, _a, _r: None,
            on_finished=self._finished,
            relay=self.loop,
        )

    def _no_threads(self, fn: Callable[[], None]) -> object:
        raise AssertionError("a socket-backed connection asked for a pool thread")

    def _finished(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        with self.lock:
            self.results[counters] = (allowed, reason, threading.current_thread().name)
            self.ended.notify_all()

    def connect(self, hooks: PumpHooks | None = None) -> socket.socket:
        ours, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        pump = pumprelay.make_pump(
            SocketStream(ours, ("127.0.0.1", 0)),
            ConnCounters(origin="127.0.0.1:0"),
            hooks or self.hooks,
        )
        self.pumps.append(pump)
        pump.start(pump.run)
        return client

    def wait_finished(self, count: int) -> list[tuple[bool, str, str]]:
        with self.lock:
            assert self.ended.wait_for(lambda: len(self.results) >= count, timeout=10)
            return list(self.results.values())

    def close(self) -> None:
        for pump in self.pumps:
            pump.close()
        self.loop.close()


@pytest.fixture
def shares() -> Iterator[list[Share]]:
    made: list[Share] = []
    yield made
    for share in made:
        share.close()


def read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def ours() -> int:
    """Threads of this process other than the test service's (one per connection)."""
    return sum(not t.name.startswith("test-service") for t in threading.enumerate())


def echo_once(conn: socket.socket, record: Callable[[bytes], None]) -> None:
    data = conn.recv(65536)
    record(data)
    conn.sendall(b"ok " + data)


def test_many_connections_at_once_share_one_thread(shares: list[Share]) -> None:
    with Service(echo_once) as service:
        share = Share(("127.0.0.1", service.port))
        shares.append(share)
        before = ours()
        clients = [share.connect() for _ in range(60)]
        for i, client in enumerate(clients):
            client.sendall(PREAMBLE + b"n%d" % i)
        answers = [read_all(client) for client in clients]
        threads_meanwhile = ours()
        for client in clients:
            client.close()
        results = share.wait_finished(60)
    assert answers == [b"ok n%d" % i for i in range(60)]
    assert threads_meanwhile <= before + 1  # the loop thread, not one per connection
    assert {(allowed, thread) for allowed, _, thread in results} == {(True, LOOP_NAME)}
    assert TOKEN.encode() not in service.received


def test_a_client_that_reads_nothing_holds_up_no_one_else(shares: list[Share]) -> None:
    """One client lets an 8 MiB answer pile up unread; the loop still serves the next one."""
    payload = b"x" * (8 * 1024 * 1024)

    def answer(conn: socket.socket, record: Callable[[bytes], None]) -> None:
        data = conn.recv(65536)
        record(data)
        conn.sendall(payload if data == b"big" else b"ok " + data)

    with Service(answer) as service:
        share = Share(("127.0.0.1", service.port))
        shares.append(share)
        stalled = share.connect()
        stalled.sendall(PREAMBLE + b"big")
        time.sleep(0.2)  # not a timing assertion: lets the big answer fill every buffer
        other = share.connect()
        other.sendall(PREAMBLE + b"small")
        assert read_all(other) == b"ok small"
        assert len(read_all(stalled)) == len(payload)  # and the stalled one still gets it all


def test_a_service_that_refuses_gets_the_gates_502(shares: list[Share]) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    share = Share(("127.0.0.1", port), protocol="http")
    shares.append(share)
    client = share.connect()
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: %s\r\n\r\n" % TOKEN.encode())
    answer = read_all(client)
    assert answer.startswith(b"HTTP/1.1 502")
    assert TOKEN.encode() not in answer
    (_allowed, _reason, thread), *_ = share.wait_finished(1)
    assert thread == LOOP_NAME


def test_a_service_that_never_accepts_times_out_without_stopping_the_loop(
    shares: list[Share], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener whose queue is full drops the handshake: the connect waits on the loop's
    timer, not on the loop, and ends in the gate's 502."""
    monkeypatch.setattr(pumpsock, "CONNECT_TIMEOUT", 2.0)
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(8):  # fill the accept queue (never accepted)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    try:
        with Service(echo_once) as other_service:
            share = Share(full.getsockname(), protocol="http")
            shares.append(share)
            waiting = share.connect()
            request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: %s\r\n\r\n"
            waiting.sendall(request % TOKEN.encode())
            # The same loop keeps serving a connection to another service meanwhile.
            elsewhere = dataclasses.replace(
                share.hooks,
                service=("127.0.0.1", other_service.port),
                policy=GatePolicy(token_hash=tokens.hash_token(TOKEN), tunnel_id="st-test"),
            )
            client = share.connect(elsewhere)
            client.sendall(PREAMBLE + b"meanwhile")
            assert read_all(client) == b"ok meanwhile"
            waiting.setblocking(False)
            with pytest.raises(BlockingIOError):  # its connect is still pending meanwhile
                waiting.recv(1)
            waiting.settimeout(10)
            assert read_all(waiting).startswith(b"HTTP/1.1 502")
    finally:
        for filler in fillers:
            filler.close()
        full.close()


def test_closing_the_loop_finishes_every_connection_and_its_thread(shares: list[Share]) -> None:
    def hold(conn: socket.socket, record: Callable[[bytes], None]) -> None:
        record(conn.recv(65536))
        conn.recv(65536)  # until the pump closes it

    with Service(hold) as service:
        share = Share(("127.0.0.1", service.port))
        clients = [share.connect() for _ in range(5)]
        for client in clients:
            client.sendall(PREAMBLE + b"hi")
        while service.connections < 5:
            time.sleep(0.01)
        share.close()  # teardown: every pump closed from this thread, then the loop
        results = share.wait_finished(5)
        for client in clients:
            assert read_all(client) == b""
            client.close()
    assert len(results) == 5
    assert not [t for t in threading.enumerate() if t.name == LOOP_NAME]


def test_the_loop_accepts_on_the_gate_socket_itself(tmp_path: Path) -> None:
    """An OpenSSH forward's unix socket is accepted on by the relay loop: no accepting thread,
    no hand-off; closing the socket stops the accepting and removes the file."""
    loop = RelayLoop(LOOP_NAME, time.monotonic)
    taken: list[str] = []
    arrived = threading.Semaphore(0)

    def on_stream(stream: ByteStream) -> None:
        taken.append(threading.current_thread().name)
        stream.close()
        arrived.release()

    path = tmp_path / "gate.sock"
    gate = GateSocket(path, LoopIntake(on_stream, loop), ("127.0.0.1", 0))
    try:
        for _ in range(3):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                assert arrived.acquire(timeout=10)
        assert taken == [LOOP_NAME] * 3
        assert not [t for t in threading.enumerate() if t.name == "safetunnel-gate-accept"]
    finally:
        gate.close()
    assert not path.exists()
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(OSError):
        client.connect(str(path))
    loop.close()
    assert not [t for t in threading.enumerate() if t.name == LOOP_NAME]


def test_running_out_of_descriptors_pauses_accepting_and_then_recovers(tmp_path: Path) -> None:
    """With no descriptor left, accept fails; the waiting connections stay queued and are taken
    once descriptors are free again (the loop neither gives up nor spins)."""
    loop = RelayLoop(LOOP_NAME, time.monotonic)
    held: list[ByteStream] = []
    arrived = threading.Semaphore(0)

    def on_stream(stream: ByteStream) -> None:
        held.append(stream)  # keeps its descriptor
        arrived.release()

    path = tmp_path / "gate.sock"
    gate = GateSocket(path, LoopIntake(on_stream, loop), ("127.0.0.1", 0))
    clients = [socket.socket(socket.AF_UNIX) for _ in range(8)]  # made before the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = {int(fd) for fd in os.listdir("/proc/self/fd")}
    free = [n for n in range(max(in_use) + 4) if n not in in_use]
    try:  # three descriptors left: a new one gets the lowest free number below the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (free[2] + 1, hard))
        for client in clients:
            client.connect(str(path))  # queued by the kernel: needs no new descriptor
        while arrived.acquire(timeout=1):
            pass
        short = len(held)
        assert short < len(clients)  # the limit bit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    for _ in range(len(clients) - short):
        assert arrived.acquire(timeout=10)  # taken once descriptors are free again
    assert len(held) == len(clients)
    for stream in held:
        stream.close()
    for client in clients:
        client.close()
    gate.close()
    loop.close()


class ScriptedPoll:
    """The loop's poll set, but the first poll reports what the test says."""

    def __init__(self, real: Any, first: list[tuple[int, int]]) -> None:
        self._real = real
        self._first: list[tuple[int, int]] | None = first

    def register(self, fd: int, events: int) -> None:
        self._real.register(fd, events)

    def unregister(self, fd: int) -> None:
        self._real.unregister(fd)

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        first, self._first = self._first, None
        return first if first is not None else list(self._real.poll(timeout))


class Recorder:
    """A loop client that records what the loop tells it."""

    def __init__(self, on_ready: Callable[[int, int], None] | None = None) -> None:
        self.ready: list[tuple[int, int]] = []
        self._then = on_ready

    def begin(self) -> None:
        """Not used: the test registers its sockets itself."""

    def on_ready(self, fd: int, events: int) -> None:
        self.ready.append((fd, events))
        if self._then is not None:
            self._then(fd, events)

    def on_timer(self) -> None:
        """Not used."""


def test_a_stale_closed_report_does_not_unwatch_the_socket_that_took_its_number() -> None:
    """poll reports a socket closed elsewhere (POLLNVAL); earlier in the same turn the loop
    accepted a connection that got the same number. The new socket must stay watched."""
    loop = RelayLoop(LOOP_NAME, time.monotonic)
    old_ours, old_peer = socket.socketpair()
    stale = old_ours.fileno()
    trigger, trigger_peer = socket.socketpair()
    newcomer = Recorder()
    made: list[socket.socket] = []

    def accept_newcomer(_fd: int, _events: int) -> None:
        ours, peer = socket.socketpair()  # takes the lowest free number: the stale one
        made.extend((ours, peer))
        assert ours.fileno() == stale
        loop.watch(newcomer, ours.fileno(), READ)

    loop.watch(Recorder(), stale, READ)
    loop.watch(Recorder(accept_newcomer), trigger.fileno(), READ)
    old_ours.close()  # closed elsewhere: its number is free
    loop._poller = ScriptedPoll(  # type: ignore[assignment]
        loop._poller, [(trigger.fileno(), select.POLLIN), (stale, select.POLLNVAL)]
    )
    loop._waiter = Waiter(loop._poller)
    loop._turn()
    newcomer.ready.clear()
    made[1].sendall(b"x")  # the newcomer's client speaks: the loop must hear it
    loop._turn()
    assert (stale, READ) in newcomer.ready
    for sock in (*made, old_peer, trigger, trigger_peer):
        sock.close()
    loop.close()


def test_a_finished_connection_is_freed_without_the_cycle_collector() -> None:
    """A connection's objects go when it ends: the cyclic collector's passes over thousands of
    finished connections cost a busy share more than a tenth of its CPU."""
    with Service(echo_once) as service:
        share = Share(("127.0.0.1", service.port))
        gc.disable()
        try:
            client = share.connect()
            client.sendall(PREAMBLE + b"hi")
            assert read_all(client) == b"ok hi"
            client.close()
            share.wait_finished(1)
            pump = weakref.ref(share.pumps.pop())
            share.close()  # the loop lets go of what it still held: the cancelled deadline
            assert pump() is None, "a finished pump is kept alive by a reference cycle"
        finally:
            gc.enable()


class _Idle:
    def begin(self) -> None:
        pass

    def on_ready(self, fd: int, events: int) -> None:
        pass

    def on_timer(self) -> None:
        pass


def test_cancelled_deadlines_do_not_keep_their_connections() -> None:
    loop = RelayLoop(LOOP_NAME, time.monotonic)
    gone: list[weakref.ref[_Idle]] = []
    for _ in range(3000):
        client = _Idle()
        loop.at(client, time.monotonic() + 60)  # a gate's header deadline
        loop.at(client, None)  # the gate passed it
        loop.done(client)
        gone.append(weakref.ref(client))
        del client
    kept = sum(ref() is not None for ref in gone)
    loop.close()
    assert kept < 600, f"{kept} of 3000 finished connections still held by the timer heap"


class _Began:
    """A loop client that notes whether its first step knew it ran on the loop."""

    def __init__(self, loop: RelayLoop) -> None:
        self.loop = loop
        self.began = threading.Event()
        self.on_loop = False

    def begin(self) -> None:
        self.on_loop = self.loop.on_loop()
        self.began.set()

    def on_ready(self, fd: int, events: int) -> None:
        """Not used."""

    def on_timer(self) -> None:
        """Not used."""


def test_a_thread_started_after_the_loop_ended_is_not_taken_for_the_loop() -> None:
    """A new thread often gets the number of one that ended: events it raises must not wait
    for a loop that will never deliver them."""
    loop = RelayLoop(LOOP_NAME, time.monotonic)
    client = _Began(loop)
    loop.add(client)
    assert client.began.wait(5)
    assert client.on_loop
    loop.close()
    answers: list[bool] = []
    for _ in range(20):
        later = threading.Thread(target=lambda: answers.append(loop.on_loop()))
        later.start()
        later.join()
    assert answers == [False] * 20
