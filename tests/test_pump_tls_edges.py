"""The edges of a TLS connection at the share, over real socket pairs and a real ``ssl`` client:
which failures are refusals (counted, their answer possibly held back) and which are not, the
closing alert on an orderly close that never waits on a client reading nothing, and a handshake
stuck half-way cut at the gate's header deadline by a real pump."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from e2e import recv_all
from pumpkit import reqrep

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy
from safetunnel.gate.tls import TlsCodec, TlsRefused
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.pumptls import TlsStream
from safetunnel.sharing.pumptypes import PumpHooks
from safetunnel.sharing.stats import ConnCounters
from safetunnel.sharing.tlscert import make_identity
from safetunnel.ssh.openssh.stream import SocketStream

__all__ = ["reqrep"]  # the fixture, used by name

IDENTITY = make_identity(["h.example"], datetime.now(UTC) + timedelta(hours=1))


class Refusals:
    """The tunnel's side of a failed handshake: records each, holds the answer when asked."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.sources: list[str] = []
        self.answers: list[Callable[[], None]] = []

    def __call__(self, source: str, answer: Callable[[], None]) -> bool:
        self.sources.append(source)
        if self.hold:
            self.answers.append(answer)
        return self.hold


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_hello() -> bytes:
    """A real client's first flight, from a client that then says nothing more."""
    outgoing = ssl.MemoryBIO()
    tls = client_context().wrap_bio(ssl.MemoryBIO(), outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def handshaken(
    server: socket.socket, client: socket.socket, refusals: Refusals | None = None
) -> tuple[TlsStream, ssl.SSLSocket]:
    """A TlsStream and a client whose handshake is over (the stream reads one byte)."""
    stream = TlsStream(SocketStream(server, ("127.0.0.1", 0)), IDENTITY.context, refusals)
    tls: list[ssl.SSLSocket] = []

    def connect() -> None:
        conn = client_context().wrap_socket(client, suppress_ragged_eofs=False)
        conn.sendall(b"x")
        tls.append(conn)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    assert stream.read(1, timeout=10) == b"x"
    thread.join(10)
    return stream, tls[0]


def test_eof_before_any_byte_is_no_refusal() -> None:
    codec = TlsCodec(IDENTITY.context)
    assert codec.receive(b"") == b""
    assert codec.ended


def test_eof_in_the_middle_of_the_handshake_is_a_refusal() -> None:
    codec = TlsCodec(IDENTITY.context)
    assert codec.receive(client_hello()) == b""
    assert codec.outgoing()  # the server's flight: the client saw the key, and gave up
    with pytest.raises(TlsRefused) as caught:
        codec.receive(b"")
    assert caught.value.audit_reason == "tls"


@pytest.mark.parametrize("hold", [False, True])
def test_a_failed_handshake_is_reported_and_its_answer_held_when_asked(
    sockets: tuple[socket.socket, socket.socket], hold: bool
) -> None:
    server, client = sockets
    refusals = Refusals(hold)
    stream = TlsStream(SocketStream(server, ("192.0.2.7", 0)), IDENTITY.context, refusals)
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(TlsRefused):
        stream.read(65536, timeout=10)
    assert refusals.sources == ["192.0.2.7"]
    if hold:
        stream.close()  # what the pump does next: the held answer, not this, ends it
        with pytest.raises(TimeoutError):
            client.settimeout(0.2)
            client.recv(100)
        refusals.answers[0]()
    recv_all(client, 10)  # the alert, if any, then the end (the helper's limit: a hang guard)
    assert server.fileno() == -1  # closed


def test_a_bad_record_after_the_handshake_is_not_a_failed_handshake(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    server, client = sockets
    refusals = Refusals(hold=True)
    stream, tls = handshaken(server, client, refusals)
    with socket.fromfd(tls.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # an application record, forged
    with pytest.raises(TlsRefused):
        stream.read(65536, timeout=10)
    assert refusals.sources == []
    stream.close()
    tls.close()


def test_close_sends_the_closing_alert(sockets: tuple[socket.socket, socket.socket]) -> None:
    server, client = sockets
    stream, tls = handshaken(server, client)
    stream.write_all(b"answer")
    stream.close()
    tls.settimeout(10)
    assert tls.recv(100) == b"answer"
    assert tls.recv(100) == b""  # no SSLEOFError: the end was announced, not a truncation
    tls.close()


def test_close_never_waits_on_a_client_that_reads_nothing(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    server, client = sockets
    stream, tls = handshaken(server, client)
    with pytest.raises(BlockingIOError):
        while True:  # fill every buffer between the two: a blocking write would now wait
            server.send(b"\0" * 65536, socket.MSG_DONTWAIT)
    closed = threading.Event()
    threading.Thread(target=lambda: (stream.close(), closed.set()), daemon=True).start()
    assert closed.wait(10)
    tls.close()


def test_close_while_a_write_is_stuck_frees_it(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    server, client = sockets
    stream, tls = handshaken(server, client)
    stuck: list[BaseException] = []

    def write() -> None:
        try:
            stream.write_all(b"\0" * 8_000_000)  # the client reads none of it
        except OSError as err:
            stuck.append(err)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while writer.is_alive() and not stream._send_lock.locked():
        time.sleep(0.01)
    stream.close()
    writer.join(10)
    assert not writer.is_alive() and stuck
    tls.close()


def test_a_handshake_stuck_half_way_is_cut_at_the_header_deadline(
    sockets: tuple[socket.socket, socket.socket], reqrep: tuple[str, int]
) -> None:
    """ClientHello, then silence: the pump's thread reads until the gate's deadline, the gate
    times the connection out as a refusal (counted), and the thread is given back."""
    server, client = sockets
    pool = ThreadPoolExecutor(max_workers=2)
    finished = threading.Event()
    results: list[tuple[bool, str]] = []
    delays: list[str] = []

    def refusal_delay(source: str, now: float) -> float:
        delays.append(source)
        return 0.0

    hooks = PumpHooks(
        policy=GatePolicy(tokens.hash_token("st_" + "t" * 43), "st-test", header_timeout=3.0),
        service=reqrep,
        submit=pool.submit,
        on_decision=lambda *_: None,
        on_finished=lambda _c, allowed, reason: (results.append((allowed, reason)), finished.set()),
        refusal_delay=refusal_delay,
    )
    stream = TlsStream(SocketStream(server, ("127.0.0.1", 0)), IDENTITY.context, Refusals(False))
    pump = Pump(stream, ConnCounters(origin="127.0.0.1:1"), hooks)
    client.sendall(client_hello())
    pump.start(pump.run)
    client.settimeout(10)
    assert client.recv(65536)  # the server's flight: the handshake is half-way, and stays so
    assert finished.wait(10)
    assert results == [(False, "timeout")] and delays == ["127.0.0.1"]
    assert recv_all(client, 10) == b""  # closed
    pool.shutdown(wait=True)  # returns: no thread is left reading the stuck handshake
